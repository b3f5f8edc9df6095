"""The progress verifier: per-step J under a prover, MRT's forced mode and PAV's rollout mode."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plyground.errors import BackendError
from plyground.inference.scripted import ScriptedBackend
from plyground.types import Chat, Completion, SamplingParams, Task
from plyground.verifiers import Verifier
from plyground.verifiers.progress import FORCE_SUFFIX, ProgressVerifier

TASK = Task(id="t", prompt="What is 6 * 7 + 0?", answer="42")
# Three steps; only the second one holds the fact the prover needs.
RESPONSE = "Let me think about this.\n\nSix times seven is 42.\n\nSo the answer is \\boxed{42}."


def insightful_prover(seen: list[Chat]) -> ScriptedBackend:
    """Answers right exactly when the partial reply it continues contains the key fact."""

    def policy(chat: Chat) -> str:
        seen.append(chat)
        return "\\boxed{42}" if "is 42" in chat[-1].content else "\\boxed{13}"

    return ScriptedBackend(policy)


def test_progress_lands_on_the_step_that_holds_the_insight() -> None:
    seen: list[Chat] = []
    verifier = ProgressVerifier(insightful_prover(seen), k=2)
    assert isinstance(verifier, Verifier)
    result = verifier.steps(TASK, RESPONSE)
    assert len(result.steps) == 3 and "".join(result.steps) == RESPONSE
    assert result.values == [0.0, 0.0, 1.0, 1.0]
    assert result.progress == [0.0, 1.0, 0.0]
    # forced mode: every prefix ends in the "give the final answer now" suffix
    assert len(seen) == 4 * 2 and all(chat[-1].content.endswith(FORCE_SUFFIX) for chat in seen)
    verdict = verifier.verify(TASK, RESPONSE)
    assert verdict.correct and verdict.score == 1.0 and verdict.error is None
    assert "+1.00" in verdict.reason


def test_rollout_mode_lets_the_prover_continue_without_the_forcing_suffix() -> None:
    seen: list[Chat] = []
    verifier = ProgressVerifier(insightful_prover(seen), mode="rollout", k=1)
    assert verifier.steps(TASK, RESPONSE).progress == [0.0, 1.0, 0.0]
    first, second, _ = RESPONSE.split("\n\n")
    prefixes = ["", first + "\n\n", first + "\n\n" + second + "\n\n", RESPONSE]
    assert [chat[-1].content for chat in seen] == prefixes


def test_a_wrong_answer_keeps_its_progress_but_is_not_correct() -> None:
    wrong = "Six times seven is 42.\n\nSo the answer is \\boxed{43}."
    verdict = ProgressVerifier(insightful_prover([]), k=1).verify(TASK, wrong)
    assert not verdict.correct and verdict.score == 1.0


def test_sampled_estimates_are_fractions_and_repeat_with_the_seed(tiny_backend: Any) -> None:
    verifier = ProgressVerifier(tiny_backend, k=4, max_tokens=4)
    first, again = verifier.steps(TASK, RESPONSE), verifier.steps(TASK, RESPONSE)
    assert len(first.values) == 4 and all(v in (0.0, 0.25, 0.5, 0.75, 1.0) for v in first.values)
    assert first.values == again.values


class SlowProver(ScriptedBackend):
    def __init__(self, delay_s: float) -> None:
        super().__init__(lambda chat: "\\boxed{42}")
        self.delay_s = delay_s

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[list[Completion]]:
        time.sleep(self.delay_s)
        return super().generate(chats, params)


def test_a_slow_prover_is_reported_as_a_timeout_and_the_verifier_carries_on() -> None:
    verifier = ProgressVerifier(SlowProver(1.5), k=1, timeout_s=0.2)
    start = time.perf_counter()
    verdict = verifier.verify(TASK, RESPONSE)
    assert time.perf_counter() - start < 1.0
    assert verdict.error == "timed out after 0.2 s" and verdict.correct  # its own answer is still checked
    fast = ProgressVerifier(SlowProver(0.0), k=1, timeout_s=5)
    assert fast.verify(TASK, RESPONSE).error is None


def test_a_failing_prover_or_a_task_without_answer_is_an_error_not_an_exception() -> None:
    def down(chat: Chat) -> str:
        raise BackendError("server at http://127.0.0.1:9 is down")

    verdict = ProgressVerifier(ScriptedBackend(down), k=1).verify(TASK, RESPONSE)
    assert verdict.score == 0.0 and verdict.error is not None and "is down" in verdict.error
    no_answer = ProgressVerifier(insightful_prover([]), k=1).verify(Task(id="x", prompt="?"), RESPONSE)
    assert no_answer.error == "task has no reference answer" and not no_answer.correct
    long = ProgressVerifier(insightful_prover([]), k=1, max_chars=10).verify(TASK, RESPONSE)
    assert long.error is not None and "longer than 10" in long.error


def test_a_custom_check_and_bad_settings() -> None:
    verifier = ProgressVerifier(
        ScriptedBackend(lambda chat: "yes" if "42" in chat[-1].content else "no"),
        k=1,
        correct=lambda task, text: text.strip() == "yes",
    )
    assert verifier.steps(Task(id="y", prompt="?"), RESPONSE).values == [0.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="mode"):
        ProgressVerifier(ScriptedBackend(lambda chat: ""), mode="mcts")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k and max_steps"):
        ProgressVerifier(ScriptedBackend(lambda chat: ""), k=0)


def test_threads_share_one_verifier() -> None:
    verifier = ProgressVerifier(insightful_prover([]), k=2)
    results: list[list[float]] = []
    threads = [threading.Thread(target=lambda: results.append(verifier.steps(TASK, RESPONSE).values)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [[0.0, 0.0, 1.0, 1.0]] * 4


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_response_gives_a_verdict(response: str) -> None:
    verdict = ProgressVerifier(insightful_prover([]), k=1).verify(TASK, response)
    assert 0.0 <= verdict.score <= 1.0 and verdict.error is None


def test_the_response_itself_is_judged_as_a_whole_answer() -> None:
    """Not by the forced-answer checker's first-word fallback: "Paris is not it" is no answer Paris."""
    task = Task(id="c", prompt="Capital of France?", answer="Paris")
    verifier = ProgressVerifier(ScriptedBackend(lambda chat: "\\boxed{Lyon}"), k=1)
    assert not verifier.verify(task, "Paris is not it; the capital is Lyon.").correct
    assert verifier.verify(task, "It is \\boxed{Paris}.").correct


def test_timed_out_estimates_do_not_pile_up_on_a_stuck_prover() -> None:
    verifier = ProgressVerifier(SlowProver(1.0), k=1, timeout_s=0.1, max_late=1)
    assert verifier.steps(TASK, RESPONSE).error == "timed out after 0.1 s"
    start = time.perf_counter()
    refused = verifier.steps(TASK, RESPONSE)
    assert time.perf_counter() - start < 0.05  # no new thread on the stuck prover
    assert refused.error == "the prover is still busy with earlier estimates that timed out"
    time.sleep(1.2)  # the late estimate ends: estimates are taken again
    assert verifier.steps(TASK, RESPONSE).error == "timed out after 0.1 s"
