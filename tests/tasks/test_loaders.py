from __future__ import annotations

import json
from pathlib import Path

import pytest

from plyground.tasks import ValidationReport, gsm8k_gold, load_gsm8k, load_jsonl, load_math, validate_tasks
from plyground.types import Task, Verdict
from plyground.verifiers import NumericVerifier
from plyground.verifiers.math import MathVerifier

# Measured on the shared copies: every gold answer validates (GSM8K test 1,319/1,319, train
# 7,473/7,473; MATH-500 500/500, 106 of them through the symbolic parser). The thresholds leave
# room for a verifier change to lose a handful without hiding a regression.
GSM8K_MIN_RATE = 0.999
MATH500_MIN_RATE = 0.98


def _write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_gsm8k_gold() -> None:
    assert gsm8k_gold("2 + 3 = <<2+3=5>>5\n#### 5") == "5"
    assert gsm8k_gold("a\n#### 1,234") == "1234"
    assert gsm8k_gold("no marker") is None


def test_load_gsm8k_format(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "test.jsonl", [{"question": "1+1?", "answer": "1+1=2\n#### 2"}])
    (task,) = load_gsm8k(path)
    assert (task.id, task.prompt, task.answer) == ("gsm8k/test/0", "1+1?", "2")
    assert task.metadata["solution"] == "1+1=2\n#### 2"


def test_load_math_format(tmp_path: Path) -> None:
    records = [
        {"problem": "p", "solution": "so $\\boxed{\\frac{1}{2}}$", "answer": "\\frac12", "level": 3,
         "subject": "Algebra", "unique_id": "test/algebra/1.json"},
        {"problem": "q", "solution": "thus \\boxed{\\{1, 2\\}}.", "level": "Level 5", "type": "Algebra"},
    ]  # fmt: skip
    first, second = load_math(_write_jsonl(tmp_path / "m.jsonl", records))
    assert (first.id, first.answer, first.metadata["level"], first.metadata["subject"]) == (
        "test/algebra/1.json",
        "\\frac12",
        3,
        "Algebra",
    )
    # The original MATH files have no "answer": it is the last \boxed{} of the solution.
    assert (second.id, second.answer, second.metadata["type"]) == ("math/1", "\\{1, 2\\}", "Algebra")


def test_load_jsonl(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "mine.jsonl", [{"q": "x?", "a": 3, "k": "id7", "extra": 1}, {"q": "y?"}])
    first, second = load_jsonl(path, prompt_key="q", answer_key="a", id_key="k")
    assert (first.id, first.prompt, first.answer, first.metadata["extra"]) == ("id7", "x?", "3", 1)
    assert (second.id, second.answer) == ("mine/1", None)


def test_bad_lines_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": "#### 1"}\n{oops\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        load_gsm8k(path)
    path.write_text('{"answer": "#### 1"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing field 'question'"):
        load_gsm8k(path)


def test_validate_tasks_reports_failures() -> None:
    tasks = [
        Task(id="ok", prompt="q", answer="\\frac{1}{2}"),
        Task(id="none", prompt="q", answer=None),
        Task(id="braces", prompt="q", answer="\\frac{1}{2"),
    ]
    report = validate_tasks(tasks, MathVerifier())
    assert isinstance(report, ValidationReport)
    assert (report.total, report.passed, report.failed) == (3, 1, 2)
    assert report.rate == pytest.approx(1 / 3)
    assert [e["id"] for e in report.examples] == ["none", "braces"]
    assert report.reasons["no reference answer"] == 1
    assert "1/3 gold answers validate" in report.summary()


def test_validate_with_a_verifier_without_a_self_check() -> None:
    # Any Verifier works: the boxed gold answer is scored as a response.
    tasks = [Task(id="a", prompt="q", answer="12"), Task(id="b", prompt="q", answer="x+1")]
    report = validate_tasks(tasks, NumericVerifier())
    assert (report.passed, report.failed) == (1, 1)
    verdict = tasks[0].validate(NumericVerifier())
    assert isinstance(verdict, Verdict) and verdict.correct


# -- the real data sets ------------------------------------------------------------------------
def _check(tasks: list[Task], expected: int, min_rate: float) -> ValidationReport:
    assert len(tasks) == expected
    assert len({t.id for t in tasks}) == expected
    assert all(t.prompt and t.answer for t in tasks)
    report = validate_tasks(tasks)
    assert report.rate >= min_rate, report.summary()
    return report


def test_gsm8k_test_loads_and_validates(shared_data: Path) -> None:
    tasks = load_gsm8k(shared_data / "gsm8k" / "test.jsonl")
    report = _check(tasks, 1319, GSM8K_MIN_RATE)
    assert tasks[0].answer == "18"
    print(report.summary())


def test_gsm8k_train_loads_and_validates(shared_data: Path) -> None:
    # All 7,473 validate in under a second: numeric answers never leave the process.
    report = _check(load_gsm8k(shared_data / "gsm8k" / "train.jsonl"), 7473, GSM8K_MIN_RATE)
    print(report.summary())


def test_math500_loads_and_validates(shared_data: Path) -> None:
    tasks = load_math(shared_data / "math500" / "test.jsonl")
    report = _check(tasks, 500, MATH500_MIN_RATE)
    assert tasks[0].id == "test/precalculus/807.json"
    assert {"level", "subject", "solution"} <= set(tasks[0].metadata)
    print(report.summary())
