"""One process of the data-parallel ArCHer run in ``test_distributed.py`` (started by torchrun)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

from plyground.inference.models import tiny_model
from plyground.trainers.archer import ArCHerConfig, ArCHerTrainer


def make(out_dir: str) -> ArCHerTrainer:
    model, tok = tiny_model(seed=0)
    config = ArCHerConfig(
        out_dir=out_dir, env_id="Maze-v0", env_kwargs={"maze": "umaze", "max_steps": 2}, tasks_per_step=2, max_tokens=3,
        warmup_iters=0, critic_steps=2, critic_batch=4, actor_states="replay", actor_batch=4, num_iterations=2,
        total_steps=4, lr=1e-3, mixed_precision="no", micro_batch_size=8, live_table=False, device="cpu", save_every=2,
        critic={"dim": 8, "head_hidden": 8, "max_length": 32, "encoder": "bag"},
    )  # fmt: skip
    return ArCHerTrainer(config, model, tok)


def digest(module: Any) -> str:
    h = hashlib.sha256()
    for value in module.state_dict().values():
        h.update(value.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    trainer = make(out_dir)
    trainer.train()
    buffer = [[t["obs"], t["action"]] for t in trainer.replay.state_dict()["items"]]
    resumed = make(out_dir)
    assert resumed.resume()
    result = {
        "model": digest(trainer.model), "critic": digest(trainer.critic), "target": digest(trainer.target_critic),
        "buffer": buffer, "resumed_buffer": [[t["obs"], t["action"]] for t in resumed.replay.state_dict()["items"]],
        "resumed_critic": digest(resumed.critic),
    }  # fmt: skip
    Path(out_dir, f"result_{trainer.rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
