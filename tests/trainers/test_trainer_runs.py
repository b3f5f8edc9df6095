"""Smoke and learning-signal runs of each trainer on the tiny model (CPU, seconds each)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from plyground.inference.models import tiny_model
from plyground.trainers import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer, PPOConfig, PPOTrainer
from plyground.trainers.sft import SFTConfig, SFTTrainer, expert_trajectories
from plyground.types import Trajectory

GUESS_SMALL = {"n": 4, "max_turns": 2}


def test_sft_on_bisection_trajectories_lowers_the_loss(tmp_path: Path) -> None:
    from plyground.envs.guess_number import bisection_chat_policy

    model, tok = tiny_model()
    trajs = expert_trajectories("GuessNumber-v0", bisection_chat_policy, tok, episodes=8, env_kwargs={"n": 32})
    records = [t.tokens for t in trajs if t.success and t.tokens is not None]
    assert len(records) == 8 and all(sum(r.loss_mask) > 0 for r in records)
    config = SFTConfig(
        out_dir=str(tmp_path), data_path="unused", batch_size=4, micro_batch_size=4, total_steps=8, lr=5e-3
    )
    history = SFTTrainer(config, model, tok, records=records).train()
    nll = [h["losses/nll"] for h in history]
    assert len(nll) == 8
    first, last = nll[0], sum(nll[-3:]) / 3
    assert last < 0.5 * first, nll  # a real learning signal: the expert's guesses become likely


def test_grpo_smoke_writes_metrics_and_a_checkpoint(tmp_path: Path) -> None:
    model, tok = tiny_model()
    config = GRPOConfig(
        out_dir=str(tmp_path), env_id="GuessNumber-v0", env_kwargs=GUESS_SMALL, tasks_per_step=2, group_size=2,
        max_tokens=8, total_steps=2, micro_batch_size=4, lr=1e-3, beta=0.04, num_iterations=2,
        loss_agg="token", eps_high=0.28,
    )
    trainer = GRPOTrainer(config, model, tok)
    assert trainer.backend.model is trainer.base_model  # the rollout backend samples the trained model
    history = trainer.train()
    assert [h["step"] for h in history] == [1, 2]
    first = history[0]
    for key in ("losses/policy", "losses/kl", "losses/clipfrac", "env/reward_mean", "env/zero_variance_group_frac",
                "charts/lr", "charts/weight_version"):
        assert key in first, key
    assert first["losses/ratio_mean"] == pytest.approx(1.0, abs=1e-3)  # trainer and sampler logprobs agree
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2]
    assert (tmp_path / "checkpoints" / "step_000002" / "trainer.pt").exists()
    assert trainer.rollout_index == 1  # num_iterations=2: two updates on one rollout batch


def test_grpo_rewards_become_advantages(tmp_path: Path) -> None:
    model, tok = tiny_model()
    config = GRPOConfig(
        out_dir=str(tmp_path), env_id="GuessNumber-v0", env_kwargs=GUESS_SMALL, tasks_per_step=1, group_size=4,
        max_tokens=4, total_steps=1, micro_batch_size=4, drop_zero_variance=True,
    )
    # A reward that differs within the group, so the group survives and advantages are +-0.866.
    trainer = GRPOTrainer(config, model, tok, reward_fn=lambda t: float(t.metadata["sample"] % 2))
    batch = trainer.build_batch(trainer.sample(0))
    per_seq = (batch["advantages"].sum(1) / batch["loss_mask"].sum(1)).tolist()
    assert per_seq == pytest.approx([-0.866, 0.866, -0.866, 0.866], abs=1e-3)


def test_ppo_smoke(tmp_path: Path) -> None:
    model, tok = tiny_model()
    config = PPOConfig(
        out_dir=str(tmp_path), env_id="GuessNumber-v0", env_kwargs=GUESS_SMALL, tasks_per_step=4,
        max_tokens=8, total_steps=2, micro_batch_size=4, lr=1e-3,
    )
    history = PPOTrainer(config, model, tok).train()
    assert {"losses/value", "losses/policy", "losses/explained_variance"} <= set(history[-1])
    assert (tmp_path / "checkpoints" / "latest").exists()


def _pairs() -> list[dict[str, Any]]:
    prompt = [{"role": "user", "content": "Guess a number from 1 to 100."}]
    return [
        {"prompt": prompt, "chosen": "50", "rejected": "I refuse",
         "meta": {"chosen_logprob_sum": -8.0, "rejected_logprob_sum": -9.0}},
        {"prompt": prompt, "chosen": "25", "rejected": "banana",
         "meta": {"chosen_logprob_sum": -7.0, "rejected_logprob_sum": -6.0}},
    ]


@pytest.mark.parametrize("reference", ["model", "behaviour"])
def test_dpo_increases_the_margin(tmp_path: Path, reference: str) -> None:
    model, tok = tiny_model()
    config = DPOConfig(
        out_dir=str(tmp_path), data_path="unused", reference=reference, batch_size=2, micro_batch_size=2,  # type: ignore[arg-type]
        total_steps=6, lr=3e-3, beta=0.1,
    )
    trainer = DPOTrainer(config, model, tok, pairs=_pairs())
    if reference == "behaviour":
        assert trainer.ref.tolist() == [[-8.0, -9.0], [-7.0, -6.0]]
    history = trainer.train()
    margins = [h["charts/margin"] for h in history]
    assert margins[-1] > margins[0] + 0.5, margins
    assert history[-1]["losses/dpo"] < history[0]["losses/dpo"]


def test_cli_train_dpo(tmp_path: Path) -> None:
    from plyground.cli import main

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in _pairs()))
    config = tmp_path / "dpo.yaml"
    config.write_text(f"data_path: {pairs}\nbatch_size: 2\nmicro_batch_size: 2\ntotal_steps: 1\n")
    out = tmp_path / "run"
    argv = ["train", "dpo", "--model", "tiny", "--config", str(config), "--out", str(out), "--set", "lr=1e-4", "--json"]
    assert main(argv) == 0
    assert (out / "metrics.jsonl").exists() and (out / "checkpoints" / "latest").exists()
    assert main([*argv[:-1], "--set", "total_steps=2", "--resume"]) == 0
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert main(["train", "dpo", "--config", str(config), "--set", "bta=0.2"]) == 2  # unknown field: usage error


def test_grpo_resume_restores_the_rollout_buffer_exactly(tmp_path: Path) -> None:
    import torch

    def make(out: Path) -> GRPOTrainer:
        model, tok = tiny_model()
        config = GRPOConfig(
            out_dir=str(out), env_id="GuessNumber-v0", env_kwargs={"n": 4, "max_turns": 1}, tasks_per_step=2,
            group_size=2, max_tokens=4, total_steps=2, micro_batch_size=4, lr=1e-3, num_iterations=2,
            reproducible_rollouts=True,
        )
        # Rewards that vary within each group, so the update is not zero.
        return GRPOTrainer(config, model, tok, reward_fn=lambda t: float(t.metadata["sample"]))

    straight = make(tmp_path / "a")
    straight.train()
    first = make(tmp_path / "b")
    first.train(max_steps=1)  # step 2 would reuse this rollout batch: the buffer must survive
    del first
    resumed = make(tmp_path / "b")
    assert resumed.resume() and resumed.buffer is not None and resumed.buffer_uses == 1
    resumed.train()
    for p1, p2 in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p1, p2)


def test_turn_end_rewards_by_hand() -> None:
    from plyground.trainers.ppo import turn_end_rewards
    from plyground.types import Turn

    def traj(rewards: list[float]) -> Trajectory:
        return Trajectory(env_id="x", turns=[Turn(observation="o", action="a", reward=r) for r in rewards])

    mask = torch.tensor([[0, 1, 1, 0, 1, 0, 1, 1], [0, 1, 1, 0, 1, 1, 0, 0]], dtype=torch.float32)
    out = turn_end_rewards(mask, [traj([-1.0, -1.0, 0.5]), traj([-1.0, -1.0, -1.0])])
    assert out.tolist() == [
        [0, 0, -1, 0, -1, 0, 0, 0.5],  # each turn's reward on its reply's last token
        [0, 0, -1, 0, 0, -2, 0, 0],  # truncated to two replies: the lost turn's reward joins the last one
    ]


def test_turn_level_ppo_on_a_multi_turn_env(tmp_path: Path) -> None:
    model, tok = tiny_model()
    config = PPOConfig(
        out_dir=str(tmp_path), env_id="TwentyQuestions-v0", env_kwargs={"max_questions": 2}, tasks_per_step=2,
        max_tokens=6, total_steps=1, micro_batch_size=2, rewards="turn", whiten_advantages=False, lam=1.0,
    )
    trainer = PPOTrainer(config, model, tok)
    batch = trainer.build_batch(trainer.sample(0))
    # Returns at each reply's first token are the rewards still to come (gamma = lam = 1: GAE is
    # the Monte Carlo return minus V, plus V).
    from plyground.trainers.baselines import rewards_to_go, turn_spans

    for b, traj in enumerate(trainer.last_trajectories):
        starts = [s for s, _ in turn_spans(batch["loss_mask"][b])]
        expected = rewards_to_go([t.reward for t in traj.turns], 1.0)[: len(starts)]
        assert batch["returns"][b, starts].tolist() == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="episode or turn"):
        PPOConfig(rewards="step")  # type: ignore[arg-type]
