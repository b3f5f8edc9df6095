"""One process of the data-parallel Agent Q run in ``test_distributed.py`` (started by torchrun)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

import plyground.search
from plyground.inference.models import tiny_model
from plyground.trainers.agent_q import AgentQConfig, AgentQTrainer

SEARCHED: list[int] = []
_mcts = plyground.search.mcts


def logged_mcts(*args: Any, **kwargs: Any) -> Any:
    SEARCHED.append(int(kwargs["seed"]))
    return _mcts(*args, **kwargs)


def seed_pairs(result: Any, config: Any = None) -> list[dict[str, Any]]:
    # A random tiny model makes no move the maze accepts, so its trees hold no preferences; one
    # pair per searched episode, named by its seed, shows whose data each process trains on.
    prompt = [{"role": "user", "content": f"episode {result.seed}: where next?"}]
    return [{"prompt": prompt, "chosen": "move up", "rejected": "move down", "meta": {}}]


def make(out_dir: str) -> AgentQTrainer:
    model, tok = tiny_model(seed=0)
    cells = [{"init_position": [1, 1]}, {"init_position": [1, 2]}, {"init_position": [1, 3]}, {"init_position": [2, 1]}]
    config = AgentQConfig(
        env_id="Maze-v0", env_kwargs={"maze": "umaze", "max_steps": 3}, reset_options=cells, episodes_per_iteration=4,
        simulations=3, k=2, mcts_rollout="none", max_tokens=4, steps_per_iteration=1, total_steps=2, batch_size=4,
        micro_batch_size=2, pair_min_visits=1, mixed_precision="no", device="cpu", out_dir=out_dir, save_every=1,
    )  # fmt: skip
    return AgentQTrainer(config, model, tok)


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    plyground.search.mcts = logged_mcts
    plyground.search.agentq_pairs = seed_pairs
    trainer = make(out_dir)
    trainer.train()
    digest = hashlib.sha256()
    for value in trainer.model.state_dict().values():
        digest.update(value.detach().cpu().numpy().tobytes())
    resumed = make(out_dir)
    assert resumed.resume()
    result = {
        "digest": digest.hexdigest(), "searched": SEARCHED, "pairs": trainer.pairs, "resumed_pairs": resumed.pairs,
    }  # fmt: skip
    Path(out_dir, f"result_{trainer.rank}.json").write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1])
