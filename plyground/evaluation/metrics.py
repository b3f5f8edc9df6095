"""Summary statistics over trajectories: success, reward, turns, tokens, unbiased pass@k."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from plyground.types import JsonRecord, Trajectory


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` succeeded (Chen et al. 2021):
    ``1 - C(n - c, k) / C(n, k)``, computed as a stable product."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def _ks(samples: int) -> list[int]:
    ks, k = [], 1
    while k < samples:
        ks.append(k)
        k *= 2
    return [*ks, samples]


@dataclass
class EvalSummary(JsonRecord):
    """What ``plyground eval`` reports for one env (written to summary.json)."""

    env_id: str
    model: str = ""
    backend: str = ""
    episodes: int = 0
    samples: int = 1
    trajectories: int = 0
    success_rate: float = 0.0
    mean_reward: float = 0.0
    mean_turns: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    pass_at_k: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def summarize(
    trajectories: Sequence[Trajectory],
    env_id: str,
    model: str = "",
    backend: str = "",
    wall_s: float = 0.0,
) -> EvalSummary:
    """Aggregate trajectories; ``metadata["episode"]`` groups the samples of one episode for
    pass@k (episodes with fewer samples than the most are scored on the samples they have)."""
    n = len(trajectories)
    summary = EvalSummary(env_id=env_id, model=model, backend=backend, trajectories=n, wall_s=round(wall_s, 3))
    if n == 0:
        return summary
    groups: dict[int, list[bool]] = defaultdict(list)
    for t in trajectories:
        groups[int(t.metadata.get("episode", len(groups)))].append(t.success)
    summary.episodes = len(groups)
    summary.samples = max(len(g) for g in groups.values())
    summary.success_rate = sum(t.success for t in trajectories) / n
    summary.mean_reward = sum(t.total_reward for t in trajectories) / n
    summary.mean_turns = sum(len(t.turns) for t in trajectories) / n
    for t in trajectories:
        for turn in t.turns:
            if turn.completion is not None:
                summary.prompt_tokens += len(turn.completion.prompt_token_ids)
                summary.completion_tokens += len(turn.completion.token_ids)
    for k in _ks(summary.samples):
        scores = [pass_at_k(len(g), sum(g), k) for g in groups.values() if len(g) >= k]
        if scores:
            summary.pass_at_k[f"pass@{k}"] = sum(scores) / len(scores)
    failed = [t.error for t in trajectories if t.error]
    summary.errors = len(failed)
    summary.error_examples = sorted(set(failed))[:5]  # type: ignore[type-var]
    return summary
