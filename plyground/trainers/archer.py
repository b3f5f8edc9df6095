"""ArCHer: hierarchical multi-turn actor-critic (Zhou et al. 2024; reference YifeiZhou02/ArCHer).

One rollout iteration (every ``num_iterations`` actor steps):

1. **collect** ``tasks_per_step x group_size`` episodes with the current policy (the GRPO sampler)
   and add their turns to a replay buffer of utterance-level transitions
   ``(obs, action, reward, next_obs, done, mc_return)``;
2. **critic**: ``critic_steps`` steps on batches of ``critic_batch`` buffer transitions, loss = the
   sum of four MSEs (``Qi(s,a) -> r + gamma (1-done) Vtarget_i(s')``, ``Vi(s) -> Qtarget_i(s, a_pi)``),
   each followed by a soft update ``target <- (1 - tau) target + tau online``;
3. **actor** (once ``iteration >= warmup_iters``): every model token of turn ``k`` is weighted by
   ``A_k = min(Q1,Q2)(s_k, a_k) - min(V1,V2)(s_k)`` from the online critic (no gradient), where
   ``a_k`` was just sampled from the current policy at ``s_k``; loss ``-A * log pi`` per token
   (PPO-clip at ratio 1 on the first actor step). Before warm-up ends the advantages are 0, so the
   actor does not move.

The reference's ``actor_epochs`` (several actor steps per iteration) is GRPO's ``num_iterations``:
the advantages are computed once per rollout batch and reused, with PPO-clip on the later steps.

Deviation, kept small for CPU scale: the V target uses the buffer's action (``a_pi`` = what the
behaviour policy did), exact for the freshest rollouts; the actor's states are the latest rollout's
(on-policy), not a fresh sample of buffer states.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from plyground.trainers.baselines import spread_per_turn
from plyground.trainers.core.critic import (
    STATE_CONTEXTS,
    CriticConfig,
    DoubleCritic,
    ReplayBuffer,
    advantages,
    critic_loss,
    make_target,
    soft_update,
    state_text,
    trajectory_transitions,
)
from plyground.trainers.core.loop import hfield
from plyground.trainers.grpo import GRPOConfig, GRPOTrainer
from plyground.types import Trajectory


@dataclass
class ArCHerConfig(GRPOConfig):
    """ArCHer on a multi-turn env (defaults: ArCHer's gamma/tau/warm-up at CPU scale)."""

    MIN_GROUP_SIZE: ClassVar[int] = 1
    env_id: str = hfield("TwentyQuestions-v0", "multi-turn env")
    group_size: int = hfield(1, "episodes per env seed")
    tasks_per_step: int = hfield(8, "episodes per rollout iteration (rollout_size)")
    max_tokens: int = hfield(24, "tokens per utterance")
    gamma: float = hfield(0.95, "discount over turns")
    tau: float = hfield(0.1, "target critic soft-update rate")
    critic_steps: int = hfield(20, "critic steps per rollout iteration (each followed by a soft update)")
    critic_batch: int = hfield(32, "transitions per critic step")
    critic_lr: float = hfield(1e-3, "critic learning rate (AdamW)")
    critic_max_grad_norm: float = hfield(1.0, "critic gradient clip")
    warmup_iters: int = hfield(2, "rollout iterations of critic-only training before the actor moves")
    buffer_size: int = hfield(100_000, "replay buffer capacity (transitions)")
    critic: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "CriticConfig fields: dim, layers, heads, head_hidden, max_length"}
    )
    normalize_advantages: bool = hfield(False, "divide actor advantages by their batch std")
    center_advantages: bool = hfield(
        False, "subtract the batch mean from the actor advantages (a lagging V makes min(Q) - min(V) biased; "
        "a positive bias raises every sampled action and can collapse the policy)"
    )
    critic_context: Literal["observation", "turn"] = hfield(
        "observation", "the critic's state text: the observation, or 'turn k: ' + observation (the value of a "
        "state depends on the turns left when the env ends at a horizon)"
    )
    loss_agg: Literal["sequence", "token", "constant"] = hfield("token", "token-level normalisation")
    lr: float = hfield(1e-4, "actor peak learning rate (AdamW)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.gamma <= 1 or not 0 <= self.tau <= 1:
            raise ValueError("gamma and tau must be in [0, 1]")
        if self.critic_steps < 0 or self.critic_batch < 1 or self.warmup_iters < 0 or self.buffer_size < 1:
            raise ValueError("critic_steps, warmup_iters >= 0; critic_batch, buffer_size >= 1")
        CriticConfig(**self.critic)  # unknown keys fail here
        if self.critic_context not in STATE_CONTEXTS:
            raise ValueError(f"critic_context must be one of {STATE_CONTEXTS}, got {self.critic_context!r}")


class ArCHerTrainer(GRPOTrainer):
    """Token-level actor on the GRPO sampler + an utterance-level double critic (module docstring)."""

    config: ArCHerConfig

    def __init__(self, config: ArCHerConfig, model: Any = None, tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(config, model, tokenizer, **kwargs)
        gen = torch.random.get_rng_state()
        torch.manual_seed(config.seed + 17)
        self.critic = DoubleCritic(len(self.tokenizer), CriticConfig(**config.critic)).to(self.device)
        torch.random.set_rng_state(gen)
        self.target_critic = make_target(self.critic)
        self.critic_opt = torch.optim.AdamW(self.critic.parameters(), lr=config.critic_lr)
        self.replay = ReplayBuffer(config.buffer_size)
        self.critic_rng = random.Random(config.seed)
        self.iteration = 0

    # -- critic ------------------------------------------------------------------------------------
    def critic_update(self, steps: int) -> dict[str, float]:
        """``steps`` critic steps on buffer batches, one soft update after each; mean metrics."""
        c = self.config
        sums: dict[str, float] = {}
        self.critic.train()
        for _ in range(steps):
            batch = self.replay.sample(c.critic_batch, self.critic_rng)
            loss, metrics = critic_loss(self.critic, self.target_critic, self.tokenizer, batch, c.gamma, device=self.device)  # type: ignore[arg-type]
            self.critic_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.critic.parameters(), c.critic_max_grad_norm)
            self.critic_opt.step()
            soft_update(self.target_critic, self.critic, c.tau)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v / steps
        return sums

    # -- GRPO extension points -----------------------------------------------------------------------
    def sample(self, rollout_index: int) -> list[Trajectory]:
        trajs = super().sample(rollout_index)
        for t in trajs:
            if t.error is None and t.turns:
                self.replay.extend(trajectory_transitions(t, self.config.gamma, self.config.critic_context))
        if len(self.replay) and self.config.critic_steps:
            self.step_metrics.update(self.critic_update(self.config.critic_steps))
        self.step_metrics["charts/buffer_size"] = float(len(self.replay))
        ok = [t for t in trajs if t.success]
        self.step_metrics["env/turns_to_success"] = (
            sum(t.num_turns for t in ok) / len(ok) if ok else float(self.env_max_turns)
        )
        self.iteration += 1
        return trajs

    def token_advantages(
        self, batch: dict[str, torch.Tensor], seq_advantages: torch.Tensor, trajectories: list[Trajectory]
    ) -> torch.Tensor:
        actor_on = self.iteration > self.config.warmup_iters
        self.step_metrics["charts/actor_on"] = float(actor_on)
        if not actor_on:
            return torch.zeros_like(batch["loss_mask"])
        obs = [state_text(turn.observation, i, self.config.critic_context) for t in trajectories for i, turn in enumerate(t.turns)]
        acts = [turn.action for t in trajectories for turn in t.turns]
        self.critic.eval()
        flat = advantages(self.critic, self.tokenizer, obs, acts, self.device) if obs else torch.zeros(0)
        self.step_metrics["critic/advantage_raw_mean"] = float(flat.mean()) if flat.numel() else 0.0
        if self.config.center_advantages and flat.numel() > 1:
            flat = flat - flat.mean()
        if self.config.normalize_advantages and flat.numel() > 1:
            flat = flat / (flat.std() + 1e-6)
        per_turn, i = [], 0
        for t in trajectories:
            per_turn.append(flat[i : i + len(t.turns)].tolist())
            i += len(t.turns)
        self.step_metrics["critic/advantage_mean"] = float(flat.mean()) if flat.numel() else 0.0
        self.step_metrics["critic/advantage_std"] = float(flat.std()) if flat.numel() > 1 else 0.0
        return spread_per_turn(batch["loss_mask"], per_turn)

    # -- checkpoint ----------------------------------------------------------------------------------
    def trainer_state(self) -> dict[str, Any]:
        return {
            **super().trainer_state(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "replay": self.replay.state_dict(),
            "critic_rng": self.critic_rng.getstate(),
            "iteration": self.iteration,
        }

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        super().load_trainer_state(state)
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.replay.load_state_dict(state["replay"])
        self.critic_rng.setstate(state["critic_rng"])
        self.iteration = int(state["iteration"])
