from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plyground.inference.scripted import ScriptedBackend
from plyground.types import Chat, Task
from plyground.verifiers import Verifier
from plyground.verifiers.judge import JudgeVerifier, default_rubric, parse_judge_score

TASK = Task("champ/P_1", "How many integer solutions does x^2 = -1 have?", "No integer solutions")


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("Score: 7/10", 0.7),
        ("score 8 out of 10", 0.8),
        ("**8**", 0.8),
        ("The final score is **9/10**", 0.9),
        ("Rating: 4", 0.4),
        ("Rating: 0.8", 0.8),
        ("Score: 85%", 0.85),
        ("verdict: correct", 1.0),
        ("Verdict: INCORRECT - the student found 2 solutions", 0.0),
        ('{"score": 9, "verdict": "correct", "reason": "right"}', 0.9),
        ('```json\n{"score": "6/10"}\n```', 0.6),
        ('The grade: {"rating": 3, "max_score": 5}', 0.6),
        ('{"correct": false}', 0.0),
        ('{"verdict": "Correct"}', 1.0),
        ("I'd give it 4 out of 5.", 0.8),
        ("85%", 0.85),
        ("INCORRECT", 0.0),
        ("The answer is correct.", 1.0),
        ("7", 0.7),
        ("Score: 12/10", 1.0),  # clipped
        ("Score: -3", 0.0),  # clipped
    ],
)
def test_parse_messy_judge_output(reply: str, score: float) -> None:
    parsed, _why = parse_judge_score(reply)
    assert parsed == pytest.approx(score)


@pytest.mark.parametrize("reply", ["", "   ", "I am not sure what to say", "{not json", "Score: /10"])
def test_unreadable_replies_give_none(reply: str) -> None:
    assert parse_judge_score(reply)[0] is None


def test_parse_never_raises_on_junk() -> None:
    for junk in ["{" * 5000, "9" * 10_000 + "/0", "Score: 1e999/10", "\x00\udcff", '{"score": NaN}', "score: inf"]:
        score, _ = parse_judge_score(junk)
        assert score is None or 0.0 <= score <= 1.0


def test_the_rubric_is_packaged_with_placeholders() -> None:
    rubric = default_rubric()
    assert all(p in rubric for p in ("{question}", "{reference}", "{response}"))


def test_judge_scores_through_a_backend_and_fills_the_rubric() -> None:
    seen: list[Chat] = []

    def judge(chat: Chat) -> str:
        seen.append(chat)
        return "Reasoning... Score: 9/10" if "no solutions" in chat[-1].content else "**2**"

    verifier = JudgeVerifier(ScriptedBackend(judge))
    assert isinstance(verifier, Verifier)
    good = verifier.verify(TASK, "Squares are >= 0, so there are no solutions.")
    assert (good.score, good.correct, good.error) == (pytest.approx(0.9), True, None)
    bad = verifier.verify(TASK, "x = i")
    assert (bad.score, bad.correct) == (pytest.approx(0.2), False)
    prompt = seen[0][-1].content
    assert TASK.prompt in prompt and "No integer solutions" in prompt and "{response}" not in prompt


def test_custom_rubric_text_or_file(tmp_path: Path) -> None:
    backend = ScriptedBackend(lambda chat: "verdict: correct" if chat[-1].content.startswith("Grade") else "?")
    assert JudgeVerifier(backend, rubric="Grade {question} / {response}").verify(TASK, "a").correct
    path = tmp_path / "rubric.txt"
    path.write_text("Grade this: {response}", encoding="utf-8")
    assert JudgeVerifier(backend, rubric=path).verify(TASK, "a").correct
    with pytest.raises(ValueError, match="response"):
        JudgeVerifier(backend, rubric="no placeholder here")
    long_line = "Grade " + "x" * 5000 + " {response}"  # too long for a path: taken as text
    assert JudgeVerifier(backend, rubric=long_line).rubric == long_line


def test_cache_hit_costs_no_backend_call(tmp_path: Path) -> None:
    backend = ScriptedBackend(lambda chat: '{"score": 10, "reason": "matches the reference"}', model_name="judge-a")
    verifier = JudgeVerifier(backend, cache_dir=tmp_path)
    first = verifier.verify(TASK, "no solutions")
    second = JudgeVerifier(backend, cache_dir=tmp_path).verify(TASK, "no solutions")
    assert backend.calls == 1
    assert (second.score, second.correct, second.reason) == (first.score, first.correct, first.reason)
    assert "matches the reference" in first.reason
    verifier.verify(TASK, "another response")
    assert backend.calls == 2 and len(list(tmp_path.glob("*.json"))) == 2


def test_a_failing_backend_gives_verdict_error_not_an_exception(tmp_path: Path) -> None:
    def boom(chat: Chat) -> str:
        raise RuntimeError("server down")

    verdict = JudgeVerifier(ScriptedBackend(boom), cache_dir=tmp_path).verify(TASK, "x")
    assert (verdict.score, verdict.correct) == (0.0, False)
    assert verdict.error is not None and "server down" in verdict.error
    assert not list(tmp_path.glob("*.json"))  # errors are not cached


def test_an_unreadable_reply_is_an_error() -> None:
    verdict = JudgeVerifier(ScriptedBackend(lambda chat: "hmm, hard to say")).verify(TASK, "x")
    assert not verdict.correct and verdict.error is not None and "no score" in verdict.error


def test_a_slow_judge_times_out() -> None:
    release = threading.Event()

    def slow(chat: Chat) -> str:
        release.wait(5)
        return "Score: 10/10"

    start = time.perf_counter()
    verdict = JudgeVerifier(ScriptedBackend(slow), timeout_s=0.2).verify(TASK, "x")
    release.set()
    assert time.perf_counter() - start < 2
    assert not verdict.correct and verdict.error is not None and "timeout" in verdict.error


def test_non_string_response_and_task_without_answer() -> None:
    verifier = JudgeVerifier(ScriptedBackend(lambda chat: "Score: 6/10"))
    assert verifier.verify(Task("t", "Prove it."), None).score == pytest.approx(0.6)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400) | st.from_regex(r"(Score|\*\*|verdict:|\{\"score\": )[ -~]{0,40}", fullmatch=True))
def test_parse_fuzz_never_raises(reply: str) -> None:
    score, why = parse_judge_score(reply)
    assert isinstance(why, str)
    assert score is None or 0.0 <= score <= 1.0
