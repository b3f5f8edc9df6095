"""``LeanRepl``'s protocol layer against the REPL's own recorded transcripts (leanprover-community/repl
``test/*.in`` / ``*.expected.out``), replayed through a stand-in process; against a real REPL
when ``lean`` is on PATH and ``PLYGROUND_LEAN_REPL_DIR`` names a built checkout of the REPL.
Plus time limits, crashes, the memory limit, and the miniF2F loader."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from plyground.errors import MissingComponentError
from plyground.proving.lean_repl import (
    LeanRepl,
    LeanReplCrashed,
    LeanReplTimeout,
    ReplResponse,
    iter_transcripts,
    load_minif2f_lean,
    parse_lean_statement,
    read_transcript,
    split_blocks,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
TRANSCRIPTS = SHARED / "lean-repl-tests"
MINIF2F = SHARED / "minif2f-lean4"
STAND_IN = Path(__file__).with_name("fake_lean_repl.py")

CASES = sorted(iter_transcripts(TRANSCRIPTS)) if TRANSCRIPTS.exists() else []
needs_transcripts = pytest.mark.skipif(not CASES, reason=f"REPL transcripts not found at {TRANSCRIPTS}")


def case_id(path: Path) -> str:
    return str(path.relative_to(TRANSCRIPTS)).removesuffix(".in")


def stand_in(*cases: Path, **kwargs: object) -> LeanRepl:
    command = [sys.executable, "-S", str(STAND_IN), *map(str, cases)]
    return LeanRepl(command=command, timeout_s=10.0, startup_timeout_s=10.0, memory_limit_mb=None, **kwargs)  # type: ignore[arg-type]


@needs_transcripts
def test_every_transcript_replays_through_one_stand_in() -> None:
    """All 71 recorded cases through one process: every answer parsed equals the recording."""
    assert len(CASES) >= 70
    with stand_in(*CASES) as repl:
        count = 0
        for case in CASES:
            requests, answers = read_transcript(case)
            assert requests and len(requests) == len(answers), case_id(case)
            for request, expected in zip(requests, answers, strict=True):
                got = repl.request(request)
                assert got == expected, f"{case_id(case)}: {request}"
                count += 1
        assert repl.restarts == 0 and repl.requests == count


@needs_transcripts
@pytest.mark.parametrize("case", ["proof_step", "invalid_tactic", "unknown_environment", "readme", "file"])
def test_a_transcript_alone_through_typed_calls(case: str) -> None:
    path = TRANSCRIPTS / f"{case}.in"
    requests, answers = read_transcript(path)
    with stand_in(path) as repl:
        for request, expected in zip(requests, answers, strict=True):
            if "tactic" in request:
                response = repl.tactic(request["tactic"], request["proofState"])
            elif "cmd" in request and set(request) <= {"cmd", "env", "allTactics"}:
                response = repl.command(request["cmd"], request.get("env"), bool(request.get("allTactics")))
            elif "path" in request and set(request) <= {"path", "allTactics"}:
                response = repl.file(request["path"], bool(request.get("allTactics")))
            else:
                response = repl.run(request)
            assert response.raw == expected


@needs_transcripts
def test_responses_are_read_into_fields() -> None:
    _, answers = read_transcript(TRANSCRIPTS / "proof_step.in")
    first = ReplResponse.parse(answers[0])
    assert first.env == 0 and first.sorries[0]["proofState"] == 0 and first.sorries[0]["goal"] == "⊢ Nat"
    assert first.ok  # a warning is not an error
    step = ReplResponse.parse(answers[1])
    assert step.proof_state == 1 and step.goals == ["⊢ Int"] and not step.proof_complete
    done = ReplResponse.parse(answers[-1])
    assert done.goals == [] and done.proof_complete
    bad = ReplResponse.parse(read_transcript(TRANSCRIPTS / "invalid_tactic.in")[1][1])
    assert not bad.ok and not bad.proof_complete and "my_fake_premise" in bad.errors[0]
    unknown = ReplResponse.parse(read_transcript(TRANSCRIPTS / "unknown_environment.in")[1][0])
    assert unknown.errors == ["Unknown environment."]


def test_requests_are_read_as_the_repl_reads_them() -> None:
    text = '{"cmd": "theorem foo : 1 = 1 := by\nsorry"}\n\n{"tactic": "rfl",\n "proofState": 0}\n'
    assert split_blocks(text, join_lines=True) == ['{"cmd": "theorem foo : 1 = 1 := bysorry"}', '{"tactic": "rfl", "proofState": 0}']


@needs_transcripts
def test_timeout_kills_and_restarts() -> None:
    path = TRANSCRIPTS / "proof_step.in"
    requests, answers = read_transcript(path)
    with stand_in(path) as repl:
        assert repl.request(requests[0]) == answers[0]
        with pytest.raises(LeanReplTimeout):
            repl.request({"cmd": "__sleep__"}, timeout_s=0.5)
        assert repl.restarts == 1 and repl.alive
        # A fresh process: ids start over, so the transcript replays from its first request.
        assert repl.request(requests[0]) == answers[0]


@needs_transcripts
def test_a_crash_restarts() -> None:
    path = TRANSCRIPTS / "proof_step.in"
    requests, answers = read_transcript(path)
    with stand_in(path) as repl:
        with pytest.raises(LeanReplCrashed, match="exited"):
            repl.request({"cmd": "__exit__"})
        assert repl.restarts == 1
        assert repl.request(requests[0]) == answers[0]


@needs_transcripts
def test_the_memory_limit_applies() -> None:
    path = TRANSCRIPTS / "proof_step.in"
    with stand_in(path) as repl:
        assert repl.request({"cmd": "__alloc__", "mb": 64}) == {"allocated_mb": 64}
    limited = LeanRepl([sys.executable, "-S", str(STAND_IN), str(path)], timeout_s=10.0, memory_limit_mb=256)
    with limited as repl:
        with pytest.raises(LeanReplCrashed):
            repl.request({"cmd": "__alloc__", "mb": 1024})
        assert repl.restarts == 1


def test_a_missing_repl_names_the_install() -> None:
    with pytest.raises(MissingComponentError, match="elan"):
        LeanRepl(["no-such-lake-binary-xyz", "exe", "repl"]).start()


# -- a real REPL ---------------------------------------------------------------------------------
REAL_DIR = os.environ.get("PLYGROUND_LEAN_REPL_DIR")


def _real_skip_reason() -> str | None:
    if shutil.which("lean") is None:
        return "no real Lean: `lean` is not on PATH (no toolchain can be installed on this machine)"
    if not REAL_DIR:
        return "lean is on PATH, but PLYGROUND_LEAN_REPL_DIR (a built leanprover-community/repl checkout) is not set"
    return None


@pytest.mark.skipif(_real_skip_reason() is not None, reason=_real_skip_reason() or "")
@pytest.mark.parametrize("case", [c for c in CASES if c.parent == TRANSCRIPTS], ids=case_id)
def test_transcripts_against_a_real_repl(case: Path) -> None:
    """Upstream's own check, through LeanRepl: each case in a fresh REPL, run from the REPL's
    checkout (the requests name files as test/NAME.lean). Expected outputs were recorded with
    Lean v4.33.0-rc2; another toolchain may differ in message text."""
    assert REAL_DIR is not None
    binary = Path(REAL_DIR) / ".lake" / "build" / "bin" / "repl"
    command = [str(binary)] if binary.exists() else ["lake", "exe", "repl"]
    requests, answers = read_transcript(case)
    with LeanRepl(command, cwd=REAL_DIR, timeout_s=120.0, memory_limit_mb=None) as repl:
        for request, expected in zip(requests, answers, strict=True):
            assert repl.request(request) == expected


# -- miniF2F -------------------------------------------------------------------------------------
@pytest.mark.skipif(not MINIF2F.exists(), reason=f"miniF2F copy not found at {MINIF2F}")
def test_minif2f_loader() -> None:
    test = load_minif2f_lean(MINIF2F, split="test")
    valid = load_minif2f_lean(MINIF2F, split="valid")
    assert len(test) == 244 and len(valid) == 244
    assert len(load_minif2f_lean(MINIF2F)) == 488
    task = next(t for t in test if t.id == "test/aime_1983_p1")
    assert task.prompt.startswith("theorem aime_1983_p1 (x y z w : ℕ)") and task.prompt.endswith(":=")
    assert "sorry" not in task.prompt
    assert task.metadata["header"].startswith("import Mathlib") and "open BigOperators" in task.metadata["header"]
    assert all(t.prompt.endswith(":=") and "sorry" not in t.prompt for t in test + valid)
    prefixes = {t.metadata["name"].split("_")[0] for t in test}
    assert {"mathd", "amc12a", "imo", "aime"} <= prefixes
    # plyground.tasks lists the theorem sets beside the other problem sets.
    from plyground import tasks

    assert tasks.load_minif2f_lean(MINIF2F, split="valid") == valid
    assert len(tasks.load_coq_theorems()) == 170


def test_parse_lean_statement() -> None:
    header, statement, name = parse_lean_statement("import Mathlib\n\ntheorem t (n : ℕ) :\n    n + 0 = n := by\n  sorry\n")
    assert header == "import Mathlib" and name == "t" and statement == "theorem t (n : ℕ) :\n    n + 0 = n :="
    with pytest.raises(ValueError):
        parse_lean_statement("def x := 1")
