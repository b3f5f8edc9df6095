"""Scaf-GRPO: scaffolded hints on learning cliffs (2025; reference code dvlab-research/Scaf-GRPO).

On top of :class:`~plyground.trainers.grpo.GRPOTrainer` (only :meth:`ScafGRPOTrainer.sample` changes):

1. **Guidance-free warm-up**: no hints while the optimizer step is below ``warmup_frac`` x
   ``total_steps`` (paper: 15%; the reference code uses a fixed 50 steps: ``guidance_warmup_steps``).
2. **Stagnation detection**: after warm-up, a group whose ``group_size`` rollouts all score <=
   ``fail_threshold`` (0: all wrong) is on a learning cliff.
3. **Tiered cumulative hints**: the env's hint ladder, Knowledge levels 1..l, then Planning 1..l, then
   Solution 1..l (``HintSet.ladder()``; ``MathHints-v0`` level ``n`` is ladder step ``n``), each level
   tried with ``hint_samples`` hinted rollouts, in the Scaf-GRPO prompt
   (system ``SCAF_SYSTEM_PROMPT``, user ``"Question: {q}\\n{Tier} Hints: {hints}"``).
4. **Replacement**: the first correct hinted trajectory replaces one failed rollout of the group
   (``replace="first"``, the code; ``"random"``, the paper); GRPO's advantages are then computed on
   the new group as usual, ``A = (R - mean) / (std + eps)``.

The hinted sample is trained on the tokens it was sampled with (q + hint in both the numerator and
the denominator of the ratio: on-policy for the hinted prompt), i.e. GRPO's default
``training_record``. A group whose ladder is exhausted without a success stays as it was.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Literal

from plyground.trainers.core.loop import hfield
from plyground.trainers.grpo import GRPOConfig, GRPOTrainer
from plyground.trainers.guide import by_group, play
from plyground.types import Trajectory


@dataclass
class ScafGRPOConfig(GRPOConfig):
    """Scaf-GRPO. Defaults follow the paper (15% warm-up, n = 8, no KL)."""

    env_id: str = hfield("MathHints-v0", "env to train on; it must accept reset(options={'hint_level': k})")
    group_size: int = hfield(8, "rollouts per prompt (N)")
    warmup_frac: float = hfield(0.15, "fraction of total_steps trained without hints (paper: 15%)")
    guidance_warmup_steps: int | None = hfield(
        None, "warm-up length in optimizer steps; overrides warmup_frac (reference code: 50)"
    )
    fail_threshold: float = hfield(0.0, "a group stagnates when every rollout scores <= this")
    hint_samples: int = hfield(1, "hinted rollouts tried at each hint level before escalating")
    max_hint_level: int | None = hfield(None, "stop the ladder at this level (default: the env's whole ladder)")
    replace: Literal["first", "random"] = hfield(
        "first", "which failed rollout the hinted success replaces: first (code) or random (paper)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.warmup_frac <= 1:
            raise ValueError(f"warmup_frac must be in [0, 1], got {self.warmup_frac}")
        if self.guidance_warmup_steps is not None and self.guidance_warmup_steps < 0:
            raise ValueError(f"guidance_warmup_steps must be >= 0, got {self.guidance_warmup_steps}")
        if self.hint_samples < 1:
            raise ValueError(f"hint_samples must be >= 1, got {self.hint_samples}")
        if self.max_hint_level is not None and self.max_hint_level < 1:
            raise ValueError(f"max_hint_level must be >= 1, got {self.max_hint_level}")
        if self.replace not in ("first", "random"):
            raise ValueError(f"replace must be first or random, got {self.replace!r}")

    @property
    def warmup(self) -> int:
        """Optimizer steps without guidance."""
        if self.guidance_warmup_steps is not None:
            return self.guidance_warmup_steps
        return math.ceil(self.warmup_frac * self.total_steps)


class ScafGRPOTrainer(GRPOTrainer):
    """GRPO + Scaf-GRPO's hint ladder on stagnating groups (see the module docstring)."""

    config: ScafGRPOConfig

    def __init__(self, config: ScafGRPOConfig, model: Any = None, tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(config, model, tokenizer, **kwargs)
        import plyground

        self._probe = plyground.make(config.env_id, **config.env_kwargs)
        self.hint_log: list[dict[str, Any]] = []  # (group, level, tier) of every hinted try, for inspection

    def _failed(self, group: list[Trajectory]) -> bool:
        return bool(self.score(group).max() <= self.config.fail_threshold)

    def ladder(self, seed: int) -> list[tuple[str, int]]:
        """The (tier, level) steps of the hint ladder of the task at env seed ``seed``."""
        self._probe.reset(seed=seed)
        hints = getattr(self._probe.unwrapped, "hints", None)
        return list(hints.ladder()) if hints is not None else []

    def guidance_active(self) -> bool:
        return self.step >= self.config.warmup

    def sample(self, rollout_index: int) -> list[Trajectory]:
        from plyground.rollout.collector import EpisodeSpec

        c = self.config
        trajs = super().sample(rollout_index)
        groups = by_group(trajs)
        stagnant = sorted(g for g, members in groups.items() if self._failed(members))
        self.step_metrics["scaf/zero_reward_group_frac_unhinted"] = len(stagnant) / max(len(groups), 1)
        self.step_metrics["scaf/guidance_active"] = float(self.guidance_active())
        replaced = tries = 0
        if self.guidance_active():
            rng = random.Random(c.seed * 1_000_003 + rollout_index * self.world_size + self.rank)
            for g in stagnant:
                seed = int(groups[g][0].seed or 0)
                ladder = self.ladder(seed)
                last = len(ladder) if c.max_hint_level is None else min(len(ladder), c.max_hint_level)
                for level in range(1, last + 1):
                    specs = [
                        EpisodeSpec(seed=seed, episode=g, sample=c.group_size + j, options={"hint_level": level})
                        for j in range(c.hint_samples)
                    ]
                    hinted = play(self, specs, rollout_index, salt=1_000 * (g + 1) + level)
                    tier, k = ladder[level - 1]
                    self.hint_log.append({"rollout": rollout_index, "group": g, "level": level, "tier": tier, "k": k})
                    tries += len(hinted)
                    success = next((t for t in hinted if not self._failed([t])), None)
                    if success is None:
                        continue
                    members = groups[g]
                    slot = 0 if c.replace == "first" else rng.randrange(len(members))
                    success.metadata.update(
                        hinted=True, hint_level=level, hint_tier=tier,
                        sample=members[slot].metadata.get("sample", slot),
                    )
                    members[slot] = success
                    replaced += 1
                    break
        out = [t for g in sorted(groups) for t in groups[g]]
        self.step_metrics["scaf/replaced_groups"] = float(replaced)
        self.step_metrics["scaf/hinted_tries"] = float(tries)
        self.step_metrics["scaf/hinted_frac"] = replaced / max(len(out), 1)
        return out
