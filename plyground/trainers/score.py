"""SCoRe: training self-correction with multi-turn RL (Kumar et al. 2024; no official code).

Each episode of ``MathSelfCorrect-v0`` is two attempts: ``y1 ~ pi(.|x)``, then the correction
prompt, then ``y2 ~ pi(.|x, y1, p)``; ``r1``, ``r2`` are the attempts' exact-match scores (read from
the env's ``info["attempts"]``; the env's own shaping is left at 0 and done here).

- **Stage I** (the first ``stage1_steps`` steps): turn-2 tokens get advantage ``r2 - mean_g(r2)``;
  turn-1 tokens get no reward term, only ``beta2 * KL(pi || ref)`` (large ``beta2``), so the first
  attempt stays near the base model while the second learns to correct.
- **Stage II**: both turns learn, turn 1 from ``r1``, turn 2 from the shaped
  ``r2' = r2 + alpha * (r2 - r1)`` (each minus its group mean), with ``beta1 * KL`` on both turns.
  ``turn1_credit`` sets what turn 1 learns from: ``"r1"`` (its own score, the default);
  ``"return"``: ``r1 + r2``, the policy gradient of the summed objective, in which the first
  attempt is also credited with what it leads the second to (under ``alpha = 0`` a right first
  attempt that the second copies earns 2), the bonus staying on turn 2; ``"shaped_return"``:
  ``r1 + r2'``, the bonus in turn 1's return too, ``(1 - alpha) r1 + (1 + alpha) r2``, which for
  ``alpha > 1`` pays for a wrong first attempt (measured: the first attempt then unlearns the task,
  docs/results/score_selfcorrect.md). At ``alpha = 1`` it is the credit under which SCoRe's
  bonus keeps the second attempt correcting while ``alpha = 0`` collapses to copying (same page,
  configuration I); with ``"r1"`` the bonus only rescales turn 2's expected update, and the two
  alphas copy alike. Turn 2 always learns from its reward-to-go ``r2'``.

Metrics (under ``env/``): ``acc_t1``, ``acc_t2``, ``delta_t1_t2``, ``delta_i_to_c``,
``delta_c_to_i`` (fractions of episodes), and ``edit_ratio``: the normalised Levenshtein distance
between the two attempts (near 0: the second attempt copies the first, SCoRe's collapse mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from plyground.trainers.baselines import spread_per_turn
from plyground.trainers.core.logprobs import token_logprobs
from plyground.trainers.core.loop import StepTotals, hfield
from plyground.trainers.core.losses import (
    aggregate,
    group_advantages,
    kl_estimate,
    masked_mean,
    ppo_clip_loss,
)
from plyground.trainers.grpo import GRPOConfig, GRPOTrainer
from plyground.types import Trajectory


@dataclass
class SCoReConfig(GRPOConfig):
    """SCoRe two-stage training on a two-attempt env."""

    MIN_GROUP_SIZE: ClassVar[int] = 2
    env_id: str = hfield("MathSelfCorrect-v0", "two-attempt self-correction env")
    env_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "env constructor arguments"})
    stage1_steps: int = hfield(5, "optimizer steps of Stage I; Stage II after (0: Stage II only)")
    alpha: float = hfield(10.0, "Stage II bonus on turn 2: r2 + alpha * (r2 - r1)")
    beta1: float = hfield(0.01, "Stage II KL coefficient (both turns)")
    beta2: float = hfield(0.1, "Stage I KL coefficient on the first attempt (large)")
    loss_agg: Literal["sequence", "token", "constant"] = hfield("token", "token-level normalisation")
    # Dividing by the group std would cancel alpha's scale: measured, alpha = 10 and alpha = 0 then
    # trained alike (docs/results/score_selfcorrect.md, configuration A vs C).
    turn1_credit: Literal["r1", "return", "shaped_return"] = hfield(
        "r1", "Stage II credit of turn 1: r1, the return r1 + r2, or the shaped return r1 + r2'"
    )
    scale_rewards: bool = hfield(False, "divide advantages by the group std (off: alpha's bonus keeps its weight)")
    max_tokens: int = hfield(32, "tokens per attempt")
    lr: float = hfield(1e-4, "peak learning rate (AdamW)")

    def __post_init__(self) -> None:
        if self.env_kwargs.get("shaping_alpha"):
            raise ValueError("leave env_kwargs.shaping_alpha at 0: SCoRe shapes the reward itself (alpha)")
        if self.turn1_credit not in ("r1", "return", "shaped_return"):
            raise ValueError(f"turn1_credit must be r1, return or shaped_return, not {self.turn1_credit!r}")
        if self.alpha < 0 or self.beta1 < 0 or self.beta2 < 0 or self.stage1_steps < 0:
            raise ValueError("alpha, beta1, beta2 and stage1_steps must be >= 0")
        # The base trainer builds the frozen reference when beta > 0; SCoRe's KL is per turn.
        self.beta = max(self.beta1, self.beta2, 1e-12)
        super().__post_init__()


def attempt_scores(trajectory: Trajectory) -> tuple[float, float]:
    """``(r1, r2)`` of a two-attempt episode (0 for a missing attempt)."""
    info = trajectory.turns[-1].info if trajectory.turns else {}
    attempts = info.get("attempts") or []
    scores = [float(a.get("score", float(bool(a.get("correct"))))) for a in attempts]
    if len(scores) < 2 and trajectory.turns:
        scores = [float(bool(t.info.get("success"))) for t in trajectory.turns]
    scores += [0.0] * (2 - len(scores))
    return scores[0], scores[1]


def edit_ratio(a: str, b: str, cap: int = 200) -> float:
    """Levenshtein distance / max length over the first ``cap`` characters (0: identical)."""
    a, b = a[:cap], b[:cap]
    if not a and not b:
        return 0.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1] / max(len(a), len(b))


def self_correction_metrics(trajectories: list[Trajectory]) -> dict[str, float]:
    """Acc@t1, Acc@t2, Delta(t1,t2), Delta i->c, Delta c->i and the mean edit-distance ratio."""
    n = max(len(trajectories), 1)
    pairs = [attempt_scores(t) for t in trajectories]
    c1 = [r1 > 0.5 for r1, _ in pairs]
    c2 = [r2 > 0.5 for _, r2 in pairs]
    ratios = [edit_ratio(t.turns[0].action, t.turns[1].action) for t in trajectories if len(t.turns) >= 2]
    return {
        "env/acc_t1": sum(c1) / n,
        "env/acc_t2": sum(c2) / n,
        "env/delta_t1_t2": (sum(c2) - sum(c1)) / n,
        "env/delta_i_to_c": sum((not a) and b for a, b in zip(c1, c2, strict=True)) / n,
        "env/delta_c_to_i": sum(a and not b for a, b in zip(c1, c2, strict=True)) / n,
        "env/edit_ratio": sum(ratios) / len(ratios) if ratios else 0.0,
    }


class SCoReTrainer(GRPOTrainer):
    """Two-stage SCoRe on the GRPO sampler (module docstring)."""

    config: SCoReConfig

    @property
    def stage(self) -> int:
        return 1 if self.step < self.config.stage1_steps else 2

    def per_turn_values(self, trajectories: list[Trajectory]) -> tuple[list[list[float]], list[list[float]]]:
        """Per-turn advantages and KL coefficients of each trajectory for the current stage."""
        c = self.config
        r = torch.tensor([attempt_scores(t) for t in trajectories], dtype=torch.float32).reshape(-1, 2)
        groups = self.group_ids(trajectories)
        if self.stage == 1:
            a2 = group_advantages(r[:, 1], groups, scale_by_std=c.scale_rewards)
            adv = [[0.0, float(x)] for x in a2]
            kl = [[c.beta2, 0.0] for _ in trajectories]
        else:
            shaped = r[:, 1] + c.alpha * (r[:, 1] - r[:, 0])
            turn1 = {"r1": r[:, 0], "return": r[:, 0] + r[:, 1], "shaped_return": r[:, 0] + shaped}[c.turn1_credit]
            a1 = group_advantages(turn1, groups, scale_by_std=c.scale_rewards)
            a2 = group_advantages(shaped, groups, scale_by_std=c.scale_rewards)
            adv = [[float(x), float(y)] for x, y in zip(a1, a2, strict=True)]
            kl = [[c.beta1, c.beta1] for _ in trajectories]
        return adv, kl

    def token_advantages(
        self, batch: dict[str, torch.Tensor], seq_advantages: torch.Tensor, trajectories: list[Trajectory]
    ) -> torch.Tensor:
        adv, kl = self.per_turn_values(trajectories)
        batch["kl_coef"] = spread_per_turn(batch["loss_mask"], kl)
        self.step_metrics.update(self_correction_metrics(trajectories))
        self.step_metrics["charts/stage"] = float(self.stage)
        return spread_per_turn(batch["loss_mask"], adv)

    def compute_loss(self, micro: dict[str, torch.Tensor], totals: StepTotals) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        mask = micro["loss_mask"]
        logprobs = token_logprobs(self.model, micro["input_ids"], micro["attention_mask"], mask)["logprobs"]
        per_token, _ = ppo_clip_loss(logprobs, micro["old_logprobs"], micro["advantages"], c.eps_low, c.eps_high)
        kl = kl_estimate(logprobs, micro["ref_logprobs"], c.kl_estimator)
        first = (micro["kl_coef"] > 0).float() * mask
        per_token = per_token + micro["kl_coef"] * kl
        loss = aggregate(per_token, mask, c.loss_agg, totals.tokens, totals.sequences, max_tokens=c.max_tokens * 2)
        return loss, {
            "losses/total": float(loss.detach()) * totals.micro_batches,
            "losses/kl": float(masked_mean(kl.detach(), mask)),
            "losses/kl_regularised_turns": float(masked_mean(kl.detach(), first)),
        }
