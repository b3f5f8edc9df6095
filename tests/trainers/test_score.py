"""SCoRe: Stage II credit of the first attempt (``turn1_credit``) and the editing start policy of
the alpha = 0 collapse experiment (``examples/multiturn/score_selfcorrect.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from plyground.trainers.score import SCoReConfig, SCoReTrainer, edit_ratio
from plyground.types import Message, Trajectory, Turn


def _episode(c1: bool, c2: bool) -> Trajectory:
    attempts = [{"attempt": 1, "correct": c1, "score": float(c1)}, {"attempt": 2, "correct": c2, "score": float(c2)}]
    turns = [Turn(observation="q", action="y1", reward=0.0, info={}),
             Turn(observation="p", action="y2", reward=float(c2), info={"attempts": attempts})]
    return Trajectory(env_id="x", turns=turns, total_reward=float(c2), success=c2, metadata={"episode": 0})


@pytest.fixture(scope="module")
def tiny():
    from plyground.inference.models import tiny_model

    return tiny_model(seed=0)


# i->c, c->c, c->i, i->i in one group.
GROUP = [(False, True), (True, True), (True, False), (False, False)]


@pytest.mark.parametrize(
    ("alpha", "credit", "turn1", "turn2"),
    [
        # r1 = 0, 1, 1, 0 -> centred; r2' = r2 = 1, 1, 0, 0 -> centred.
        (0.0, "r1", [-0.5, 0.5, 0.5, -0.5], [0.5, 0.5, -0.5, -0.5]),
        # return r1 + r2 = 1, 2, 1, 0 (mean 1): the copied right answer earns the most.
        (0.0, "return", [0.0, 1.0, 0.0, -1.0], [0.5, 0.5, -0.5, -0.5]),
        (0.0, "shaped_return", [0.0, 1.0, 0.0, -1.0], [0.5, 0.5, -0.5, -0.5]),
        # r2' = 11, 1, -10, 0 (mean 0.5); return r1 + r2' = 11, 2, -9, 0 (mean 1): i->c beats c->c.
        (10.0, "shaped_return", [10.0, 1.0, -10.0, -1.0], [10.5, 0.5, -10.5, -0.5]),
        (10.0, "return", [0.0, 1.0, 0.0, -1.0], [10.5, 0.5, -10.5, -0.5]),
        (10.0, "r1", [-0.5, 0.5, 0.5, -0.5], [10.5, 0.5, -10.5, -0.5]),
    ],
)
def test_stage2_turn_credit(tiny, tmp_path, alpha, credit, turn1, turn2) -> None:
    model, tok = tiny
    cfg = SCoReConfig(out_dir=str(tmp_path), total_steps=1, stage1_steps=0, alpha=alpha, tasks_per_step=1,
                      group_size=4, scale_rewards=False, turn1_credit=credit)
    trainer = SCoReTrainer(cfg, model=model, tokenizer=tok)
    adv, kl = trainer.per_turn_values([_episode(*e) for e in GROUP])
    assert [a[0] for a in adv] == pytest.approx(turn1)
    assert [a[1] for a in adv] == pytest.approx(turn2)
    assert kl == [[cfg.beta1, cfg.beta1]] * 4


def test_stage1_ignores_turn1_return(tiny, tmp_path) -> None:
    model, tok = tiny
    cfg = SCoReConfig(out_dir=str(tmp_path), total_steps=1, stage1_steps=1, alpha=10.0, tasks_per_step=1,
                      group_size=4, scale_rewards=False, turn1_credit="shaped_return")
    adv, kl = SCoReTrainer(cfg, model=model, tokenizer=tok).per_turn_values([_episode(*e) for e in GROUP])
    assert [a[0] for a in adv] == [0.0] * 4 and [a[1] for a in adv] == pytest.approx([0.5, 0.5, -0.5, -0.5])
    assert kl == [[cfg.beta2, 0.0]] * 4


def test_turn1_credit_is_checked(tmp_path) -> None:
    with pytest.raises(ValueError, match="turn1_credit"):
        SCoReConfig(out_dir=str(tmp_path), turn1_credit="total")  # type: ignore[arg-type]


def test_rewrite_start_policy_copies_or_rewrites() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "multiturn"))
    from score_selfcorrect import rewrite_chat_policy

    policy = rewrite_chat_policy(p_correct=0.5, p_copy=0.3, salt=1)
    copies = right = n = 0
    ratios = []
    for i in range(400):
        a, b = 1 + i % 5, 1 + (i // 5) % 5
        chat = [Message("system", "s"), Message("user", f"Question: What is {a} + {b}?")]
        y1 = policy(chat)
        assert y1 in (f"\\boxed{{{c}}}" for c in (a + b - 1, a + b, a + b + 1)) or y1.startswith(f"{a} + {b} = ")
        right += f"{{{a + b}}}" in y1
        y2 = policy([*chat, Message("assistant", y1), Message("user", "There might be an error ...")])
        n += 1
        if y2 == y1:
            copies += 1
        else:  # a rewrite switches form: the worked form has "=", the short one does not
            assert ("=" in y1) != ("=" in y2)
            ratios.append(edit_ratio(y1, y2))
    assert 0.2 < copies / n < 0.4 and 0.4 < right / n < 0.6
    assert min(ratios) > 0.35  # a rewrite is a large edit, unlike a changed digit (about 0.1)


def test_rewrite_start_policy_worse_rewrites() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "multiturn"))
    from score_selfcorrect import rewrite_chat_policy

    policy = rewrite_chat_policy(p_correct=0.5, p_copy=0.3, salt=2, p_rewrite_correct=0.2)
    first = rewrites = rewrites_right = 0
    for i in range(600):
        a, b = 1 + i % 5, 1 + (i // 5) % 5
        chat = [Message("system", "s"), Message("user", f"Question: What is {a} + {b}?")]
        y1 = policy(chat)
        first += f"{{{a + b}}}" in y1
        y2 = policy([*chat, Message("assistant", y1), Message("user", "There might be an error ...")])
        if y2 != y1:
            rewrites += 1
            rewrites_right += f"{{{a + b}}}" in y2
    assert 0.42 < first / 600 < 0.58
    assert 0.12 < rewrites_right / rewrites < 0.28
