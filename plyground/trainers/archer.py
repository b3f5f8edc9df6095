"""ArCHer: hierarchical multi-turn actor-critic (Zhou et al. 2024; reference YifeiZhou02/ArCHer).

One rollout iteration (every ``num_iterations`` actor steps):

1. **collect** ``tasks_per_step x group_size`` episodes with the current policy (the GRPO sampler)
   and add their turns to a replay buffer of utterance-level transitions
   ``(obs, action, reward, next_obs, done, mc_return)``;
2. **critic**: ``critic_steps`` steps on batches of ``critic_batch`` buffer transitions, loss = the
   sum of four MSEs (``Qi(s,a) -> r + gamma (1-done) Vtarget_i(s')``, ``Vi(s) -> Qtarget_i(s, a_pi)``),
   each followed by a soft update ``target <- (1 - tau) target + tau online``;
3. **actor** (once ``iteration >= warmup_iters``), token level, with advantages from the online
   critic (no gradient) and loss ``-A * log pi`` on every model token of the action (PPO-clip at
   ratio 1, i.e. the plain policy gradient, on a fresh sample). Which states and actions, by
   ``actor_states``:

   - ``"replay"`` (the reference): each of the ``num_iterations`` actor steps of an iteration
     samples ``actor_batch`` transitions from the replay buffer, samples a fresh action ``a_pi``
     from the *current* policy at each one's prompt (the chat the policy saw there, kept in the
     buffer; no env step) and uses ``A = min(Q1,Q2)(s, a_pi) - min(V1,V2)(s)``. Reusing buffer
     states is where ArCHer's sample efficiency over on-policy methods comes from.
   - ``"rollout"`` (the default, kept for earlier configs): the latest rollout's turns with the
     actions the policy took there; the ``num_iterations`` steps reuse that batch with PPO-clip.

   Before warm-up ends the advantages are 0, so the actor does not move.

The V target uses ``Qtarget(s, a_pi)``: with ``v_target_actions="policy"`` (the reference) ``a_pi``
is sampled from the current policy at each critic batch's states (one generate call per critic
step); with ``"buffer"`` (the default, cheaper) it is the buffer's action, exact for on-policy data.

Deviations, for CPU scale: the reference's ``actor_epochs`` are ``num_iterations`` actor steps per
rollout iteration, each on ``actor_batch`` states (the reference accumulates gradients over
``batch x grad_accum`` states per step); loss aggregation follows ``loss_agg`` (token mean by
default; the reference sums a reply's token log-probs and averages over replies).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from plyground.rollout.agent import parse_action
from plyground.trainers.baselines import spread_per_turn
from plyground.trainers.core.critic import (
    STATE_CONTEXTS,
    CriticConfig,
    DoubleCritic,
    ReplayBuffer,
    advantages,
    critic_loss,
    make_target,
    pretrained_encoder,
    soft_update,
    state_text,
    trajectory_transitions,
)
from plyground.trainers.core.logprobs import collate
from plyground.trainers.core.loop import StepTotals, hfield, split_micro
from plyground.trainers.grpo import GRPOConfig, GRPOTrainer
from plyground.types import SamplingParams, TokenRecord, Trajectory

ACTOR_STATES = ("rollout", "replay")
V_TARGET_ACTIONS = ("buffer", "policy")


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
        default_factory=dict,
        metadata={"help": "CriticConfig fields: dim, layers, heads, head_hidden, max_length, encoder (transformer, bag, "
                  "or policy: a copy of the policy's own backbone)"},
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
    actor_states: Literal["rollout", "replay"] = hfield(
        "rollout", "the actor's states: 'replay' samples actor_batch buffer states per actor step and fresh actions "
        "from the current policy there (the reference); 'rollout' trains on the latest rollout's turns and actions"
    )
    actor_batch: int = hfield(32, "actor_states=replay: buffer states per actor step")
    v_target_actions: Literal["buffer", "policy"] = hfield(
        "buffer", "a_pi in the V target Qtarget(s, a_pi): the buffer's action, or 'policy': sampled from the current "
        "policy at each critic batch's states (the reference; one generate call per critic step)"
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
        if self.actor_states not in ACTOR_STATES:
            raise ValueError(f"actor_states must be one of {ACTOR_STATES}, got {self.actor_states!r}")
        if self.v_target_actions not in V_TARGET_ACTIONS:
            raise ValueError(f"v_target_actions must be one of {V_TARGET_ACTIONS}, got {self.v_target_actions!r}")
        if self.actor_batch < 1:
            raise ValueError(f"actor_batch must be >= 1, got {self.actor_batch}")


class ArCHerTrainer(GRPOTrainer):
    """Token-level actor on the GRPO sampler + an utterance-level double critic (module docstring)."""

    config: ArCHerConfig
    # Data parallel: every process keeps the transitions it played in its own buffer; the critic's
    # gradients are averaged like the actor's, so the critics stay equal.
    per_rank_state = True

    def __init__(self, config: ArCHerConfig, model: Any = None, tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(config, model, tokenizer, **kwargs)
        gen = torch.random.get_rng_state()
        torch.manual_seed(config.seed + 17)
        critic_config = CriticConfig(**config.critic)
        # encoder "policy": the critic reads with a copy of the warm-started policy's backbone (the
        # reference's critic is a pretrained RoBERTa; a from-scratch encoder must first learn to read).
        encoder = pretrained_encoder(self.base_model) if critic_config.encoder == "policy" else None
        self.critic = DoubleCritic(len(self.tokenizer), critic_config, encoder=encoder).to(self.device)
        torch.random.set_rng_state(gen)
        if self.parallel is not None:
            self.parallel.broadcast_parameters(list(self.critic.parameters()), unwrapped=True)
        self.target_critic = make_target(self.critic)
        self.critic_opt = torch.optim.AdamW(self.critic.parameters(), lr=config.critic_lr)
        self.replay = ReplayBuffer(config.buffer_size)
        self.critic_rng = random.Random(config.seed + 1_000_003 * self.rank)
        self.actor_rng = random.Random(config.seed + 1 + 1_000_003 * self.rank)
        self.iteration = 0
        self.policy_samples = 0  # generate calls at buffer states so far: each gets its own sampling seed

    # -- critic ------------------------------------------------------------------------------------
    def critic_update(self, steps: int) -> dict[str, float]:
        """``steps`` critic steps on buffer batches, one soft update after each; mean metrics."""
        c = self.config
        sums: dict[str, float] = {}
        self.critic.train()
        for _ in range(steps):
            batch = self.replay.sample(c.critic_batch, self.critic_rng)
            pi_actions = None
            if c.v_target_actions == "policy":
                pi_actions = [parse_action(comp.text) for comp in self.policy_actions(batch)]
            loss, metrics = critic_loss(
                self.critic, self.target_critic, self.tokenizer, batch, c.gamma, pi_actions=pi_actions, device=self.device,  # type: ignore[arg-type]
            )
            self.critic_opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.parallel is not None:
                self.parallel.average_gradients(list(self.critic.parameters()), unwrapped=True)
            torch.nn.utils.clip_grad_norm_(self.critic.parameters(), c.critic_max_grad_norm)
            self.critic_opt.step()
            soft_update(self.target_critic, self.critic, c.tau)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v / steps
        return sums

    # -- fresh actions at buffer states ---------------------------------------------------------------
    def policy_actions(self, states: list[Any]) -> list[Any]:
        """One completion of the current policy per buffer transition, at the prompt the policy saw
        there (no env step); each call draws with its own seed, a function of the run's seed and
        of how many such calls came before (so a resumed run draws what the straight run did)."""
        c = self.config
        prompts = [t.prompt_ids for t in states]
        if any(not p for p in prompts):
            raise RuntimeError(
                "a replay transition has no prompt ids: re-sampling actions at buffer states needs rollouts "
                "whose completions record prompt_token_ids (a token backend)"
            )
        generate = getattr(self.backend, "generate_ids", None)
        if generate is None:
            raise RuntimeError(f"{type(self.backend).__name__} cannot generate from token ids")
        seed = (c.seed * 1_000_003 + 7_777_777 + self.policy_samples * self.world_size + self.rank) % 2**31
        self.policy_samples += 1
        params = SamplingParams(max_tokens=c.max_tokens, temperature=c.temperature, top_p=c.top_p, seed=seed)
        with self.full_weights():
            return [row[0] for row in generate(prompts, params)]

    def replay_actor_batch(self) -> dict[str, torch.Tensor]:
        """One actor step's batch under ``actor_states="replay"``: ``actor_batch`` buffer states,
        a fresh action of the current policy at each, ``A = min Q(s, a_pi) - min V(s)`` on the
        action's tokens (the prompt's tokens are masked out)."""
        c = self.config
        states = self.replay.sample(c.actor_batch, self.actor_rng)
        completions = self.policy_actions(states)
        actions = [parse_action(comp.text) for comp in completions]
        self.critic.eval()
        adv = advantages(self.critic, self.tokenizer, [t.obs for t in states], actions, self.device)
        adv = self._shape_advantages(adv)
        records = []
        for state, comp in zip(states, completions, strict=True):
            prompt, ids = list(state.prompt_ids or []), list(comp.token_ids)
            logprobs = list(comp.logprobs) if len(comp.logprobs) == len(ids) else [0.0] * len(ids)
            records.append(TokenRecord(prompt + ids, [0] * len(prompt) + [1] * len(ids), [0.0] * len(prompt) + logprobs))
        batch = collate(records, self.pad_token_id)
        batch["advantages"] = adv[:, None] * batch["loss_mask"]
        if c.beta > 0:
            batch["ref_logprobs"] = self._reference_logprobs(batch)
        return batch

    def _shape_advantages(self, flat: torch.Tensor) -> torch.Tensor:
        self.step_metrics["critic/advantage_raw_mean"] = float(flat.mean()) if flat.numel() else 0.0
        if self.config.center_advantages and flat.numel() > 1:
            flat = flat - flat.mean()
        if self.config.normalize_advantages and flat.numel() > 1:
            flat = flat / (flat.std() + 1e-6)
        self.step_metrics["critic/advantage_mean"] = float(flat.mean()) if flat.numel() else 0.0
        self.step_metrics["critic/advantage_std"] = float(flat.std()) if flat.numel() > 1 else 0.0
        return flat

    def make_step_batch(self) -> list[dict[str, torch.Tensor]]:
        # The rollout (buffer, critic, rollout metrics) runs as in GRPO every num_iterations steps;
        # in replay mode its batch carries zero advantages and the step trains on buffer states.
        micro = super().make_step_batch()
        if self.config.actor_states == "rollout" or self.iteration <= self.config.warmup_iters:
            return micro
        return split_micro(self.replay_actor_batch(), self.config.micro_batch_size)

    # -- GRPO extension points -----------------------------------------------------------------------
    def sample(self, rollout_index: int) -> list[Trajectory]:
        trajs = super().sample(rollout_index)
        for t in trajs:
            if t.error is None and t.turns:
                self.replay.extend(trajectory_transitions(t, self.config.gamma, self.config.critic_context))
        ready = len(self.replay) > 0
        if self.parallel is not None:  # the critic steps average gradients: all processes or none
            ready = self.parallel.all_true(ready)
        if ready and self.config.critic_steps:
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
        if not actor_on or self.config.actor_states == "replay":
            return torch.zeros_like(batch["loss_mask"])  # replay: the actor trains on buffer states instead
        obs = [state_text(turn.observation, i, self.config.critic_context) for t in trajectories for i, turn in enumerate(t.turns)]
        acts = [turn.action for t in trajectories for turn in t.turns]
        self.critic.eval()
        flat = advantages(self.critic, self.tokenizer, obs, acts, self.device) if obs else torch.zeros(0)
        flat = self._shape_advantages(flat)
        per_turn, i = [], 0
        for t in trajectories:
            per_turn.append(flat[i : i + len(t.turns)].tolist())
            i += len(t.turns)
        return spread_per_turn(batch["loss_mask"], per_turn)

    def compute_loss(self, micro: dict[str, torch.Tensor], totals: StepTotals) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics = super().compute_loss(micro, totals)
        if self.config.warmup_iters > 0 and self.iteration <= self.config.warmup_iters:
            # Critic-only warm-up: the advantages are zero, but an entropy bonus or KL term would still
            # move the actor; the warm-up must leave it where it started.
            loss = loss * 0.0
        return loss, metrics

    # -- checkpoint ----------------------------------------------------------------------------------
    def trainer_state(self) -> dict[str, Any]:
        return {
            **super().trainer_state(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "replay": self.replay.state_dict(),
            "critic_rng": self.critic_rng.getstate(),
            "actor_rng": self.actor_rng.getstate(),
            "policy_samples": self.policy_samples,
            "iteration": self.iteration,
        }

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        super().load_trainer_state(state)
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.replay.load_state_dict(state["replay"])
        self.critic_rng.setstate(state["critic_rng"])
        if "actor_rng" in state:  # checkpoints from before actor_states=replay lack these
            self.actor_rng.setstate(state["actor_rng"])
            self.policy_samples = int(state["policy_samples"])
        self.iteration = int(state["iteration"])
