"""``LeanProofVerifier`` through stand-ins of the Lean REPL: the scripted one of ``tests/proving``
(whole proofs whose last tactic is ``simp``/``rfl``/``omega`` check; ``#print axioms`` answers
``propext``), a wrapper of it that hangs or exits on request, and the transcript replayer fed
transcripts written here (which also shows the exact requests the verifier sends)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plyground.proving.lean_repl import load_minif2f_lean
from plyground.types import Task, Verdict
from plyground.verifiers import LeanProofVerifier, Verifier
from plyground.verifiers.lean import lean_proof_text

PROVING = Path(__file__).resolve().parents[1] / "proving"
SCRIPTED = PROVING / "scripted_lean_repl.py"
REPLAYER = PROVING / "fake_lean_repl.py"
MINIF2F = Path(__file__).resolve().parents[3] / "shared" / "data" / "minif2f-lean4"

# The scripted REPL, plus two control words for time limits and crashes.
WRAPPER = """
import sys, time
sys.path.insert(0, {proving!r})
import scripted_lean_repl as s
_read = s.read_request
def read_request():
    text = _read()
    if text is not None and "__hang__" in text:
        time.sleep(3600)
    if text is not None and "__crash__" in text:
        sys.exit(3)
    return text
s.read_request = read_request
sys.exit(s.main())
"""

TASK = Task(id="t", prompt="theorem add_zero' (x : Nat) : x + 0 = x :=", metadata={"header": "import Mathlib"})


def make(command: list[str], **kwargs: Any) -> LeanProofVerifier:
    options: dict[str, Any] = {"timeout_s": 5.0, "header_timeout_s": 20.0, "memory_limit_mb": None}
    options.update(kwargs)
    return LeanProofVerifier(command=command, **options)


@pytest.fixture(scope="module")
def wrapper(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = tmp_path_factory.mktemp("lean") / "wrapped_scripted_repl.py"
    path.write_text(WRAPPER.format(proving=str(PROVING)), encoding="utf-8")
    return [sys.executable, "-S", str(path)]


@pytest.fixture(scope="module")
def scripted() -> Iterator[LeanProofVerifier]:
    with make([sys.executable, "-S", str(SCRIPTED)]) as verifier:
        yield verifier


def transcript(folder: Path, pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    """A recorded session (requests, answers) as the replayer reads it; its command line."""
    path = folder / "case.in"
    path.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n\n" for q, _ in pairs), encoding="utf-8")
    (folder / "case.expected.out").write_text(
        "".join(json.dumps(a, indent=1, ensure_ascii=False) + "\n\n" for _, a in pairs), encoding="utf-8"
    )
    return [sys.executable, "-S", str(REPLAYER), str(path)]


def axioms_answer(name: str, axioms: str, env: int) -> dict[str, Any]:
    return {"env": env, "messages": [{"severity": "info", "data": f"'{name}' depends on axioms: [{axioms}]"}]}


def test_a_correct_proof_is_correct_and_the_header_runs_once(scripted: LeanProofVerifier) -> None:
    assert isinstance(scripted, Verifier)
    verdict = scripted.verify(TASK, "Here it is:\n```lean\nby simp\n```")
    assert verdict.correct and verdict.score == 1.0 and verdict.error is None, verdict
    assert verdict.elapsed_s > 0
    repl = scripted._all[0].repl
    assert repl is not None
    before = repl.requests
    assert scripted.verify(TASK, ":= by\n  omega").correct
    assert repl.requests == before + 2  # the proof and #print axioms; the header's env is reused


def test_a_lean_error_is_wrong_with_its_text(scripted: LeanProofVerifier) -> None:
    verdict = scripted.verify(TASK, "by ring_nf")
    assert not verdict.correct and verdict.error is None
    assert "unsolved goals" in verdict.reason


@pytest.mark.parametrize("proof", ["by sorry", "by\n  simp\n  admit", "by native_decide", "by exact sorryAx _"])
def test_cheats_are_refused_before_lean(scripted: LeanProofVerifier, proof: str) -> None:
    verdict = scripted.verify(TASK, proof)
    assert not verdict.correct and verdict.error is None and "not allowed" in verdict.reason


@pytest.mark.parametrize(
    "proof",
    [
        "by simp\n\naxiom cheat : False",
        "by simp\ntheorem other : True := trivial",
        "by simp\n#eval 1",
        "by simp\nset_option debug.skipKernelTC true",
        "set_option debug.skipKernelTC true in\nby simp",
    ],
)
def test_commands_in_the_proof_are_refused(scripted: LeanProofVerifier, proof: str) -> None:
    verdict = scripted.verify(TASK, proof)
    assert not verdict.correct and verdict.error is None
    assert "command" in verdict.reason or "not allowed" in verdict.reason


def test_a_restated_theorem_must_keep_statement_and_name(scripted: LeanProofVerifier) -> None:
    same = scripted.verify(TASK, "```lean\nimport Mathlib\n\ntheorem add_zero' (x : Nat) :\n    x + 0 = x := by simp\n```")
    assert same.correct, same
    renamed = scripted.verify(TASK, "```lean\ntheorem my_add_zero (x : Nat) : x + 0 = x := by simp\n```")
    assert not renamed.correct and "statement and name" in renamed.reason
    assert lean_proof_text(TASK.prompt, "theorem add_zero' (x : Nat) : x + 0 = x := by rfl") == ("by rfl", None)


def test_sorry_reported_by_lean_and_extra_axioms_are_wrong(tmp_path: Path) -> None:
    """A sorry the text check cannot see (a tactic macro from the header) and ``sorryAx`` in
    ``#print axioms`` are both caught from the REPL's answers."""
    header = 'import Mathlib\nmacro "cheat_tac" : tactic => `(tactic| sorry)'
    statement = "theorem t : 2 + 2 = 4 :="
    sorry_warning = {"severity": "warning", "data": "declaration uses `sorry`"}
    command = transcript(tmp_path, [
        ({"cmd": header}, {"env": 0}),
        ({"cmd": f"{statement} by cheat_tac", "env": 0}, {"env": 1, "messages": [sorry_warning]}),
        ({"cmd": f"{statement} by hidden_cheat", "env": 0}, {"env": 2}),
        ({"cmd": "#print axioms t", "env": 2}, axioms_answer("t", "propext, sorryAx", 3)),
    ])
    task = Task(id="t", prompt=statement, metadata={"header": header})
    with make(command) as verifier:
        warned = verifier.verify(task, "by cheat_tac")
        assert not warned.correct and warned.error is None and "sorry" in warned.reason
        axioms = verifier.verify(task, "by hidden_cheat")
        assert not axioms.correct and axioms.error is None and "sorryAx" in axioms.reason


def test_an_over_long_proof_is_wrong_without_lean() -> None:
    verifier = make(["no-such-lean-repl-xyz"], max_chars=100)
    verdict = verifier.verify(TASK, "by " + "simp; " * 100)
    assert not verdict.correct and verdict.error is None and "longer than 100" in verdict.reason
    assert verifier._all[0].repl is None


def test_a_time_limit_is_an_error_and_the_next_check_works(wrapper: list[str]) -> None:
    with make(wrapper, timeout_s=1.0) as verifier:
        verdict = verifier.verify(TASK, "by __hang__")
        assert not verdict.correct and verdict.error is not None and "timed out after 1 s" in verdict.error
        assert verdict.elapsed_s < 10
        after = verifier.verify(TASK, "by simp")
        assert after.correct, after
        repl = verifier._all[0].repl
        assert repl is not None and repl.restarts == 1


def test_a_crash_is_retried_once_then_an_error(wrapper: list[str]) -> None:
    with make(wrapper) as verifier:
        verdict = verifier.verify(TASK, "by __crash__")
        assert not verdict.correct and verdict.error is not None and "exited" in verdict.error
        assert verifier.verify(TASK, "by rfl").correct
        repl = verifier._all[0].repl
        assert repl is not None and repl.restarts == 2


def test_a_missing_repl_is_an_error_naming_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    verdict = make(["no-such-lean-repl-xyz", "serve"]).verify(TASK, "by simp")
    assert not verdict.correct and verdict.error is not None and "elan" in verdict.error
    monkeypatch.delenv("PLYGROUND_LEAN_PROJECT", raising=False)
    default = LeanProofVerifier().verify(TASK, "by simp")
    assert default.error is not None and "PLYGROUND_LEAN_PROJECT" in default.error and "elan" in default.error


def test_a_failing_header_or_a_bad_task_is_an_error(scripted: LeanProofVerifier) -> None:
    header = scripted.verify(Task(id="h", prompt=TASK.prompt, metadata={"header": "open Nonexistent"}), "by simp")
    assert not header.correct and header.error is not None and "header failed" in header.error
    bad = scripted.verify(Task(id="b", prompt="def x := 1"), "by simp")
    assert not bad.correct and bad.error is not None


def test_concurrent_checks_share_a_pool(wrapper: list[str]) -> None:
    proofs = ["by simp", "by ring_nf", "by omega", "by linarith"] * 3
    with make(wrapper, processes=2) as verifier, ThreadPoolExecutor(4) as pool:
        verdicts = list(pool.map(lambda p: verifier.verify(TASK, p), proofs))
    assert [v.correct for v in verdicts] == [p.split()[-1] in ("simp", "omega") for p in proofs]
    assert all(v.error is None for v in verdicts)


_LEAN_WORDS = st.sampled_from(
    ["by", "simp", "rfl", "omega", ":=", "```lean", "```", "\n", "theorem", "sorry", "#eval", "intro x", "·", "\u0000", "\\n"]
)
_RESPONSES = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(exclude_categories=())),  # lone surrogates too
    st.lists(_LEAN_WORDS, max_size=12).map(" ".join),
    st.text().map(lambda s: f"```lean\nby {s}\n```"),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(response=_RESPONSES)
def test_arbitrary_responses_never_raise(scripted: LeanProofVerifier, response: str) -> None:
    verdict = scripted.verify(TASK, response)
    assert isinstance(verdict, Verdict) and verdict.error is None
    assert verdict.correct == (verdict.score == 1.0)


@pytest.mark.skipif(not MINIF2F.exists(), reason=f"miniF2F copy not found at {MINIF2F}")
def test_minif2f_statements_go_through_verbatim(tmp_path: Path) -> None:
    """A miniF2F task from the loader: the header as its own request, then statement + proof in
    its environment, then the axioms of the task's theorem; a restated theorem sends the same."""
    task = next(t for t in load_minif2f_lean(MINIF2F, split="test") if t.id == "test/mathd_algebra_107")
    name, header = task.metadata["name"], task.metadata["header"]
    standard = "propext, Classical.choice, Quot.sound"
    command = transcript(tmp_path, [
        ({"cmd": header}, {"env": 0}),
        ({"cmd": f"{task.prompt} by nlinarith [h₀]", "env": 0}, {"env": 1}),
        ({"cmd": f"#print axioms {name}", "env": 1}, axioms_answer(name, standard, 2)),
        ({"cmd": f"{task.prompt} by nlinarith [h₀]", "env": 0}, {"env": 3}),
        ({"cmd": f"#print axioms {name}", "env": 3}, axioms_answer(name, standard, 4)),
    ])
    with make(command) as verifier:
        verdict = verifier.verify(task, "```lean4\nby nlinarith [h₀]\n```")
        assert verdict.correct, verdict
        restated = verifier.verify(task, f"```lean4\n{header}\n\n{task.prompt} by nlinarith [h₀]\n```")
        assert restated.correct, restated
        # Anything else reaches the replayer as an unexpected request: a Lean error, not a pass.
        assert not verifier.verify(task, "by simp").correct


def test_a_failing_header_is_not_run_again(wrapper: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from plyground.proving.lean_repl import LeanRepl

    sent: list[str] = []
    real_command = LeanRepl.command

    def counting(self: LeanRepl, text: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(text)
        return real_command(self, text, *args, **kwargs)

    monkeypatch.setattr(LeanRepl, "command", counting)
    task = Task(id="h", prompt=TASK.prompt, metadata={"header": "open Nonexistent"})
    with make(wrapper) as verifier:
        first, second = verifier.verify(task, "by simp"), verifier.verify(task, "by omega")
    assert first.error == second.error and first.error is not None and "header failed" in first.error
    assert sent.count("open Nonexistent") == 1


def test_a_call_waits_for_a_free_process_at_most_max_wait_s(wrapper: list[str]) -> None:
    with make(wrapper, timeout_s=2.0, max_wait_s=0.2) as verifier, ThreadPoolExecutor(2) as pool:
        verifier.verify(TASK, "by simp")  # the header's environment is made: the next call goes straight in
        stuck = pool.submit(verifier.verify, TASK, "by __hang__")
        time.sleep(0.3)  # the hanging check holds the only process
        start = time.perf_counter()
        waited = verifier.verify(TASK, "by simp")
        assert time.perf_counter() - start < 1.0
        assert not waited.correct and waited.error == "waited 0.2 s for a free Lean REPL process"
        assert stuck.result().error == "timed out after 2 s"
        assert verifier.verify(TASK, "by simp").correct  # the process is free again
