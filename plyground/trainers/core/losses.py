"""Every loss variant the trainers use, in one place.

Shapes: ``B`` sequences, ``T`` tokens (right padded), ``mask`` (B, T) is 1 on tokens the model
sampled (the loss mask) and 0 elsewhere; per-sequence quantities are (B,). All functions are pure
tensor code, so each one is tested against a hand computation on tiny tensors.

| name               | function                     | paper                                            |
|--------------------|------------------------------|--------------------------------------------------|
| ``reinforce``      | :func:`policy_gradient_loss` | Williams 1992                                    |
| ``ppo_clip``       | :func:`ppo_clip_loss`        | Schulman et al. 2017 (PPO)                       |
| asymmetric clip    | ``ppo_clip_loss(eps_high=)`` | Yu et al. 2025 (DAPO, "clip-higher")             |
| ``grpo`` advantage | :func:`group_advantages`     | Shao et al. 2024 (DeepSeekMath, GRPO)            |
| no std scaling     | ``scale_by_std=False``       | Liu et al. 2025 (Dr. GRPO)                       |
| zero-variance drop | :func:`nonzero_variance_groups` | Yu et al. 2025 (DAPO, dynamic sampling)       |
| aggregation        | :func:`aggregate`            | ``sequence`` GRPO, ``token`` DAPO, ``constant`` Dr. GRPO |
| ``k1`` / ``k3`` KL | :func:`kl_estimate`          | Schulman 2020, "Approximating KL divergence"     |
| entropy bonus      | :func:`entropy_bonus`        | Williams & Peng 1991; Mnih et al. 2016           |
| ``dpo`` sigmoid    | :func:`dpo_loss`             | Rafailov et al. 2023 (DPO); off-policy reference: Putta et al. 2024 (Agent Q) |
| clipped value      | :func:`value_loss`           | PPO2 baselines (Dhariwal et al. 2017)            |
| token-level GAE    | :func:`token_gae`            | Schulman et al. 2016 (GAE)                       |
"""

from __future__ import annotations

from typing import Literal

import torch

Aggregation = Literal["sequence", "token", "constant"]
KLEstimator = Literal["k1", "k2", "k3"]

AGGREGATIONS: dict[str, str] = {
    "sequence": "mean over each sequence's tokens, then mean over sequences (GRPO; long answers count "
    "less per token)",
    "token": "sum over all tokens of the optimizer step / number of tokens (DAPO; every token counts "
    "the same)",
    "constant": "sum over all tokens / (sequences x max_tokens) (Dr. GRPO; no length bias)",
}


# -- reductions -----------------------------------------------------------------------------------
def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` where ``mask`` is 1 (0 when the mask is empty, never NaN)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    mode: Aggregation,
    step_tokens: float | None = None,
    step_sequences: float | None = None,
    max_tokens: int | None = None,
) -> torch.Tensor:
    """Reduce a (B, T) per-token loss to a scalar; see :data:`AGGREGATIONS`.

    ``step_tokens`` / ``step_sequences`` are the totals over the whole optimizer step (all
    micro-batches); dividing by them, not by the micro-batch's own counts, makes gradient
    accumulation give exactly the gradient of one big batch. They default to this batch's counts.
    """
    n_seq = float(step_sequences if step_sequences is not None else per_token.shape[0])
    if mode == "sequence":
        return masked_mean(per_token, mask, dim=1).sum() / n_seq
    if mode == "token":
        n_tok = float(step_tokens if step_tokens is not None else mask.sum().item())
        return (per_token * mask).sum() / max(n_tok, 1.0)
    if mode == "constant":
        width = max_tokens if max_tokens is not None else per_token.shape[1]
        return (per_token * mask).sum() / (n_seq * width)
    raise ValueError(f"unknown aggregation {mode!r}; expected one of {sorted(AGGREGATIONS)}")


# -- advantages -----------------------------------------------------------------------------------
def group_advantages(
    rewards: torch.Tensor, groups: torch.Tensor, scale_by_std: bool = True, eps: float = 1e-6
) -> torch.Tensor:
    """GRPO: ``A_i = (r_i - mean_g) / (std_g + eps)`` within each group ``g`` (B,) -> (B,).

    ``std`` is the unbiased sample std (as ``torch.std`` and TRL); a group of one has std 0 and
    advantage 0. ``scale_by_std=False`` is Dr. GRPO's ``A_i = r_i - mean_g``.
    """
    rewards = rewards.to(torch.float32)
    adv = torch.zeros_like(rewards)
    for g in torch.unique(groups):
        idx = groups == g
        r = rewards[idx]
        centred = r - r.mean()
        if scale_by_std:
            std = r.std() if r.numel() > 1 else r.new_zeros(())
            if float(std) > 0:  # an all-equal group is already all 0 (and 0 / eps=0 would be NaN)
                centred = centred / (std + eps)
        adv[idx] = centred
    return adv


def nonzero_variance_groups(rewards: torch.Tensor, groups: torch.Tensor, tol: float = 1e-8) -> torch.Tensor:
    """(B,) bool: True for members of groups whose rewards are not all equal (DAPO's dynamic
    sampling drops the rest: their GRPO advantages are all 0, so they only dilute the batch)."""
    keep = torch.zeros_like(groups, dtype=torch.bool)
    for g in torch.unique(groups):
        idx = groups == g
        r = rewards[idx].to(torch.float32)
        keep[idx] = bool((r.max() - r.min()) > tol)
    return keep


def token_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the model's tokens (B, T) -> (advantages, returns).

    Time steps are the masked tokens of a row in order (template and environment tokens between
    turns are skipped, not counted as steps); the step after the last one is terminal (value 0).
    ``rewards`` is usually 0 everywhere except the final reward on the last model token.
    """
    adv = torch.zeros_like(values, dtype=torch.float32)
    for b in range(values.shape[0]):
        steps = torch.nonzero(mask[b] > 0, as_tuple=False).flatten().tolist()
        running = 0.0
        next_value = 0.0
        for t in reversed(steps):
            delta = float(rewards[b, t]) + gamma * next_value - float(values[b, t])
            running = delta + gamma * lam * running
            adv[b, t] = running
            next_value = float(values[b, t])
    returns = (adv + values.float()) * mask
    return adv * mask, returns


# -- policy losses --------------------------------------------------------------------------------
def policy_gradient_loss(logprobs: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """REINFORCE, per token (B, T): ``-A_t * log pi(a_t)``; ``advantages`` (B, T) or (B, 1)."""
    return -advantages * logprobs


def ppo_clip_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate per token (B, T), and a (B, T) float "was clipped" indicator.

    ``ratio = exp(logprobs - old_logprobs)`` against the stored behaviour log-probabilities;
    ``loss = -min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)``. ``eps_high`` defaults to
    ``eps_low`` (symmetric PPO); DAPO's clip-higher sets it larger (0.28 vs 0.2) so that unlikely
    tokens with positive advantage can grow, which keeps entropy from collapsing.
    """
    eps_high = eps_low if eps_high is None else eps_high
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * advantages
    loss = -torch.minimum(unclipped, clipped)
    was_clipped = (clipped < unclipped).to(torch.float32)
    return loss, was_clipped


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: KLEstimator = "k3") -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from samples of pi (B, T) (Schulman 2020).

    With ``log_r = ref - logprobs``: ``k1 = -log_r`` (unbiased, high variance, can be negative),
    ``k2 = log_r**2 / 2`` (biased, low variance), ``k3 = exp(log_r) - log_r - 1`` (unbiased, >= 0;
    the GRPO paper's estimator).
    """
    log_r = ref_logprobs - logprobs
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r**2
    if kind == "k3":
        return torch.exp(log_r) - log_r - 1.0
    raise ValueError(f"unknown KL estimator {kind!r}; expected k1, k2 or k3")


def entropy_bonus(entropy: torch.Tensor, coef: float) -> torch.Tensor:
    """Per-token term to ADD to the loss (B, T): ``-coef * entropy`` (maximising entropy)."""
    return -coef * entropy


def dpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO's sigmoid loss per pair (B,), with the implicit rewards (chosen, rejected) (B,) each.

    Inputs are summed log-probabilities of each response given its prompt.
    ``margin = beta * ((pi_w - ref_w) - (pi_l - ref_l))``; ``loss = -log sigmoid(margin)``
    (with conservative label smoothing ``eps``: ``-(1-eps) log s(m) - eps log s(-m)``).
    The reference is a frozen copy of the initial policy, or (off-policy, Agent Q) the behaviour
    policy's stored log-probabilities of the same responses.
    """
    chosen_rewards = beta * (chosen_logps - ref_chosen_logps)
    rejected_rewards = beta * (rejected_logps - ref_rejected_logps)
    margin = chosen_rewards - rejected_rewards
    logsig = torch.nn.functional.logsigmoid
    loss = -(1.0 - label_smoothing) * logsig(margin) - label_smoothing * logsig(-margin)
    return loss, chosen_rewards.detach(), rejected_rewards.detach()


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip_eps: float | None = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss per token (B, T) and a "was clipped" indicator.

    ``0.5 * max((V - R)^2, (old_V + clip(V - old_V, -eps, eps) - R)^2)``: the value may not move
    further than ``eps`` from the value at rollout time in one batch. ``clip_eps=None`` is plain MSE.
    """
    unclipped = (values - returns) ** 2
    if clip_eps is None:
        return 0.5 * unclipped, torch.zeros_like(unclipped)
    clipped_v = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)
    clipped = (clipped_v - returns) ** 2
    return 0.5 * torch.maximum(unclipped, clipped), (clipped > unclipped).to(torch.float32)
