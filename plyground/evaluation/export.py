"""Trajectories as data: flat records, a Hugging Face ``datasets.Dataset``, Parquet.

Schema of an episode row (``episode_records``), one per trajectory:

| column | type | meaning |
|---|---|---|
| env_id | str | registered env id |
| task_id | str or null | the task played, when the env takes tasks |
| seed | int or null | env seed of the episode |
| episode, sample | int | episode index and attempt index (pass@k groups share ``episode``) |
| model | str | model name the harness recorded |
| success | bool | ``info["success"]`` at the end |
| total_reward | float | sum of rewards |
| num_turns | int | env steps taken |
| error | str or null | ``"<boundary>: message"`` when the episode ended abnormally |
| observations, actions, replies | list[str] | per turn: what the agent saw, the parsed action, the raw model reply |
| rewards | list[float] | per turn |
| valid_actions | list[bool] | per turn ``info["valid_action"]`` |
| token_ids, loss_mask | list[int] | the whole episode as the model saw it (empty without a local tokenizer) |
| logprobs | list[float] | sampling log-probabilities aligned with ``token_ids`` (0 where mask is 0) |
| metadata | str | the trajectory's metadata as JSON |

``turn_records`` gives one row per turn instead: env_id, episode, sample, turn, observation,
action, reply, reward, valid_action, success (of the episode).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from plyground.types import Trajectory


def episode_records(trajectories: Iterable[Trajectory]) -> list[dict[str, Any]]:
    """One flat, Arrow-friendly row per trajectory (schema in the module docstring)."""
    rows = []
    for t in trajectories:
        rows.append(
            {
                "env_id": t.env_id,
                "task_id": t.task_id,
                "seed": t.seed,
                "episode": int(t.metadata.get("episode", 0)),
                "sample": int(t.metadata.get("sample", 0)),
                "model": str(t.metadata.get("model", "")),
                "success": bool(t.success),
                "total_reward": float(t.total_reward),
                "num_turns": len(t.turns),
                "error": t.error,
                "observations": [turn.observation for turn in t.turns],
                "actions": [turn.action for turn in t.turns],
                "replies": [turn.completion.text if turn.completion else turn.action for turn in t.turns],
                "rewards": [float(turn.reward) for turn in t.turns],
                "valid_actions": [bool(turn.info.get("valid_action", True)) for turn in t.turns],
                "token_ids": list(t.tokens.token_ids) if t.tokens else [],
                "loss_mask": list(t.tokens.loss_mask) if t.tokens else [],
                "logprobs": [float(x) for x in t.tokens.logprobs] if t.tokens else [],
                "metadata": json.dumps(t.metadata, sort_keys=True, default=repr),
            }
        )
    return rows


def turn_records(trajectories: Iterable[Trajectory]) -> list[dict[str, Any]]:
    """One row per turn (for step-level analysis)."""
    rows = []
    for t in trajectories:
        for i, turn in enumerate(t.turns):
            rows.append(
                {
                    "env_id": t.env_id,
                    "episode": int(t.metadata.get("episode", 0)),
                    "sample": int(t.metadata.get("sample", 0)),
                    "turn": i,
                    "observation": turn.observation,
                    "action": turn.action,
                    "reply": turn.completion.text if turn.completion else turn.action,
                    "reward": float(turn.reward),
                    "valid_action": bool(turn.info.get("valid_action", True)),
                    "success": bool(t.success),
                }
            )
    return rows


def _require(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{module} is not installed: pip install 'plyground[{extra}]'") from exc


def to_dataset(trajectories: Iterable[Trajectory], per_turn: bool = False) -> Any:
    """A ``datasets.Dataset`` of episode rows (or turn rows)."""
    datasets = _require("datasets", "data")
    rows = turn_records(trajectories) if per_turn else episode_records(trajectories)
    return datasets.Dataset.from_list(rows)


def to_parquet(trajectories: Iterable[Trajectory], path: str, per_turn: bool = False) -> int:
    """Write episode rows (or turn rows) to a Parquet file; returns the number of rows."""
    pa = _require("pyarrow", "data")
    pq = _require("pyarrow.parquet", "data")
    rows = turn_records(trajectories) if per_turn else episode_records(trajectories)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return len(rows)
