"""``Prove-v0``, the project's Coq theorem set, the tactic portfolio, the Lean backends."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from plyground.envs import make
from plyground.errors import MissingComponentError
from plyground.proving.coq import (
    COQ_INSTALL,
    COQ_THEOREMS,
    THEOREMS_FILE,
    TOPICS,
    _proof_body,
    check_theorem_file,
    coq_available,
    load_coq_theorems,
    verify_proof,
)
from plyground.proving.lean_repl import LeanRepl
from plyground.types import Task

needs_coq = pytest.mark.skipif(not coq_available(), reason=f"Coq is not installed: {COQ_INSTALL}")
HERE = Path(__file__).parent


# -- the theorem set -------------------------------------------------------------------------------
def test_theorem_set_is_graded_and_shipped() -> None:
    assert THEOREMS_FILE.exists() and THEOREMS_FILE.parent.name == "data"
    rows = [json.loads(line) for line in THEOREMS_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 100 and len(COQ_THEOREMS) == len(rows)
    assert {"id", "difficulty", "topic", "statement", "proof", "imports"} <= set(rows[0])
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert set(Counter(r["topic"] for r in rows)) == set(TOPICS)
    assert set(r["difficulty"] for r in rows) == {1, 2, 3, 4, 5}
    for task in COQ_THEOREMS:
        body, reason = _proof_body(task.answer or "")
        assert reason is None and body, task.id  # no Admitted, admit, axioms in a reference proof
    assert all(t.metadata["topic"] == "lists" for t in load_coq_theorems(topics=["lists"]))
    assert all(t.metadata["difficulty"] <= 2 for t in load_coq_theorems(max_difficulty=2))
    pyproject = (HERE.parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert '"plyground.proving" = ["data/*.jsonl"]' in pyproject


@needs_coq
@pytest.mark.parametrize("topic", TOPICS)
def test_every_reference_proof_checks_with_coqc(topic: str) -> None:
    tasks = [t for t in COQ_THEOREMS if t.metadata["topic"] == topic]
    assert check_theorem_file(tasks, check_assumptions=False) == {}  # one coqc run per topic
    assert check_theorem_file(tasks[:3]) == {}  # and Print Assumptions: closed under the global context


@needs_coq
def test_check_theorem_file_names_the_failing_theorem() -> None:
    bad = [COQ_THEOREMS[0], Task(id="wrong", prompt="Theorem wrong : 1 = 2.", answer="reflexivity."), COQ_THEOREMS[1]]
    problems = check_theorem_file(bad, check_assumptions=False)
    assert set(problems) == {"wrong", COQ_THEOREMS[1].id} and "unchecked" in problems[COQ_THEOREMS[1].id]


@needs_coq
@pytest.mark.slow
def test_every_reference_proof_is_closed_under_the_global_context() -> None:
    assert check_theorem_file(COQ_THEOREMS) == {}


# -- Prove-v0 -----------------------------------------------------------------------------------------
@needs_coq
def test_prove_v0_defaults_to_coq_and_coqproof_is_an_alias() -> None:
    from plyground.envs.proving import CoqProofEnv

    for env_id in ("Prove-v0", "CoqProof-v0"):
        env = make(env_id, max_difficulty=1)
        try:
            assert isinstance(env, CoqProofEnv) and len(env.tasks) < len(COQ_THEOREMS)
            obs, info = env.reset(seed=0)
            assert obs and info["task_id"]
        finally:
            env.close()
    with pytest.raises(ValueError, match="unknown proving backend"):
        make("Prove-v0", backend="isabelle")


def test_prove_v0_lean_without_a_project_says_how_to_configure_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLYGROUND_LEAN_PROJECT", raising=False)
    with pytest.raises(MissingComponentError, match="PLYGROUND_LEAN_PROJECT"):
        make("Prove-v0", backend="lean", tasks=[Task(id="t", prompt="theorem t : 1 = 1 :=")])
    with pytest.raises(MissingComponentError, match="not a folder"):
        make("Prove-v0", backend="lean", lean_project="/nonexistent/lean/project")


LEAN_TASK = Task(id="t", prompt="theorem t : ∀ x : Nat, x + 0 = x :=", metadata={"header": "import Mathlib", "name": "t"})


@pytest.fixture
def lean_env() -> Iterator[Any]:
    repl = LeanRepl([sys.executable, str(HERE / "scripted_lean_repl.py")], timeout_s=2.0, memory_limit_mb=None, startup_timeout_s=20)
    env = make("Prove-v0", backend="lean", tasks=[LEAN_TASK], repl=repl)
    yield env
    env.close()


def test_prove_v0_lean_steps_by_proof_state_id(lean_env: Any) -> None:
    obs, info = lean_env.reset(seed=0)
    assert "∀ (x : Nat)" in obs and info["proof_state"] == 0
    obs, reward, done, _, info = lean_env.step("linarith")
    assert info["valid_action"] is False and "failed" in obs and not done
    obs, reward, done, _, info = lean_env.step("sorry")
    assert info["valid_action"] is False and obs.startswith("Refused")
    obs, reward, done, _, info = lean_env.step("intro x")
    assert "x : Nat" in obs and info["proof_state"] == 1
    snap = lean_env.snapshot()
    assert snap.ids == (0, 1)
    obs, reward, done, _, info = lean_env.step("simp")
    assert reward == 1.0 and done and info["success"] and info["proof"] == "by\n  intro x\n  simp"
    requests = lean_env.repl.requests
    assert lean_env.restore(snap) == "x : Nat\n⊢ x + 0 = x"
    assert lean_env.repl.requests == requests  # restore by id: no request, no replay
    *_, info = lean_env.step("omega")
    assert info["success"]


def test_prove_v0_lean_time_limit_restarts_and_replays(lean_env: Any) -> None:
    lean_env.reset(seed=0)
    lean_env.step("intro x")
    started = time.perf_counter()
    obs, _, _, _, info = lean_env.step("sleep")
    assert info["valid_action"] is False and info["timed_out"] and time.perf_counter() - started < 15
    assert lean_env.repl.restarts == 1 and "x : Nat" in obs
    *_, info = lean_env.step("simp")  # replayed on the fresh process: still usable
    assert info["success"]


# -- the portfolio ---------------------------------------------------------------------------------------
FAST_IDS = ["two_plus_two", "add_comm_lia", "andb_comm", "and_swap", "app_nil_r", "add_0_r", "square_binomial", "demorgan_not_or"]


def _run_portfolio(task_ids: list[str] | None, tasks: list[Task] | None = None) -> tuple[int, list[str]]:
    """Search each task with the portfolio through Prove-v0; every proof found is re-checked whole
    by coqc (``verify_proof``) in a side thread while the search goes on."""
    from plyground.proving.portfolio import prove_with_portfolio

    by_id = {t.id: t for t in COQ_THEOREMS}
    chosen = tasks if tasks is not None else [by_id[i] for i in task_ids or []]
    env = make("Prove-v0", timeout_s=5.0)
    checks: list[tuple[Task, str, Future[Any]]] = []
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            for task in chosen:
                result = prove_with_portfolio(env, task, verify=False)
                if result.proof is not None:
                    checks.append((task, result.proof, pool.submit(verify_proof, task.prompt, result.proof)))
            proved = []
            for task, proof, future in checks:
                verdict = future.result()
                assert verdict.correct, (task.id, proof, verdict)
                proved.append(task.id)
    finally:
        env.close()
    return len(chosen), proved


@needs_coq
def test_portfolio_proves_a_sample_through_prove_v0() -> None:
    _, proved = _run_portfolio(FAST_IDS)
    assert sorted(proved) == sorted(FAST_IDS)


@needs_coq
@pytest.mark.slow
def test_portfolio_proves_at_least_30_theorems_of_the_set() -> None:
    sample = COQ_THEOREMS[::3]  # every third theorem: all topics and difficulties
    n, proved = _run_portfolio(None, sample)
    assert len(proved) >= 30, (n, proved)


@needs_coq
def test_cheating_proofs_are_rejected_by_verify_proof() -> None:
    task = next(t for t in COQ_THEOREMS if t.id == "add_0_r")
    assert not verify_proof(task.prompt, "Admitted.").correct
    assert not verify_proof(task.prompt, "intros n. admit.").correct
    assert not verify_proof(task.prompt, "apply cheat. Qed. Axiom cheat : forall n, n + 0 = n.").correct
    verdict = verify_proof(task.prompt, "intros n. apply cheat.", header="Require Import Arith.\nAxiom cheat : forall n, n + 0 = n.")
    assert verdict.correct  # the header's own axiom is part of the statement's context ...
    env = make("Prove-v0", timeout_s=5.0)
    try:
        env.reset(options={"task": task})
        for cheat in ("admit", "Admitted", "Axiom a : False"):
            *_, info = env.step(cheat)
            assert info["valid_action"] is False and info["error"].startswith("Refused")
    finally:
        env.close()
