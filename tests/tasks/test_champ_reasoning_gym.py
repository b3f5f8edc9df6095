"""Loaders over PyPI data packages (``champ-dataset``, ``reasoning-gym``) and ``datasets``; each
test skips with the install command when its package is missing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from plyground.tasks.hints import HintSet, leaks_answer
from plyground.tasks.loaders import (
    champ_answer,
    iter_reasoning_gym,
    load_champ,
    load_local_dataset,
    load_problems,
    reasoning_gym_tasks,
    validate_tasks,
)
from plyground.types import Task

needs_champ = pytest.mark.skipif(
    importlib.util.find_spec("champ_dataset") is None, reason="pip install champ-dataset"
)
needs_rg = pytest.mark.skipif(importlib.util.find_spec("reasoning_gym") is None, reason="pip install reasoning-gym")


@pytest.mark.parametrize(
    ("raw", "answer"),
    [
        ("239", "239"),
        ("C(10, 5), or equivalently 252", "252"),
        ("5/14, or approximately 35.7%", "5/14"),
        ("100 (i.e., all values)", "100"),
        ("0 (none of the values)", "0"),
        ("-3 is the only possible value", "-3"),
        ("The limit exists and is equal to 2/3", "2/3"),
        ("98 values", "98"),
        ("2^(n-1)", "2^{n-1}"),
        ("sqrt(3)/3, or equivalently 1/sqrt(3)", "1/\\sqrt{3}"),
        ("C(n+1, 2m+1)", "\\binom{n+1}{2m+1}"),
        ("No integer solutions", "No integer solutions"),
    ],
)
def test_champ_answer(raw: str, answer: str) -> None:
    assert champ_answer(raw) == answer


@pytest.fixture(scope="module")
def champ() -> list[Task]:
    if importlib.util.find_spec("champ_dataset") is None:
        pytest.skip("pip install champ-dataset")
    return load_champ()


@needs_champ
def test_load_champ(champ: list[Task]) -> None:
    assert len(champ) == 270
    first = next(t for t in champ if t.id == "champ/P_Combinatorics_1")
    assert first.answer == "239" and first.metadata["category"] == "Combinatorics"
    hints = HintSet.from_task(first)
    assert hints.knowledge[0].startswith("rule of sum: ")
    assert hints.planning[1] == "What are x_1, y_1, z_1?"
    assert hints.solution and first.hints == hints.to_list()
    assert sum(len(HintSet.from_task(t).planning) for t in champ) >= 400  # 456 human hints, a few leak
    for task in champ:
        tiers = HintSet.from_task(task)
        assert not any(leaks_answer(h, task.answer) for h in tiers.knowledge + tiers.planning), task.id
    assert {t.metadata["category"] for t in load_champ(categories=["Sequence"])} == {"Sequence"}


@needs_champ
def test_champ_gold_answers_validate(champ: list[Task]) -> None:
    report = validate_tasks([t for t in champ if not t.metadata["free_form"]])
    assert report.rate >= 0.95, report.summary()


@needs_rg
def test_reasoning_gym_tasks_are_seeded() -> None:
    tasks = reasoning_gym_tasks("gsm_symbolic", size=5, seed=7)
    again = reasoning_gym_tasks("gsm_symbolic", size=5, seed=7)
    assert [t.to_dict() for t in tasks] == [t.to_dict() for t in again]
    assert tasks[0].id == "reasoning_gym/gsm_symbolic/7/0"
    assert all(t.metadata["solution"] for t in tasks)
    assert HintSet.from_task(tasks[0]).solution  # solution hints from the generator's worked answer
    json.dumps([t.to_dict() for t in tasks])  # metadata is JSON-safe
    assert validate_tasks(tasks).rate == 1.0
    arithmetic = reasoning_gym_tasks("basic_arithmetic", size=10, seed=1)
    assert validate_tasks(arithmetic).rate == 1.0
    assert reasoning_gym_tasks("basic_arithmetic", size=3, seed=2)[0].prompt != arithmetic[0].prompt


@needs_rg
def test_iter_reasoning_gym_is_unlimited() -> None:
    stream = iter_reasoning_gym("basic_arithmetic", seed=0, chunk=4)
    ids = [next(stream).id for _ in range(10)]
    assert len(set(ids)) == 10 and ids[4] == "reasoning_gym/basic_arithmetic/1/0"


def test_load_problems_tells_gsm8k_from_math(tmp_path: Path) -> None:
    gsm = tmp_path / "g.jsonl"
    gsm.write_text(json.dumps({"question": "q", "answer": "x\n#### 4"}) + "\n")
    math = tmp_path / "m.jsonl"
    math.write_text(json.dumps({"problem": "p", "solution": "so \\boxed{2}"}) + "\n")
    assert load_problems(gsm)[0].answer == "4"
    assert load_problems(math)[0].answer == "2"
    other = tmp_path / "o.jsonl"
    other.write_text(json.dumps({"text": "t"}) + "\n")
    with pytest.raises(ValueError, match="neither"):
        load_problems(other)


def test_load_local_dataset(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "answer": "2", "level": 1}) + "\n")
    with pytest.raises(FileNotFoundError):
        load_local_dataset(tmp_path / "missing.jsonl")
    if importlib.util.find_spec("datasets") is None:
        with pytest.raises(ImportError, match="pip install datasets"):
            load_local_dataset(path)
        return
    (task,) = load_local_dataset(path)
    assert (task.prompt, task.answer, task.metadata["level"]) == ("1+1?", "2", 1)
