"""One process of the data-parallel BFS-Prover run in ``test_distributed.py`` (started by torchrun)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from plyground.inference.models import tiny_model
from plyground.trainers.bfs_prover import BFSProverConfig, BFSProverTrainer


def make(out_dir: str) -> BFSProverTrainer:
    model, tok = tiny_model(seed=0)
    config = BFSProverConfig(env_id="GuessNumber-v0", out_dir=out_dir, total_steps=2, steps_per_round=1, problems_per_round=4,
                             filter_samples=0, width=2, max_nodes=2, max_tokens=4, batch_size=2, device="cpu",
                             mixed_precision="no", save_every=1, seed=5)  # fmt: skip
    return BFSProverTrainer(config, model, tok)


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    trainer = make(out_dir)
    trainer.train()
    digest = hashlib.sha256()
    for value in trainer.model.state_dict().values():
        digest.update(value.detach().cpu().numpy().tobytes())
    searched = [(s["round"], s["seed"]) for s in trainer.searched]
    resumed = make(out_dir)  # a fresh process's trainer picks up its own rank's data
    assert resumed.resume()
    result = {
        "rank": trainer.rank, "world_size": trainer.world_size, "digest": digest.hexdigest(), "searched": searched,
        "round_seeds": [[s for s, _ in trainer.round_problems(r)] for r in range(2)],
        "resumed_searched": [(s["round"], s["seed"]) for s in resumed.searched],
    }  # fmt: skip
    Path(out_dir, f"result_{trainer.rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
