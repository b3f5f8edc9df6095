"""Each loss against a hand computation on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from plyground.trainers.core.losses import (
    aggregate,
    dpo_loss,
    group_advantages,
    kl_estimate,
    nonzero_variance_groups,
    policy_gradient_loss,
    ppo_clip_loss,
    token_gae,
    value_loss,
)

REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
GROUPS = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])


def test_grpo_advantages_by_hand() -> None:
    # group 0: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.57735; group 1: all equal -> 0
    adv = group_advantages(REWARDS, GROUPS, eps=0.0)
    a = 0.5 / math.sqrt(1 / 3)
    assert torch.allclose(adv, torch.tensor([a, -a, -a, a, 0, 0, 0, 0]), atol=1e-6)


def test_dr_grpo_advantages_do_not_divide_by_std() -> None:
    adv = group_advantages(REWARDS, GROUPS, scale_by_std=False)
    assert torch.allclose(adv, torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]))


def test_zero_variance_groups_are_dropped() -> None:
    keep = nonzero_variance_groups(REWARDS, GROUPS)
    assert keep.tolist() == [True] * 4 + [False] * 4


def test_ppo_clip_symmetric_by_hand() -> None:
    ratios = torch.tensor([1.5, 0.5, 1.1, 0.5])
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    loss, clipped = ppo_clip_loss(ratios.log(), torch.zeros(4), adv, eps_low=0.2)
    # 1.5*A=1: min(1.5, 1.2) -> -1.2 clipped; 0.5, A=1: min(0.5, 0.8) -> -0.5;
    # 1.1, A=-1: min(-1.1, -1.1) -> 1.1; 0.5, A=-1: min(-0.5, -0.8) -> 0.8 clipped
    assert torch.allclose(loss, torch.tensor([-1.2, -0.5, 1.1, 0.8]), atol=1e-6)
    assert clipped.tolist() == [1.0, 0.0, 0.0, 1.0]


def test_ppo_clip_asymmetric_by_hand() -> None:
    ratios = torch.tensor([1.5, 0.5])
    loss, _ = ppo_clip_loss(ratios.log(), torch.zeros(2), torch.tensor([1.0, -1.0]), eps_low=0.2, eps_high=0.28)
    assert torch.allclose(loss, torch.tensor([-1.28, 0.8]), atol=1e-6)


def test_reinforce_by_hand() -> None:
    assert torch.allclose(policy_gradient_loss(torch.tensor([-2.0]), torch.tensor([0.5])), torch.tensor([1.0]))


def test_kl_k1_k3_by_hand() -> None:
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert kl_estimate(logp, ref, "k1").item() == pytest.approx(math.log(2), abs=1e-6)
    # k3 = r - log r - 1 with r = ref/pi = 0.5
    assert kl_estimate(logp, ref, "k3").item() == pytest.approx(0.5 - math.log(0.5) - 1, abs=1e-6)
    assert kl_estimate(logp, ref, "k2").item() == pytest.approx(0.5 * math.log(0.5) ** 2, abs=1e-6)
    assert kl_estimate(logp, logp, "k3").item() == 0.0


def test_dpo_loss_by_hand() -> None:
    loss, rc, rr = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), 0.5)
    # rewards 0.5 and -0.5, margin 1: -log sigmoid(1)
    assert rc.item() == pytest.approx(0.5) and rr.item() == pytest.approx(-0.5)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1))), abs=1e-6)


def test_dpo_off_policy_reference_uses_behaviour_logprobs() -> None:
    # Agent Q's off-policy variant: the behaviour policy's stored sums are the reference.
    policy_c, policy_r = torch.tensor([-4.0]), torch.tensor([-6.0])
    behaviour_c, behaviour_r = torch.tensor([-5.0]), torch.tensor([-5.0])
    loss, _, _ = dpo_loss(policy_c, policy_r, behaviour_c, behaviour_r, beta=0.1)
    margin = 0.1 * ((-4 + 5) - (-6 + 5))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-margin)), abs=1e-6)


def test_aggregations_by_hand() -> None:
    per_token = torch.tensor([[1.0, 2.0, 9.0], [3.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert aggregate(per_token, mask, "sequence").item() == pytest.approx((1.5 + 3) / 2)
    assert aggregate(per_token, mask, "token").item() == pytest.approx(6 / 3)
    assert aggregate(per_token, mask, "constant", max_tokens=4).item() == pytest.approx(6 / 8)


def test_clipped_value_loss_by_hand() -> None:
    loss, clipped = value_loss(torch.tensor([1.5]), torch.tensor([1.0]), torch.tensor([2.0]), clip_eps=0.2)
    # unclipped (1.5 - 2)^2 = 0.25; clipped value 1.2 -> 0.64; half the max
    assert loss.item() == pytest.approx(0.32) and clipped.item() == 1.0


def test_token_gae_by_hand() -> None:
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0]])
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    values = torch.tensor([[0.0, 0.5, 0.5, 0.5]])
    adv, ret = token_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[0.0, 0.5, 0.5, 0.5]]))
    assert torch.allclose(ret, torch.tensor([[0.0, 1.0, 1.0, 1.0]]))
    adv0, _ = token_gae(rewards, values, mask, gamma=1.0, lam=0.0)
    assert torch.allclose(adv0, torch.tensor([[0.0, 0.0, 0.0, 0.5]]))
