from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plyground.envs.arithmetic import ANSWER_FORMAT, ArithmeticEnv, BinOp, random_expression
from plyground.types import Task, Verdict


def expression_of(observation: str) -> str:
    match = re.fullmatch(r"What is (.*)\?\n\n" + re.escape(ANSWER_FORMAT), observation)
    assert match, observation
    return match.group(1)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), digits=st.integers(1, 4), low=st.integers(1, 4), extra=st.integers(0, 3))
def test_gold_answer_matches_python_on_the_rendered_text(seed: int, digits: int, low: int, extra: int) -> None:
    """Rendering keeps the tree's meaning (parentheses where needed) and the value is exact."""
    env = ArithmeticEnv(digits=digits, num_operands=(low, low + extra))
    obs, info = env.reset(seed=seed)
    text = expression_of(obs)
    assert re.fullmatch(r"[\d +\-*()]+", text)
    assert info["task"]["answer"] == str(eval(text))  # the test's oracle; the env never evals
    operands = [int(t) for t in re.findall(r"\d+", text)]
    assert low <= len(operands) <= low + extra
    assert all(0 <= x < 10**digits for x in operands)


def test_problems_vary_and_parentheses_appear_sometimes() -> None:
    env = ArithmeticEnv()
    texts = [expression_of(env.reset(seed=seed)[0]) for seed in range(100)]
    assert len(set(texts)) > 90
    assert 5 < sum("(" in t for t in texts) < 95
    assert {op for t in texts for op in "+-*" if f" {op} " in t} == {"+", "-", "*"}


def test_same_seed_same_problem() -> None:
    env = ArithmeticEnv()
    assert env.reset(seed=3) == env.reset(seed=3)
    assert env.reset(seed=3)[0] != env.reset(seed=4)[0]


def test_rendering_uses_only_the_parentheses_precedence_needs() -> None:
    tree = BinOp("-", BinOp("*", BinOp("+", 1, 2), 3), BinOp("-", 4, BinOp("*", 5, 6)))
    assert tree.render() == "(1 + 2) * 3 - (4 - 5 * 6)"
    assert tree.value() == (1 + 2) * 3 - (4 - 5 * 6)
    assert BinOp("+", 1, BinOp("+", 2, 3)).render() == "1 + 2 + 3"
    assert BinOp("*", 2, BinOp("*", 3, 4)).render() == "2 * 3 * 4"
    assert random_expression(np.random.default_rng(0), 1, 2) in range(100)


@pytest.mark.parametrize(
    ("response", "reward", "valid"),
    [
        ("Working... so \\boxed{ANSWER}.", 1.0, True),
        ("The answer is ANSWER.", 1.0, True),
        ("\\boxed{12345678}", 0.0, True),
        ("I don't know.", 0.0, False),
        ("", 0.0, False),
    ],
)
def test_step_scores_with_the_verifier(response: str, reward: float, valid: bool) -> None:
    env = ArithmeticEnv()
    _, info = env.reset(seed=0)
    answer = info["task"]["answer"]
    obs, got_reward, terminated, truncated, step_info = env.step(response.replace("ANSWER", answer))
    assert (got_reward, terminated, truncated) == (reward, True, False)
    assert step_info["success"] is (reward == 1.0) and step_info["valid_action"] is valid
    verdict = Verdict.from_dict(step_info["verdict"])
    assert verdict.correct is (reward == 1.0) and verdict.error is None and "elapsed_s" not in step_info["verdict"]
    assert obs == "Correct." if reward else obs == f"Incorrect ({verdict.reason})."


def test_tasks_are_drawn_from_the_given_list_and_options_override() -> None:
    tasks = [Task("a", "What is 6 times 7?", "42"), Task("b", "Half of one, as a fraction?", "1/2")]
    env = ArithmeticEnv(tasks=tasks)
    seen = {env.reset(seed=s)[1]["task"]["id"] for s in range(20)}
    assert seen == {"a", "b"}
    obs, info = env.reset(seed=0, options={"task": tasks[1]})
    assert obs == f"Half of one, as a fraction?\n\n{ANSWER_FORMAT}" and info["task"] == tasks[1].to_dict()
    assert env.step("It is \\boxed{\\frac{1}{2}}")[1] == 1.0
    env.reset(options={"task": tasks[0].to_dict()})
    assert env.step("42")[1] == 1.0


def test_a_custom_verifier_sets_the_reward() -> None:
    class HalfCredit:
        def verify(self, task: Task, response: str) -> Verdict:
            return Verdict(0.5, False, "half", None, 0.0)

    env = ArithmeticEnv(verifier=HalfCredit())
    env.reset(seed=0)
    assert env.step("anything")[1:4] == (0.5, True, False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"digits": 0}, "digits must be >= 1, got 0"),
        ({"num_operands": 0}, r"num_operands must be >= 1 \(low <= high\), got 0"),
        ({"num_operands": (3, 2)}, r"num_operands must be >= 1 \(low <= high\), got \(3, 2\)"),
        ({"tasks": []}, "tasks is empty; pass None to generate problems"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        ArithmeticEnv(**kwargs)
