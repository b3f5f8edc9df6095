"""Guide: adaptive guidance in GRPO (Nath et al. 2025; reference code guide_rl, on verl).

On top of :class:`~plyground.trainers.grpo.GRPOTrainer`, overriding its extension points:

- :meth:`GuideTrainer.sample`: every prompt gets ``group_size`` unhinted rollouts; a prompt whose
  whole group fails (every score <= ``fail_threshold``) is re-sampled ``group_size`` times with the
  env's next hint level in context (``reset(options={"hint_level": k})``, MathHints-v0 and any env
  that reads ``hint_level``). The hinted group replaces the failed one (``mode="replace"``, the
  reference) or its correct samples are kept and the rest filled with the original failures
  (``mode="mix"``). With ``max_hint_level > 1`` a still-failing hinted group escalates to the next level.
- :meth:`GuideTrainer.training_record`: a hinted sample is trained on the **unhinted** prompt
  followed by the same response tokens, while ``old_logprobs`` stay those sampled with the hint, so
  the importance ratio is ``pi_theta(o_t | q, o_<t) / pi_old(o_t | q, h, o_<t)``: the policy is
  improved for the context it will see at test time, without the hint.
- :meth:`GuideTrainer.compute_loss`: unhinted tokens use PPO's clip (``eps_low`` 0.2); hinted tokens
  use the reference code's ``rho~ = rho / (rho + gamma)``, ``gamma`` the ``gamma_quantile`` (0.9)
  quantile of ``rho`` over the hinted tokens of the micro-batch (detached, at least ``gamma_min``),
  loss ``-A * rho~`` unclipped; token-level mean (``loss_agg="token"``), no KL, no entropy bonus.

Groups that are all-correct or all-wrong (hinted or not) are dropped (``drop_zero_variance``).
The unhinted prompt's tokens come from an unhinted rollout of the same env seed (its tokens before
the first sampled token), so they are exactly what the policy sees without the hint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from plyground.trainers.core.logprobs import token_logprobs
from plyground.trainers.core.loop import StepTotals, hfield
from plyground.trainers.core.losses import aggregate, masked_mean, ppo_clip_loss
from plyground.trainers.grpo import GRPOConfig, GRPOTrainer
from plyground.types import SamplingParams, TokenRecord, Trajectory


@dataclass
class GuideConfig(GRPOConfig):
    """Guide (GRPO with hinted re-sampling of all-failed groups). Defaults follow the reference code:
    token-level loss, zero-variance groups dropped, no KL."""

    env_id: str = hfield("MathHints-v0", "env to train on; it must accept reset(options={'hint_level': k})")
    group_size: int = hfield(8, "episodes per prompt, unhinted and hinted (reference n = 8)")
    loss_agg: Literal["sequence", "token", "constant"] = hfield("token", "token-level mean, as the reference")
    drop_zero_variance: bool = hfield(True, "drop all-correct and all-wrong groups, hinted or not (reference)")
    first_hint_level: int = hfield(1, "hint level used for a failed prompt's first hinted re-sample")
    max_hint_level: int = hfield(1, "escalate a still-failing hinted group up to this level (reference: 1 try)")
    fail_threshold: float = hfield(0.0, "a group 'all fails' when every score is <= this")
    mode: Literal["replace", "mix"] = hfield(
        "replace", "replace: the hinted group replaces the failed one; mix: keep correct hinted samples, "
        "fill the rest with the original failures"
    )
    gamma_quantile: float = hfield(0.9, "quantile of rho over hinted tokens used as gamma in rho / (rho + gamma)")
    gamma_min: float = hfield(1e-4, "lower bound on gamma")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.first_hint_level < 1:
            raise ValueError(f"first_hint_level must be >= 1, got {self.first_hint_level}")
        if self.max_hint_level < self.first_hint_level:
            raise ValueError("max_hint_level must be >= first_hint_level")
        if self.mode not in ("replace", "mix"):
            raise ValueError(f"mode must be replace or mix, got {self.mode!r}")
        if not 0 < self.gamma_quantile <= 1:
            raise ValueError(f"gamma_quantile must be in (0, 1], got {self.gamma_quantile}")
        if self.gamma_min <= 0:
            raise ValueError(f"gamma_min must be > 0, got {self.gamma_min}")
        if self.beta > 0 or self.entropy_coef > 0:
            raise ValueError("Guide's loss has no KL or entropy term (reference code): set beta=0, entropy_coef=0")


# -- helpers shared with Scaf-GRPO -------------------------------------------------------------------
def play(trainer: GRPOTrainer, specs: list[Any], rollout_index: int, salt: int) -> list[Trajectory]:
    """Play ``specs`` (``EpisodeSpec``) with the trainer's backend and sampling settings; the sampling
    seed is a function of ``(seed, rollout_index, rank, salt)``, so reruns and resumes sample the same
    and data-parallel processes do not draw the same random numbers."""
    import plyground
    from plyground.rollout.collector import RolloutConfig, collect_sync

    c = trainer.config
    # As in GRPOTrainer.sample: rank r of w plays shard rollout_index * w + r (the usual one alone).
    shard = rollout_index * trainer.world_size + trainer.rank
    sampling = SamplingParams(
        max_tokens=c.max_tokens, temperature=c.temperature, top_p=c.top_p,
        seed=(c.seed * 7919 + shard * 104_729 + salt) % 2**31,
    )
    concurrency = 1 if (c.reproducible_rollouts or c.deterministic) else c.concurrency
    rollout = RolloutConfig(sampling=sampling, concurrency=concurrency, max_turns=c.max_turns, track_tokens=True)
    trajs = collect_sync(lambda: plyground.make(c.env_id, **c.env_kwargs), trainer.backend, specs, rollout)
    return sorted(trajs, key=lambda t: (t.metadata.get("episode", 0), t.metadata.get("sample", 0)))


def prompt_length(record: TokenRecord | None) -> int | None:
    """Index of the first sampled token (the length of the first prompt); None without one."""
    if record is None:
        return None
    for i, m in enumerate(record.loss_mask):
        if m:
            return i
    return None


def by_group(trajectories: list[Trajectory]) -> dict[int, list[Trajectory]]:
    groups: dict[int, list[Trajectory]] = {}
    for t in trajectories:
        groups.setdefault(int(t.metadata.get("episode", 0)), []).append(t)
    return groups


def guide_ratio(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor,
                quantile: float = 0.9, gamma_min: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference code's hinted-token ratio: ``rho = exp(logp - old)``, ``gamma`` the
    ``quantile`` of ``rho`` over the tokens where ``mask`` is 1 (detached, >= ``gamma_min``);
    returns ``(rho / (rho + gamma), gamma)``."""
    rho = torch.exp(logprobs - old_logprobs)
    picked = rho.detach()[mask > 0]
    gamma = torch.quantile(picked.float(), quantile) if picked.numel() else rho.new_tensor(1.0)
    gamma = gamma.clamp(min=gamma_min)
    return rho / (rho + gamma), gamma


class GuideTrainer(GRPOTrainer):
    """GRPO + Guide's hinted re-sampling and off-context importance ratio (see the module docstring)."""

    config: GuideConfig

    def __init__(self, config: GuideConfig, model: Any = None, tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(config, model, tokenizer, **kwargs)

    def _failed(self, group: list[Trajectory]) -> bool:
        return bool(self.score(group).max() <= self.config.fail_threshold)

    # -- sampling -----------------------------------------------------------------------------------------
    def sample(self, rollout_index: int) -> list[Trajectory]:
        from plyground.rollout.collector import EpisodeSpec

        c = self.config
        trajs = super().sample(rollout_index)
        groups = by_group(trajs)
        failed = {g for g, members in groups.items() if self._failed(members)}
        self.step_metrics["guide/zero_reward_group_frac_unhinted"] = len(failed) / max(len(groups), 1)
        hinted_used = 0
        pending = sorted(failed)
        level = c.first_hint_level
        while pending and level <= c.max_hint_level:
            specs = [
                EpisodeSpec(seed=int(groups[g][0].seed or 0), episode=g, sample=j, options={"hint_level": level})
                for g in pending for j in range(c.group_size)
            ]
            hinted = by_group(play(self, specs, rollout_index, salt=level))
            still = []
            for g in pending:
                new = hinted.get(g, [])
                prefix = self._unhinted_prompt(groups[g])
                for t in new:
                    t.metadata.update(hinted=True, hint_level=level, unhinted_prompt_ids=prefix)
                hinted_used += len(new)
                if c.mode == "mix":
                    good = [t for t in new if not self._failed([t])]
                    groups[g] = good + groups[g][: max(0, c.group_size - len(good))]
                else:
                    groups[g] = new
                if self._failed(groups[g]):
                    still.append(g)
            pending, level = still, level + 1
        out = [t for g in sorted(groups) for t in groups[g]]
        self.step_metrics["guide/hinted_frac"] = sum(bool(t.metadata.get("hinted")) for t in out) / max(len(out), 1)
        self.step_metrics["guide/hinted_samples"] = float(hinted_used)
        return out

    @staticmethod
    def _unhinted_prompt(group: list[Trajectory]) -> list[int] | None:
        for t in group:
            n = prompt_length(t.tokens)
            if t.tokens is not None and n:
                return list(t.tokens.token_ids[:n])
        return None

    # -- the update ---------------------------------------------------------------------------------------
    def training_record(self, trajectory: Trajectory) -> TokenRecord | None:
        """A hinted sample: the unhinted prompt + the sampled response tokens, with the hinted
        sampling logprobs kept as ``old_logprobs``."""
        record = super().training_record(trajectory)
        if record is None or not trajectory.metadata.get("hinted"):
            return record
        prefix = trajectory.metadata.get("unhinted_prompt_ids")
        n = prompt_length(record)
        if not prefix or n is None:
            return None  # no unhinted context to train on
        rest = slice(n, None)
        return TokenRecord(
            token_ids=[int(i) for i in prefix] + record.token_ids[rest],
            loss_mask=[0] * len(prefix) + record.loss_mask[rest],
            logprobs=[0.0] * len(prefix) + record.logprobs[rest],
        )

    def build_batch(self, trajectories: list[Trajectory]) -> dict[str, torch.Tensor]:
        batch = super().build_batch(trajectories)
        kept = self.last_trajectories
        batch["hinted"] = torch.tensor([float(bool(t.metadata.get("hinted"))) for t in kept], dtype=torch.float32)
        return batch

    def compute_loss(self, micro: dict[str, torch.Tensor], totals: StepTotals) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        mask = micro["loss_mask"]
        hinted = micro["hinted"][:, None] * mask
        plain = mask - hinted
        out = token_logprobs(
            self.model, micro["input_ids"], micro["attention_mask"], mask, with_entropy=True,
            entropy_grad=c.entropy_coef > 0,
        )  # fmt: skip
        logprobs = out["logprobs"]
        adv = micro["advantages"]
        clip_loss, clipped = ppo_clip_loss(logprobs, micro["old_logprobs"], adv, c.eps_low, c.eps_high)
        per_token = clip_loss * plain
        metrics: dict[str, float] = {
            "losses/clipfrac": float(masked_mean(clipped, plain)),
            "losses/entropy": float(masked_mean(out["entropy"].detach(), mask)),
            "losses/ratio_mean": float(masked_mean(torch.exp(logprobs.detach() - micro["old_logprobs"]), plain)),
        }
        if bool(hinted.any()):
            shaped, gamma = guide_ratio(logprobs, micro["old_logprobs"], hinted, c.gamma_quantile, c.gamma_min)
            per_token = per_token + (-adv * shaped) * hinted
            metrics["guide/gamma"] = float(gamma)
            metrics["guide/hinted_ratio_mean"] = float(
                masked_mean(torch.exp(logprobs.detach() - micro["old_logprobs"]), hinted)
            )
        metrics["losses/policy"] = float(masked_mean(per_token.detach(), mask))
        loss = aggregate(
            per_token, mask, c.loss_agg, totals.tokens, totals.sequences, max_tokens=c.max_tokens * self.env_max_turns
        )
        metrics["losses/total"] = float(loss.detach()) * totals.micro_batches
        return loss, metrics
