"""Rollout throughput of one backend on one env, at several concurrency levels (``plyground bench``).

What a user sizing a run wants to know before a long job: how many episodes, model turns and
generated tokens per second this backend and env sustain through the rollout collector, and how
much running episodes concurrently (batched generation) buys over one at a time. Each level plays
the same seeded episodes after an untimed warm-up episode (imports, compilation, a server's first
request). For comparisons with peer tools see ``benchmarks/`` in the repository.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from plyground.types import JsonRecord, SamplingParams


@dataclass
class ThroughputPoint(JsonRecord):
    """Throughput of ``episodes`` episodes of ``env_id`` at one concurrency level."""

    env_id: str
    concurrency: int
    episodes: int
    turns: int
    tokens: int
    """Tokens the model generated (0 for backends that return no token ids)."""
    errors: int
    """Episodes that ended with an error (their turns still count)."""
    wall_s: float
    episodes_per_s: float
    turns_per_s: float
    tokens_per_s: float
    speedup: float = 1.0
    """``turns_per_s`` over the first level's (1.0 for the first level)."""


def measure_throughput(
    env_id: str,
    backend: Any,
    concurrency_levels: Sequence[int],
    episodes: int = 16,
    sampling: SamplingParams | None = None,
    max_turns: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    progress: Callable[[ThroughputPoint], None] | None = None,
) -> list[ThroughputPoint]:
    """One :class:`ThroughputPoint` per concurrency level, all on the same seeded episodes."""
    import plyground
    from plyground.rollout import RolloutConfig, collect_sync, episode_specs

    if episodes < 1 or not concurrency_levels or min(concurrency_levels) < 1:
        raise ValueError("episodes and every concurrency level must be >= 1")
    kwargs = dict(env_kwargs or {})
    sampling = sampling or SamplingParams(max_tokens=32, temperature=1.0, seed=0)

    def factory() -> Any:
        return plyground.make(env_id, **kwargs)

    # Untimed warm-up, on a seed outside the measured ones.
    warm_up = RolloutConfig(sampling=sampling, concurrency=1, max_turns=max_turns)
    collect_sync(factory, backend, episode_specs(1, base_seed=10**6), warm_up, env_id=env_id)
    points: list[ThroughputPoint] = []
    for level in concurrency_levels:
        config = RolloutConfig(sampling=sampling, concurrency=level, max_turns=max_turns)
        start = time.perf_counter()
        trajectories = collect_sync(factory, backend, episode_specs(episodes), config, env_id=env_id)
        wall = max(time.perf_counter() - start, 1e-9)
        turns = sum(t.num_turns for t in trajectories)
        tokens = sum(len(turn.completion.token_ids) for t in trajectories for turn in t.turns if turn.completion)
        point = ThroughputPoint(
            env_id=env_id,
            concurrency=level,
            episodes=len(trajectories),
            turns=turns,
            tokens=tokens,
            errors=sum(t.error is not None for t in trajectories),
            wall_s=round(wall, 4),
            episodes_per_s=round(len(trajectories) / wall, 4),
            turns_per_s=round(turns / wall, 4),
            tokens_per_s=round(tokens / wall, 2),
        )
        if points and points[0].turns_per_s > 0:
            point.speedup = round(point.turns_per_s / points[0].turns_per_s, 3)
        points.append(point)
        if progress is not None:
            progress(point)
    return points
