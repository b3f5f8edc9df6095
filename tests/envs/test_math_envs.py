from __future__ import annotations

import json
from pathlib import Path

import gymnasium
import numpy as np
import pytest

import plyground
from plyground.envs import check_env
from plyground.envs.checker import MALFORMED_ACTIONS
from plyground.envs.math_envs import (
    SCORE_CORRECTION_PROMPT,
    TEMPLATES,
    MathHintDialogueEnv,
    MathHintsEnv,
    MathSelfCorrectEnv,
    word_problem,
    word_problems,
)
from plyground.tasks.hints import SCAF_SYSTEM_PROMPT, HintSet, attach_hints, leaks_answer
from plyground.types import Task
from plyground.verifiers.math import MathVerifier

TASK = attach_hints(
    Task("t/1", "Ann has 3 bags of 4 apples and eats 2. How many are left?", "10"),
    HintSet(knowledge=["K1", "K2"], planning=["P1", "P2"], solution=["S1: 3 * 4 = 12"]),
)
RIGHT, WRONG = "3 * 4 = 12, 12 - 2 = 10, so \\boxed{10}", "I think it is \\boxed{12}"
MATH_IDS = ("MathHints-v0", "MathSelfCorrect-v0", "MathHintDialogue-v0")


@pytest.mark.parametrize("env_id", MATH_IDS)
def test_registered_and_checked(env_id: str) -> None:
    env = plyground.make(env_id)
    check_env(env)
    assert env.instructions == SCAF_SYSTEM_PROMPT
    assert isinstance(gymnasium.make(f"plyground/{env_id}").unwrapped, type(env))


def test_word_problems_are_seeded_solvable_and_fully_hinted() -> None:
    assert [t.to_dict() for t in word_problems(6, seed=3)] == [t.to_dict() for t in word_problems(6, seed=3)]
    rng = np.random.default_rng(0)
    verifier = MathVerifier()
    for name in sorted(TEMPLATES):
        for _ in range(20):
            task = word_problem(rng, name)
            assert task.answer is not None and int(task.answer) >= 0, (name, task.prompt)
            assert task.metadata["solution"].endswith(f"#### {task.answer}")
            hints = HintSet.from_task(task)
            assert hints.knowledge and hints.planning and hints.solution
            assert verifier.verify(task, f"\\boxed{{{task.answer}}}").correct
            # No tier gives the final answer away (the solution tier stops before the last step).
            final_step = task.metadata["solution"].splitlines()[-2]
            assert final_step not in hints.to_list()
            assert not any(leaks_answer(p, task.answer) for p in hints.knowledge + hints.planning)
    with pytest.raises(ValueError, match="unknown template"):
        word_problem(rng, "nope")


def test_hints_env_rewards_and_hint_levels() -> None:
    env = MathHintsEnv(tasks=[TASK])
    obs, info = env.reset(seed=0)
    assert obs == f"Question: {TASK.prompt}" and info["hint"] is None and info["num_hint_levels"] == 5
    assert env.step(RIGHT)[1:4] == (1.0, True, False)
    obs, info = env.reset(seed=0, options={"hint_level": 2})
    assert obs.endswith("\nKnowledge Hints: K1\nK2") and info["hint_tier"] == "knowledge"
    obs, info = env.reset(options={"task": TASK, "hint_level": 4})
    assert obs.endswith("\nPlanning Hints: P1\nP2")
    obs, _ = env.reset(options={"task": TASK, "hint_level": 99})
    assert obs.endswith("\nSolution Hints: S1: 3 * 4 = 12")
    obs, info = env.reset(options={"task": TASK.to_dict(), "hint_tier": "solution", "hint_level": 1})
    assert obs.endswith("Solution Hints: S1: 3 * 4 = 12") and info["hint_tier"] == "solution"
    _, reward, terminated, _, info = env.step(WRONG)
    assert (reward, terminated, info["success"], info["answer"]) == (0.0, True, False, "12")
    with pytest.raises(ValueError, match="hint_level"):
        env.reset(options={"hint_level": -1})


def test_hints_env_default_level_and_solution_hints_from_a_gsm8k_file(tmp_path: Path) -> None:
    path = tmp_path / "gsm.jsonl"
    record = {"question": "Tom has 5 pens and buys 7 more. He gives 2 away. How many now?",
              "answer": "5 + 7 = <<5+7=12>>12\n12 - 2 = <<12-2=10>>10\n#### 10"}  # fmt: skip
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    env = MathHintsEnv(tasks_path=path, hint_level=1)
    obs, info = env.reset(seed=0)
    assert obs.endswith("\nSolution Hints: 5 + 7 = 12") and info["hint_level"] == 1
    assert env.step("\\boxed{10}")[1] == 1.0
    with pytest.raises(ValueError, match="not both"):
        MathHintsEnv(tasks=[TASK], tasks_path=path)


@pytest.mark.parametrize(
    ("first", "second", "transition", "reward"),
    [(WRONG, RIGHT, "i->c", 1.0), (RIGHT, WRONG, "c->i", 0.0), (RIGHT, RIGHT, "c->c", 1.0), (WRONG, "no idea", "i->i", 0.0)],
)
def test_self_correct_protocol(first: str, second: str, transition: str, reward: float) -> None:
    env = MathSelfCorrectEnv(tasks=[TASK])
    obs, _ = env.reset(seed=0)
    assert obs == f"Question: {TASK.prompt}"
    obs, r1, terminated, truncated, info = env.step(first)
    assert obs.startswith(SCORE_CORRECTION_PROMPT) and obs.endswith("\\boxed{}.")
    assert (r1, terminated, truncated, info["attempt"]) == (0.0, False, False, 1)
    assert info["first_correct"] is (first == RIGHT)
    _, r2, terminated, truncated, info = env.step(second)
    assert (r2, terminated, truncated) == (reward, True, False)
    assert info["transition"] == transition
    assert [a["correct"] for a in info["attempts"]] == [first == RIGHT, second == RIGHT]
    assert info["first_correct"] is (first == RIGHT) and info["second_correct"] is (second == RIGHT)
    assert 0.0 <= info["similarity"] <= 1.0


def test_self_correct_shaping_bonus() -> None:
    env = MathSelfCorrectEnv(tasks=[TASK], shaping_alpha=10.0)
    assert env.reward_range == (-10.0, 11.0)
    env.reset(seed=0)
    env.step(WRONG)
    assert env.step(RIGHT)[1] == 11.0
    env.reset(seed=0)
    env.step(RIGHT)
    assert env.step(WRONG)[1] == -10.0
    env.reset(seed=0)
    env.step(RIGHT)
    _, reward, *_, info = env.step(RIGHT)
    assert reward == 1.0 and info["similarity"] == 1.0


def test_dialogue_gives_the_next_hint_after_each_wrong_answer() -> None:
    env = MathHintDialogueEnv(tasks=[TASK], max_turns=7)
    obs, info = env.reset(seed=0)
    assert obs == f"Question: {TASK.prompt}" and info["hints_used"] == 0
    expected = ["Knowledge Hints: K1", "Knowledge Hints: K1\nK2", "Planning Hints: P1", "Planning Hints: P1\nP2",
                "Solution Hints: S1: 3 * 4 = 12"]  # fmt: skip
    for used, hint in enumerate(expected, start=1):
        obs, reward, terminated, truncated, info = env.step(WRONG)
        assert obs.startswith("Incorrect. " + hint + "\nTry again.")
        assert (reward, terminated, truncated, info["hints_used"]) == (0.0, False, False, used)
    obs, *_ = env.step(WRONG)
    assert obs.startswith("Incorrect. No more hints.")
    obs, reward, terminated, truncated, info = env.step(RIGHT)
    assert (obs, reward, terminated, truncated, info["success"], info["hints_used"]) == ("Correct.", 1.0, True, False, True, 5)


def test_dialogue_truncates_after_k_answers_and_can_start_with_a_hint() -> None:
    env = MathHintDialogueEnv(tasks=[TASK], max_turns=2)
    obs, info = env.reset(seed=0, options={"hint_level": 3})
    assert obs.endswith("Planning Hints: P1") and info["hints_used"] == 3
    obs, *_ = env.step(WRONG)
    assert "Planning Hints: P1\nP2" in obs
    _, _, terminated, truncated, _ = env.step(WRONG)
    assert (terminated, truncated) == (False, True)
    env.reset(seed=0)
    assert env.step(RIGHT)[1:3] == (1.0, True)


def test_a_task_without_hints_or_answer_never_crashes() -> None:
    bare = Task("bare", "What is 2 + 2?", "4")
    env = MathHintDialogueEnv(tasks=[bare], max_turns=3)
    env.reset(seed=0, options={"hint_level": 2})
    assert env.step(WRONG)[0].startswith("Incorrect. No more hints.")
    no_answer = MathHintsEnv(tasks=[Task("x", "Prove it.")])
    no_answer.reset(seed=0)
    _, reward, terminated, _, info = no_answer.step("\\boxed{1}")
    assert (reward, terminated, info["success"]) == (0.0, True, False)


@pytest.mark.parametrize("env_id", MATH_IDS)
def test_garbage_actions_never_crash(env_id: str) -> None:
    garbage = [*MALFORMED_ACTIONS, "\\boxed{", "\\boxed{}" * 50, "\\boxed{\\frac{1}{0}}", "}}}{{{", "$$$$", None, 42]
    for action in garbage:
        env = plyground.make(env_id)
        env.reset(seed=1)
        while not env.done:
            _, reward, _, _, info = env.step(action)  # type: ignore[arg-type]
            assert isinstance(reward, float) and info["success"] is False
