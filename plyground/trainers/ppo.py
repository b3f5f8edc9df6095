"""PPO for LLM agents (Schulman et al. 2017; token-level MDP as in Ouyang et al. 2022).

Rollouts come from :class:`~plyground.trainers.grpo.GRPOTrainer.sample` (``group_size`` defaults to
1 here: a learned value replaces the group baseline). Each model token is a time step; the episode's
reward sits on the last model token (``rewards: episode``), or, for multi-turn envs, each turn's env
reward on the last token of that turn's reply (``rewards: turn``: turn-level PPO, the per-turn credit
of a multi-turn agent baseline); a value head predicts ``V(s_t)`` from the hidden state that
predicts token ``t``; advantages come from token-level GAE (``core.losses.token_gae``) over the
model's tokens only (prompt and env tokens are skipped); the loss is PPO-clip plus
``vf_coef`` x the clipped value loss.

The value head sits on the policy's last hidden state (``critic="shared"``, one forward pass for
both) or on a separate small model with the same tokenizer (``critic="separate"``, e.g. ``tiny``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from plyground.trainers.core.logprobs import token_logprobs
from plyground.trainers.core.loop import StepTotals, hfield, split_micro
from plyground.trainers.core.losses import aggregate, masked_mean, ppo_clip_loss, token_gae, value_loss
from plyground.trainers.grpo import GRPOConfig, GRPOTrainer
from plyground.types import Trajectory


@dataclass
class PPOConfig(GRPOConfig):
    """PPO with a value head (shared trunk) or a separate critic model."""

    MIN_GROUP_SIZE: ClassVar[int] = 1  # the value head is the baseline

    group_size: int = hfield(1, "episodes per env seed (1: the value head is the baseline)")
    loss_agg: Literal["sequence", "token", "constant"] = hfield("token", "normalisation of the policy loss")
    num_iterations: int = hfield(2, "optimizer steps per rollout batch")
    critic: Literal["shared", "separate"] = hfield("shared", "value head on the policy trunk, or a separate model")
    critic_model: str = hfield("tiny", "separate critic: load_model name (same tokenizer as the policy)")
    gamma: float = hfield(1.0, "discount per model token")
    lam: float = hfield(0.95, "GAE lambda")
    vf_coef: float = hfield(0.5, "value loss coefficient")
    value_clip: float | None = hfield(0.2, "clip the value update to +- this around the rollout value (None: MSE)")
    whiten_advantages: bool = hfield(True, "normalise advantages over the batch's model tokens")
    rewards: Literal["episode", "turn"] = hfield(
        "episode", "episode: the scored episode reward on the last model token; turn: each turn's env reward on its last token"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.critic not in ("shared", "separate"):
            raise ValueError(f"critic must be shared or separate, got {self.critic!r}")
        if not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ValueError("gamma and lam must be in [0, 1]")
        if self.vf_coef < 0 or (self.value_clip is not None and self.value_clip <= 0):
            raise ValueError("vf_coef must be >= 0 and value_clip > 0 (or None)")
        if self.drop_zero_variance:
            raise ValueError("drop_zero_variance is a GRPO option; PPO's baseline is the value head")
        if self.rewards not in ("episode", "turn"):
            raise ValueError(f"rewards must be episode or turn, got {self.rewards!r}")


def turn_end_rewards(loss_mask: torch.Tensor, trajectories: list[Trajectory]) -> torch.Tensor:
    """(B, T): turn ``k``'s env reward on the last token of the ``k``-th run of model tokens.

    A row with fewer runs than turns (a truncated episode) gets the rewards of the turns it lost
    on its last run, so no reward is dropped; extra runs (a template that splits a reply) get 0."""
    from plyground.trainers.baselines import turn_spans

    out = torch.zeros_like(loss_mask, dtype=torch.float32)
    for b, traj in enumerate(trajectories):
        spans = turn_spans(loss_mask[b])
        turn_rewards = [float(t.reward) for t in traj.turns]
        if not spans or not turn_rewards:
            continue
        for k, reward in enumerate(turn_rewards):
            _, end = spans[min(k, len(spans) - 1)]
            out[b, end - 1] += reward
    return out


class PPOTrainer(GRPOTrainer):
    """PPO: GAE advantages from a learned value, clipped policy and value losses."""

    config: PPOConfig

    def __init__(self, config: PPOConfig, model: Any = None, tokenizer: Any = None, **kwargs: Any) -> None:
        if model is None:
            from plyground.inference.models import load_model

            model, tokenizer = load_model(config.model)
        extra: dict[str, torch.nn.Module] = {}
        hidden = int(model.config.hidden_size)
        if config.critic == "separate":
            from plyground.inference.models import load_model

            critic, _ = load_model(config.critic_model)
            critic.train()
            extra["critic"] = critic
            hidden = int(critic.config.hidden_size)
        head = torch.nn.Linear(hidden, 1)
        with torch.no_grad():  # start near V = 0 so early advantages are just the rewards
            head.weight.mul_(0.01)
            head.bias.zero_()
        extra["value_head"] = head
        super().__init__(config, model, tokenizer, extra_modules=extra, **kwargs)

    def values(self, micro: dict[str, torch.Tensor], policy_hidden: torch.Tensor | None) -> torch.Tensor:
        """(B, T): ``V`` of the state before token ``t`` (from the hidden state at ``t - 1``)."""
        if self.config.critic == "separate":
            out = self.extra_modules["critic"](
                input_ids=micro["input_ids"], attention_mask=micro["attention_mask"], output_hidden_states=True
            )
            hidden = out.hidden_states[-1]
        else:
            assert policy_hidden is not None
            hidden = policy_hidden
        v = self.extra_modules["value_head"](hidden.float()).squeeze(-1)
        v = torch.cat([v.new_zeros(v.shape[0], 1), v[:, :-1]], dim=1)
        return v * micro["loss_mask"]

    def build_batch(self, trajectories: list[Trajectory]) -> dict[str, torch.Tensor]:
        batch = super().build_batch(trajectories)
        mask = batch["loss_mask"]
        if self.config.rewards == "turn":
            rewards = turn_end_rewards(mask, self.last_trajectories)
        else:  # the episode's reward on each row's last model token
            rewards = torch.zeros_like(mask)
            seq_rewards = self.score(self.last_trajectories)
            last = (mask * torch.arange(mask.shape[1])).argmax(dim=1)
            rewards[torch.arange(mask.shape[0]), last] = seq_rewards
        old_values = self._rollout_values(batch)
        adv, returns = token_gae(rewards, old_values, mask, self.config.gamma, self.config.lam)
        if self.config.whiten_advantages:
            mean = masked_mean(adv, mask)
            std = torch.sqrt(masked_mean((adv - mean) ** 2, mask))
            adv = (adv - mean) / (std + 1e-8) * mask
        batch.update(advantages=adv, returns=returns, old_values=old_values)
        return batch

    def token_advantages(
        self, batch: dict[str, torch.Tensor], seq_advantages: torch.Tensor, trajectories: list[Trajectory]
    ) -> torch.Tensor:
        return torch.zeros_like(batch["loss_mask"])  # replaced by GAE in build_batch

    @torch.no_grad()
    def _rollout_values(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = []
        for micro in split_micro(batch, self.config.micro_batch_size):
            micro = {k: v.to(self.device) for k, v in micro.items()}
            hidden = None
            if self.config.critic == "shared":
                hidden = token_logprobs(
                    self.model, micro["input_ids"], micro["attention_mask"], micro["loss_mask"], with_hidden=True
                )["hidden"]
            out.append(self.values(micro, hidden).cpu())
        return torch.cat(out)

    def compute_loss(self, micro: dict[str, torch.Tensor], totals: StepTotals) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        mask = micro["loss_mask"]
        out = token_logprobs(
            self.model, micro["input_ids"], micro["attention_mask"], mask,
            with_entropy=True, with_hidden=c.critic == "shared",
        )
        policy_tok, clipped = ppo_clip_loss(out["logprobs"], micro["old_logprobs"], micro["advantages"], c.eps_low, c.eps_high)
        values = self.values(micro, out.get("hidden"))
        value_tok, vclipped = value_loss(values, micro["old_values"], micro["returns"], c.value_clip)
        per_token = policy_tok + c.vf_coef * value_tok
        if c.entropy_coef > 0:
            per_token = per_token - c.entropy_coef * out["entropy"]
        loss = aggregate(per_token, mask, c.loss_agg, totals.tokens, totals.sequences, c.max_tokens * self.env_max_turns)
        returns = micro["returns"]
        var = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
        # Undefined when the returns do not vary (e.g. every reward 0): reported as 0 then.
        explained = 1.0 - masked_mean((returns - values.detach()) ** 2, mask) / var if var > 1e-8 else var * 0
        return loss, {
            "losses/policy": float(masked_mean(policy_tok.detach(), mask)),
            "losses/value": float(masked_mean(value_tok.detach(), mask)),
            "losses/entropy": float(masked_mean(out["entropy"].detach(), mask)),
            "losses/clipfrac": float(masked_mean(clipped, mask)),
            "losses/value_clipfrac": float(masked_mean(vclipped, mask)),
            "losses/explained_variance": float(explained),
        }
