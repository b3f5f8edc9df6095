"""Multi-turn baselines on the GRPO machinery (same sampler, same clipped update at ratio 1):

- **filtered behaviour cloning** (``filtered-bc``): play episodes with the current policy, keep the
  successful ones and maximise the likelihood of their model tokens (advantage 1 on each token of a
  successful episode, 0 elsewhere; token aggregation = the NLL of SFT at ratio 1);
- **turn-level REINFORCE** (``reinforce``): every model token of turn ``k`` gets the turn's
  reward-to-go ``G_k = sum_{j >= k} gamma^(j-k) r_j`` minus a baseline (the batch mean of ``G`` at the
  same turn index), i.e. Williams' estimator with the turn as the time step.

Single-turn GRPO is :mod:`plyground.trainers.grpo` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from plyground.trainers.core.loop import hfield
from plyground.trainers.grpo import GRPOConfig, GRPOTrainer
from plyground.types import Trajectory


def turn_spans(loss_mask_row: torch.Tensor) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of 1s in a (T,) loss mask: one run per model turn, in order."""
    spans: list[tuple[int, int]] = []
    start = None
    values = (loss_mask_row > 0).tolist()
    for t, on in enumerate(values):
        if on and start is None:
            start = t
        elif not on and start is not None:
            spans.append((start, t))
            start = None
    if start is not None:
        spans.append((start, len(values)))
    return spans


def spread_per_turn(loss_mask: torch.Tensor, per_turn: list[list[float]]) -> torch.Tensor:
    """(B, T) tensor with ``per_turn[b][k]`` on the tokens of turn ``k`` of row ``b``.

    When a row has more token runs than turns (a template that splits a reply), the extra runs
    take the last turn's value; fewer runs (a truncated episode) use the first turns' values.
    """
    out = torch.zeros_like(loss_mask, dtype=torch.float32)
    for b, values in enumerate(per_turn):
        if not values:
            continue
        for k, (s, e) in enumerate(turn_spans(loss_mask[b])):
            out[b, s:e] = float(values[min(k, len(values) - 1)])
    return out * loss_mask


def rewards_to_go(rewards: list[float], gamma: float) -> list[float]:
    out, running = [], 0.0
    for r in reversed(rewards):
        running = float(r) + gamma * running
        out.append(running)
    return out[::-1]


@dataclass
class FilteredBCConfig(GRPOConfig):
    """Filtered behaviour cloning on the policy's own successful episodes."""

    MIN_GROUP_SIZE: ClassVar[int] = 1
    group_size: int = hfield(1, "episodes per env seed")
    loss_agg: Literal["sequence", "token", "constant"] = hfield("token", "token: the NLL of SFT")
    lr: float = hfield(1e-4, "peak learning rate (AdamW)")


class FilteredBCTrainer(GRPOTrainer):
    """SFT on the successful episodes of each rollout batch (advantage 1 on them, 0 elsewhere)."""

    config: FilteredBCConfig

    def token_advantages(
        self, batch: dict[str, torch.Tensor], seq_advantages: torch.Tensor, trajectories: list[Trajectory]
    ) -> torch.Tensor:
        keep = torch.tensor([float(t.success and t.error is None) for t in trajectories])
        self.step_metrics["charts/kept_frac"] = float(keep.mean()) if keep.numel() else 0.0
        return keep[:, None] * batch["loss_mask"]


@dataclass
class ReinforceConfig(GRPOConfig):
    """Turn-level REINFORCE: reward-to-go per turn minus a per-turn-index batch-mean baseline."""

    MIN_GROUP_SIZE: ClassVar[int] = 1
    group_size: int = hfield(1, "episodes per env seed")
    gamma: float = hfield(1.0, "discount over turns")
    baseline: Literal["turn_mean", "none"] = hfield("turn_mean", "subtract the batch mean of G at each turn index")
    loss_agg: Literal["sequence", "token", "constant"] = hfield("token", "token-level normalisation")
    lr: float = hfield(1e-4, "peak learning rate (AdamW)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.baseline not in ("turn_mean", "none"):
            raise ValueError(f"baseline must be turn_mean or none, got {self.baseline!r}")


def turn_reinforce_advantages(
    trajectories: list[Trajectory], gamma: float, baseline: str = "turn_mean"
) -> list[list[float]]:
    """Per-turn advantages ``G_k - b_k`` of each trajectory (``b_k``: the mean of ``G_k`` over the
    trajectories that reached turn ``k``; 0 with ``baseline='none'``)."""
    returns = [rewards_to_go([t.reward for t in traj.turns], gamma) for traj in trajectories]
    if baseline == "none":
        return returns
    depth = max((len(g) for g in returns), default=0)
    means = []
    for k in range(depth):
        col = [g[k] for g in returns if len(g) > k]
        means.append(sum(col) / len(col))
    return [[g[k] - means[k] for k in range(len(g))] for g in returns]


class ReinforceTrainer(GRPOTrainer):
    """Turn-level REINFORCE (see the module docstring)."""

    config: ReinforceConfig

    def token_advantages(
        self, batch: dict[str, torch.Tensor], seq_advantages: torch.Tensor, trajectories: list[Trajectory]
    ) -> torch.Tensor:
        per_turn = turn_reinforce_advantages(trajectories, self.config.gamma, self.config.baseline)
        return spread_per_turn(batch["loss_mask"], per_turn)
