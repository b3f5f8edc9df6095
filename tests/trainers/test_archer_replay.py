"""ArCHer's replay actor (``actor_states="replay"``): actions re-sampled at buffer states.

Checks that the actor step trains on buffer states' prompts (not the latest rollout), that it
raises the log-probability of an action the critic scores high and lowers one it scores low, that
no env step is taken for it, and that the V target can use the policy's actions.
"""

from __future__ import annotations

import pytest
import torch

from plyground.trainers.core.critic import Transition, trajectory_transitions
from plyground.trainers.core.logprobs import token_logprobs
from plyground.types import Completion, Trajectory, Turn


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    from plyground.inference.models import tiny_model

    return tiny_model(seed=0)


def _config(tmp_path, **kw):  # type: ignore[no-untyped-def]
    from plyground.trainers.archer import ArCHerConfig

    base = dict(
        out_dir=str(tmp_path), env_id="Maze-v0", env_kwargs={"maze": "umaze", "max_steps": 2}, tasks_per_step=2,
        max_tokens=3, warmup_iters=0, critic_steps=1, critic_batch=4, actor_states="replay", actor_batch=6,
        lr=1e-3, mixed_precision="no", micro_batch_size=8, live_table=False,
        critic={"dim": 8, "head_hidden": 8, "max_length": 32, "encoder": "bag"},
    )
    base.update(kw)
    return ArCHerConfig(**base)


def _buffer_states(tok, n: int) -> list[Transition]:  # type: ignore[no-untyped-def]
    out = []
    for i in range(n):
        prompt = tok(f"state number {i}: where next?", add_special_tokens=False)["input_ids"]
        out.append(Transition(f"obs{i}", "up", -1.0, f"obs{i + 1}", False, -1.0, list(prompt)))
    return out


def test_replay_config_is_checked(tmp_path) -> None:
    with pytest.raises(ValueError, match="actor_states"):
        _config(tmp_path, actor_states="latest")
    with pytest.raises(ValueError, match="v_target_actions"):
        _config(tmp_path, v_target_actions="greedy")
    with pytest.raises(ValueError, match="actor_batch"):
        _config(tmp_path, actor_batch=0)


def test_transitions_keep_the_policy_prompt() -> None:
    comp = Completion(text="up", token_ids=[5, 6], prompt_token_ids=[1, 2, 3])
    traj = Trajectory(env_id="x", turns=[Turn("o0", "up", -1.0, comp), Turn("o1", "left", 0.0, None)])
    tr = trajectory_transitions(traj, 0.9, "turn")
    assert tr[0].prompt_ids == [1, 2, 3] and tr[1].prompt_ids is None
    assert tr[0].obs == "turn 1: o0"


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_replay_actor_step_moves_logprob_with_the_advantage(tiny, tmp_path, monkeypatch, sign: float) -> None:
    import plyground.trainers.archer as archer
    from plyground.trainers.core.loop import split_micro

    model, tok = tiny
    trainer = archer.ArCHerTrainer(_config(tmp_path), model=_copy(model), tokenizer=tok)
    states = _buffer_states(tok, 3)
    trainer.replay.extend(states)
    seen_obs: list[list[str]] = []

    def fake_advantages(critic, tokenizer, obs, actions, device=None):  # type: ignore[no-untyped-def]
        seen_obs.append(list(obs))
        return torch.full((len(obs),), sign)

    monkeypatch.setattr(archer, "advantages", fake_advantages)
    batch = trainer.replay_actor_batch()
    assert seen_obs and set(seen_obs[0]) <= {s.obs for s in states} and len(seen_obs[0]) == 6
    # Every row is a buffer prompt (loss mask 0) followed by the fresh action (loss mask 1).
    prompts = {tuple(s.prompt_ids or []) for s in states}
    for row in range(6):
        n = int(batch["attention_mask"][row].sum())
        mask = batch["loss_mask"][row, :n]
        start = int((mask == 0).sum())
        assert bool((mask[start:] == 1).all()) and tuple(batch["input_ids"][row, :start].tolist()) in prompts
    # The sampling logprobs are the current policy's: ratio 1 before the step.
    with torch.no_grad():
        before = token_logprobs(trainer.model, batch["input_ids"], batch["attention_mask"], batch["loss_mask"])["logprobs"]
    m = batch["loss_mask"]
    assert torch.allclose(before * m, batch["old_logprobs"] * m, atol=1e-4)
    monkeypatch.setattr(trainer, "make_step_batch", lambda: split_micro(batch, 8))
    trainer.train_step()
    with torch.no_grad():
        after = token_logprobs(trainer.model, batch["input_ids"], batch["attention_mask"], m)["logprobs"]
    change = float(((after - before) * m).sum() / m.sum())
    assert change * sign > 1e-3, change


def test_replay_mode_takes_no_env_step_and_trains_on_buffer_states(tiny, tmp_path, monkeypatch) -> None:
    import plyground.trainers.archer as archer

    model, tok = tiny
    trainer = archer.ArCHerTrainer(_config(tmp_path, num_iterations=3, total_steps=3, v_target_actions="policy"),
                                   model=_copy(model), tokenizer=tok)
    rollouts = []
    original_sample = trainer.sample

    def counting_sample(index: int):  # type: ignore[no-untyped-def]
        rollouts.append(index)
        return original_sample(index)

    actor_batches = []
    original_batch = trainer.replay_actor_batch

    def recording_batch():  # type: ignore[no-untyped-def]
        out = original_batch()
        actor_batches.append(out)
        return out

    monkeypatch.setattr(trainer, "sample", counting_sample)
    monkeypatch.setattr(trainer, "replay_actor_batch", recording_batch)
    trainer.train()
    assert rollouts == [0]  # one rollout for three actor steps
    assert len(actor_batches) == 3 and all(b["input_ids"].shape[0] == 6 for b in actor_batches)
    assert all(t.prompt_ids for t in trainer.replay.items)
    # The V target drew actions from the policy at critic states (1 critic step: one generate call),
    # then three actor steps drew one each.
    assert trainer.policy_samples == 4
    state = trainer.trainer_state()
    assert state["policy_samples"] == 4 and "actor_rng" in state


def _copy(model):  # type: ignore[no-untyped-def]
    import copy

    return copy.deepcopy(model)


def test_warmup_leaves_the_actor_still_even_with_an_entropy_bonus(tiny, tmp_path) -> None:
    from plyground.trainers.archer import ArCHerTrainer

    model, tok = tiny
    # weight_decay 0: the only force on the actor during the warm-up would be the entropy bonus.
    kw = dict(entropy_coef=1.0, lr=1e-2, weight_decay=0.0, total_steps=1, num_iterations=1)
    still = ArCHerTrainer(_config(tmp_path / "w", warmup_iters=1, **kw), model=_copy(model), tokenizer=tok)
    before = [p.detach().clone() for p in still.model.parameters()]
    still.train()
    assert all(torch.equal(b, p.detach()) for b, p in zip(before, still.model.parameters(), strict=True))
    # The same step after the warm-up does move it (the guard is what kept it still).
    moved = ArCHerTrainer(_config(tmp_path / "m", warmup_iters=0, **kw), model=_copy(model), tokenizer=tok)
    moved.train()
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, moved.model.parameters(), strict=True))
