"""GRPO: group-relative policy optimisation (Shao et al. 2024), with the DAPO / Dr. GRPO options.

One optimizer step (``num_iterations`` steps reuse one rollout batch):

1. **sample** ``tasks_per_step`` env seeds x ``group_size`` episodes through
   :func:`plyground.rollout.collect_sync`, with an ``HFBackend`` that shares the policy's model
   object (so weight sync is free), or with ``rollout_backend=`` an inference server (vLLM, SGLang,
   ``plyground-server``) whose ``update_weights`` gets the new weights after every update;
   trajectories keep token ids, loss mask and sampling logprobs;
2. **score** each trajectory (default: its total reward);
3. **advantages** per group: ``(r - mean) / (std + eps)`` (or ``r - mean``, Dr. GRPO), optionally
   dropping groups whose rewards are all equal (DAPO); each sequence's advantage is broadcast to its
   model tokens;
4. **update** with the PPO clipped surrogate against the stored behaviour logprobs (asymmetric clip
   with ``eps_high``), plus ``beta`` x k3 KL to a frozen reference and an entropy bonus when asked,
   aggregated per sequence, per token or by a constant (see ``core.losses.AGGREGATIONS``).

Extension points (how Guide, Scaf-GRPO and MRT plug in, each by overriding one method):

- :meth:`GRPOTrainer.sample` -- which episodes are played and with what prompt (Guide and Scaf-GRPO
  re-sample failed groups with hints);
- :meth:`GRPOTrainer.score` -- the reward of each trajectory (or pass ``reward_fn``);
- :meth:`GRPOTrainer.training_record` -- the tokens the update sees for a trajectory (Guide trains on
  the unhinted context while ``old_logprobs`` stay those sampled with the hint);
- :meth:`GRPOTrainer.group_ids` -- which trajectories are compared with each other;
- :meth:`GRPOTrainer.token_advantages` -- per-token weights from per-sequence advantages (MRT adds a
  per-episode progress bonus).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from plyground.trainers.core.logprobs import collate, token_logprobs
from plyground.trainers.core.loop import StepTotals, SyncWeights, TrainConfig, Trainer, hfield, split_micro
from plyground.trainers.core.losses import (
    AGGREGATIONS,
    aggregate,
    entropy_bonus,
    group_advantages,
    kl_estimate,
    masked_mean,
    nonzero_variance_groups,
    ppo_clip_loss,
)
from plyground.types import SamplingParams, TokenRecord, Trajectory


@dataclass
class GRPOConfig(TrainConfig):
    """GRPO on a plyground env. Defaults follow the GRPO paper; DAPO is ``loss_agg="token"``,
    ``eps_high=0.28``, ``drop_zero_variance=True``, ``beta=0``; Dr. GRPO is ``loss_agg="constant"``,
    ``scale_rewards=False``."""

    MIN_GROUP_SIZE: ClassVar[int] = 2  # group-relative advantages need at least two samples

    # environment and sampling
    env_id: str = hfield("Arithmetic-v0", "env to train on (plyground envs)")
    env_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "env constructor arguments"})
    tasks_per_step: int = hfield(4, "distinct env seeds (prompts) per rollout batch")
    group_size: int = hfield(4, "episodes per env seed (G); advantages are relative within the group")
    max_tokens: int = hfield(64, "tokens per model turn")
    temperature: float = hfield(1.0, "sampling temperature (> 0: a greedy group has no variance)")
    top_p: float = hfield(1.0, "nucleus sampling")
    max_turns: int | None = hfield(None, "cap on turns per episode (default: the env's horizon)")
    concurrency: int = hfield(16, "episodes in flight during rollout")
    reproducible_rollouts: bool = hfield(
        False,
        "play episodes one at a time, so which prompts share a sampling batch does not depend on thread timing "
        "(per-request seeds already make batched HF sampling rerun alike up to float rounding); slow, for "
        "bit-exact reruns and resumes (implied by deterministic)",
    )
    # update
    num_iterations: int = hfield(1, "optimizer steps per rollout batch (mu); > 1 makes the clip bite")
    eps_low: float = hfield(0.2, "PPO clip: ratio >= 1 - eps_low")
    eps_high: float | None = hfield(None, "PPO clip: ratio <= 1 + eps_high (default eps_low; DAPO 0.28)")
    loss_agg: Literal["sequence", "token", "constant"] = hfield(
        "sequence", "sequence (GRPO), token (DAPO) or constant (Dr. GRPO) normalisation"
    )
    scale_rewards: bool = hfield(True, "divide advantages by the group std (False: Dr. GRPO)")
    adv_eps: float = hfield(1e-6, "epsilon in (r - mean) / (std + eps)")
    drop_zero_variance: bool = hfield(False, "drop groups whose rewards are all equal (DAPO dynamic sampling)")
    beta: float = hfield(0.0, "KL coefficient to a frozen reference (0: no reference model)")
    kl_estimator: Literal["k1", "k2", "k3"] = hfield("k3", "KL estimator (k3 as GRPO)")
    entropy_coef: float = hfield(0.0, "entropy bonus coefficient")
    lr: float = hfield(1e-6, "peak learning rate (AdamW)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tasks_per_step < 1:
            raise ValueError(f"tasks_per_step must be >= 1, got {self.tasks_per_step}")
        if self.group_size < self.MIN_GROUP_SIZE:
            raise ValueError(f"group_size must be >= {self.MIN_GROUP_SIZE}, got {self.group_size}")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0: greedy samples of a group are identical")
        if self.max_tokens < 1 or self.num_iterations < 1 or self.concurrency < 1:
            raise ValueError("max_tokens, num_iterations and concurrency must be >= 1")
        if not 0 < self.eps_low < 1:
            raise ValueError(f"eps_low must be in (0, 1), got {self.eps_low}")
        if self.eps_high is not None and self.eps_high <= 0:
            raise ValueError(f"eps_high must be > 0, got {self.eps_high}")
        if self.loss_agg not in AGGREGATIONS:
            raise ValueError(f"loss_agg must be one of {sorted(AGGREGATIONS)}, got {self.loss_agg!r}")
        if self.kl_estimator not in ("k1", "k2", "k3"):
            raise ValueError(f"kl_estimator must be k1, k2 or k3, got {self.kl_estimator!r}")
        if self.beta < 0 or self.entropy_coef < 0:
            raise ValueError("beta and entropy_coef must be >= 0")
        if self.drop_zero_variance and self.group_size < 2:
            raise ValueError("drop_zero_variance needs group_size >= 2")
        if self.loss_agg == "constant" and self.scale_rewards:
            warnings.warn("loss_agg=constant is Dr. GRPO, which also sets scale_rewards=False", stacklevel=2)


class GRPOTrainer(Trainer):
    """GRPO: rollout groups, group-normalised advantages, PPO-clip update (see the module docstring)."""

    config: GRPOConfig

    def __init__(
        self,
        config: GRPOConfig,
        model: Any = None,
        tokenizer: Any = None,
        reward_fn: Callable[[Trajectory], float] | None = None,
        rollout_backend: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, model, tokenizer, **kwargs)
        import plyground
        from plyground.inference.hf import HFBackend

        probe = plyground.make(config.env_id, **config.env_kwargs)  # an unknown env fails here, early
        self.env_max_turns = int(min(probe.max_turns, config.max_turns or probe.max_turns))
        probe.close()
        self.reward_fn = reward_fn
        if rollout_backend is None:
            # The backend samples from the very model object being trained: no copy, no sync needed.
            self.backend = HFBackend(model=self.base_model, tokenizer=self.tokenizer)
            self.on_update.append(SyncWeights(self.backend))
        else:
            # An inference server (vLLM, SGLang, plyground-server): the full weights are pushed to
            # it after every update, so the next rollout batch samples from the updated policy.
            self.backend = rollout_backend
            push = lambda model, version: rollout_backend.update_weights(model, version)  # noqa: E731
            self.on_update.append(SyncWeights(push=push))
        self.ref_model: Any = None
        if config.beta > 0 and not config.lora:
            self.ref_model = copy.deepcopy(self.base_model).eval().requires_grad_(False)
        self.buffer: dict[str, torch.Tensor] | None = None
        self.buffer_uses = 0
        self.rollout_index = 0
        self.last_trajectories: list[Trajectory] = []

    # -- ALGO LOGIC: sampling and scoring (override points) ----------------------------------------------
    def sample(self, rollout_index: int) -> list[Trajectory]:
        """Play ``tasks_per_step`` x ``group_size`` episodes; env seeds and the sampling seed are a
        function of ``rollout_index`` alone, so a resumed run samples what the straight run did."""
        import plyground
        from plyground.rollout.collector import EpisodeSpec, RolloutConfig, collect_sync

        c = self.config
        # Data parallel: each process plays its own slice of episodes (rank 0 of 1: the usual ones).
        shard = rollout_index * self.world_size + self.rank
        first = c.seed * 1_000_003 + shard * c.tasks_per_step
        specs = [
            EpisodeSpec(seed=first + i, episode=i, sample=j) for i in range(c.tasks_per_step) for j in range(c.group_size)
        ]
        sampling = SamplingParams(
            max_tokens=c.max_tokens, temperature=c.temperature, top_p=c.top_p,
            seed=(c.seed * 7919 + shard) % 2**31,
        )
        # Concurrent episodes are batched in arrival order, which depends on thread timing. A backend
        # that takes per-prompt seeds (HFBackend) draws each request from its own stream anyway; one
        # at a time also removes the last batch-dependence (padding changes float rounding).
        concurrency = 1 if (c.reproducible_rollouts or c.deterministic) else c.concurrency
        rollout = RolloutConfig(sampling=sampling, concurrency=concurrency, max_turns=c.max_turns, track_tokens=True)
        trajs = collect_sync(lambda: plyground.make(c.env_id, **c.env_kwargs), self.backend, specs, rollout)
        return sorted(trajs, key=lambda t: (t.metadata.get("episode", 0), t.metadata.get("sample", 0)))

    def score(self, trajectories: list[Trajectory]) -> torch.Tensor:
        """(B,) rewards; default the episode's total reward."""
        fn = self.reward_fn or (lambda t: float(t.total_reward))
        return torch.tensor([fn(t) for t in trajectories], dtype=torch.float32)

    def training_record(self, trajectory: Trajectory) -> TokenRecord | None:
        """The tokens the update trains on (None: skip the trajectory)."""
        tokens = trajectory.tokens
        if tokens is None or not tokens.token_ids or sum(tokens.loss_mask) == 0:
            return None
        return tokens

    def group_ids(self, trajectories: list[Trajectory]) -> torch.Tensor:
        """(B,) group index of each trajectory: the episodes of one env seed form a group."""
        return torch.tensor([int(t.metadata.get("episode", 0)) for t in trajectories], dtype=torch.long)

    def token_advantages(
        self, batch: dict[str, torch.Tensor], seq_advantages: torch.Tensor, trajectories: list[Trajectory]
    ) -> torch.Tensor:
        """(B, T) per-token advantages: the sequence's advantage on each of its model tokens."""
        return seq_advantages[:, None] * batch["loss_mask"]

    # -- ALGO LOGIC: batch building ------------------------------------------------------------------------
    def build_batch(self, trajectories: list[Trajectory]) -> dict[str, torch.Tensor]:
        pairs = [(t, self.training_record(t)) for t in trajectories]
        kept = [(t, r) for t, r in pairs if r is not None]
        if not kept:
            raise RuntimeError("no trajectory in the rollout batch has model tokens to train on")
        trajs = [t for t, _ in kept]
        rewards = self.score(trajs)
        groups = self.group_ids(trajs)
        adv = group_advantages(rewards, groups, scale_by_std=self.config.scale_rewards, eps=self.config.adv_eps)
        keep = nonzero_variance_groups(rewards, groups)
        self.step_metrics.update(self._rollout_metrics(trajectories, rewards, groups, keep))
        if self.config.drop_zero_variance and bool(keep.any()):
            idx = keep.nonzero().flatten().tolist()
            trajs, kept = [trajs[i] for i in idx], [kept[i] for i in idx]
            adv = adv[keep]
        batch = collate([r for _, r in kept], self.pad_token_id)
        batch["advantages"] = self.token_advantages(batch, adv, trajs)
        if self.config.beta > 0:
            batch["ref_logprobs"] = self._reference_logprobs(batch)
        self.last_trajectories = trajs
        return batch

    @torch.no_grad()
    def _reference_logprobs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = []
        size = self.config.micro_batch_size
        for micro in split_micro(batch, size):
            ids, am, lm = (micro[k].to(self.device) for k in ("input_ids", "attention_mask", "loss_mask"))
            if self.ref_model is not None:
                out.append(token_logprobs(self.ref_model, ids, am, lm)["logprobs"].cpu())
            else:  # LoRA: the reference is the base model with the adapters switched off
                with self.model.disable_adapter():
                    out.append(token_logprobs(self.model, ids, am, lm)["logprobs"].cpu())
        return torch.cat(out)

    @staticmethod
    def _rollout_metrics(
        trajectories: list[Trajectory], rewards: torch.Tensor, groups: torch.Tensor, keep: torch.Tensor
    ) -> dict[str, float]:
        n = max(len(trajectories), 1)
        n_groups = max(len(torch.unique(groups)), 1)
        zero_groups = sum(1 for g in torch.unique(groups) if float(rewards[groups == g].max()) <= 0)
        return {
            "env/reward_mean": float(rewards.mean()),
            "env/reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
            "env/success_rate": sum(t.success for t in trajectories) / n,
            "env/turns_mean": sum(t.num_turns for t in trajectories) / n,
            "env/errors": float(sum(t.error is not None for t in trajectories)),
            "env/zero_variance_group_frac": 1.0 - len(torch.unique(groups[keep])) / n_groups,
            "env/zero_reward_group_frac": zero_groups / n_groups,
        }

    # -- the loop's two methods ----------------------------------------------------------------------------
    def make_step_batch(self) -> list[dict[str, torch.Tensor]]:
        if self.buffer is None or self.buffer_uses >= self.config.num_iterations:
            with self.full_weights():
                trajectories = self.sample(self.rollout_index)
            self.buffer = self.build_batch(trajectories)
            self.buffer_uses = 0
            self.rollout_index += 1
        self.buffer_uses += 1
        return split_micro(self.buffer, self.config.micro_batch_size)

    def compute_loss(self, micro: dict[str, torch.Tensor], totals: StepTotals) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        mask = micro["loss_mask"]
        out = token_logprobs(
            self.model, micro["input_ids"], micro["attention_mask"], mask, with_entropy=True,
            entropy_grad=c.entropy_coef > 0,
        )  # fmt: skip
        logprobs = out["logprobs"]
        per_token, clipped = ppo_clip_loss(logprobs, micro["old_logprobs"], micro["advantages"], c.eps_low, c.eps_high)
        metrics = {
            "losses/policy": float(masked_mean(per_token.detach(), mask)),
            "losses/clipfrac": float(masked_mean(clipped, mask)),
            "losses/entropy": float(masked_mean(out["entropy"].detach(), mask)),
            "losses/ratio_mean": float(masked_mean(torch.exp(logprobs.detach() - micro["old_logprobs"]), mask)),
        }
        if c.beta > 0:
            kl = kl_estimate(logprobs, micro["ref_logprobs"], c.kl_estimator)
            per_token = per_token + c.beta * kl
            metrics["losses/kl"] = float(masked_mean(kl.detach(), mask))
        if c.entropy_coef > 0:
            per_token = per_token + entropy_bonus(out["entropy"], c.entropy_coef)
        loss = aggregate(
            per_token, mask, c.loss_agg, totals.tokens, totals.sequences, max_tokens=c.max_tokens * self.env_max_turns
        )
        metrics["losses/total"] = float(loss.detach()) * totals.micro_batches
        return loss, metrics

    def trainer_state(self) -> dict[str, Any]:
        return {"buffer": self.buffer, "buffer_uses": self.buffer_uses, "rollout_index": self.rollout_index}

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        self.buffer = state["buffer"]
        self.buffer_uses = int(state["buffer_uses"])
        self.rollout_index = int(state["rollout_index"])
