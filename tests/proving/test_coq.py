"""The Coq backend for real (coqtop/coqc from Debian's ``coq``): steps, goals, completion,
refused cheats, time limits, snapshots, the verifier, the built-in theorems and best-first search."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import pytest

from plyground.errors import MissingComponentError
from plyground.proving.coq import (
    COQ_INSTALL,
    COQ_THEOREMS,
    CoqProofVerifier,
    CoqSession,
    check_tactic,
    coq_available,
    parse_assumptions,
    proof_script,
    verify_proof,
)
from plyground.search import BestFirstConfig, best_first
from plyground.search.pairs import bfs_pairs
from plyground.search.proposer import Proposal, Usage
from plyground.search.tree import Node
from plyground.types import Task

pytestmark = pytest.mark.skipif(not coq_available(), reason=f"Coq is not installed: {COQ_INSTALL}")

THEOREMS = {t.id: t for t in COQ_THEOREMS}
ADD_0_R = THEOREMS["add_0_r"]


@pytest.fixture(scope="module")
def session() -> Iterator[CoqSession]:
    s = CoqSession(timeout_s=5.0)
    s.start()
    yield s
    s.close()


@pytest.fixture(scope="module")
def env():  # type: ignore[no-untyped-def]
    from plyground.envs.proving import CoqProofEnv

    e = CoqProofEnv(timeout_s=5.0)
    yield e
    e.close()


def test_steps_read_goals_and_detect_completion(session: CoqSession) -> None:
    start = session.begin(ADD_0_R.prompt)
    assert "forall n : nat, n + 0 = n" in start.goals and not start.complete
    assert "(ID" not in start.goals
    r = session.step("intros n.")
    assert r.ok and "n : nat" in r.goals and "n + 0 = n" in r.goals
    bad = session.step("rewrite no_such_lemma")
    assert not bad.ok and bad.error is not None and "no_such_lemma" in bad.error
    assert session.goals == r.goals and session.tactics == ["intros n."]  # state unchanged
    r = session.step('idtac "Error: only a message"')  # a message is not an error: Coq advanced
    assert r.ok and session.tactics == ["intros n.", 'idtac "Error: only a message".']
    r = session.step("induction n")
    assert r.goals.startswith("2 goals")
    for tactic in ("reflexivity", "simpl", "rewrite IHn", "reflexivity"):
        r = session.step(tactic)
        assert r.ok, r.error
    assert r.complete and session.complete
    ok, reason = session.qed()
    assert ok, reason
    assert session.step("auto").error == "Error: No more goals."


@pytest.mark.parametrize(
    "action",
    ["admit", "Admitted", "give_up", "Abort", "Axiom cheat : False", "Parameter p : nat", "Qed",
     "Require Import Classical", "intros. auto", "- auto", "(* hi *) auto", "", "   ."],
)
def test_cheats_and_non_tactics_are_refused(session: CoqSession, action: str) -> None:
    session.begin(THEOREMS["two_plus_two"].prompt)
    sentence, reason = check_tactic(action)
    assert sentence == "" and reason
    r = session.step(action)
    assert not r.ok and r.error is not None and r.error.startswith("Refused")
    assert session.tactics == []


def test_qed_rejects_a_proof_that_only_looked_complete(session: CoqSession) -> None:
    # exact_no_check closes the goal without type checking; Qed re-checks and refuses.
    session.begin(THEOREMS["two_plus_two"].prompt)
    assert session.step("exact_no_check I").complete
    ok, reason = session.qed()
    assert not ok and "Qed failed" in reason
    assert session.complete  # back in the proof, usable
    session.goto([])
    assert session.step("reflexivity").complete and session.qed()[0]


def test_a_looping_tactic_is_killed_and_the_session_stays_usable() -> None:
    with CoqSession(header="", timeout_s=1.0) as s:
        s.begin("Theorem loop_t : forall n : nat, n = n.")
        s.step("intros n")
        started = time.perf_counter()
        r = s.step("do 1000000000 idtac")
        assert r.timed_out and not r.ok and "timed out" in (r.error or "")
        assert time.perf_counter() - started < 10
        assert s.restarts == 1 and s.tactics == ["intros n."]
        assert "n : nat" in s.goals
        assert s.step("reflexivity").complete and s.qed()[0]


def test_goto_backtracks_and_replays(session: CoqSession) -> None:
    session.begin(ADD_0_R.prompt)
    tactics = ["intros n.", "induction n.", "reflexivity.", "simpl."]
    for t in tactics:
        session.step(t)
    after_simpl = session.goals
    session.goto(tactics[:1])
    assert session.tactics == tactics[:1] and "n : nat" in session.goals
    session.step("lia")
    assert session.complete
    session.goto(tactics)
    assert session.goals == after_simpl and session.tactics == tactics


def test_verifier_accepts_a_proof_and_rejects_wrong_and_cheating_ones() -> None:
    verifier = CoqProofVerifier(header="")  # no libraries: coqc starts fast
    task = THEOREMS["and_swap"]
    good = verifier.verify(task, "intros P Q H. destruct H as [HP HQ]. split; assumption.")
    assert good.correct and good.score == 1.0, good
    assert verifier.verify(task, "```coq\nProof.\nintros P Q [HP HQ].\nsplit; assumption.\nQed.\n```").correct
    wrong = verifier.verify(task, "intros P Q H. split. exact H.")
    assert not wrong.correct and "rejected" in wrong.reason
    for cheat in ("admit.", "intros. Admitted.", "Abort.", "intros P Q H. tauto. Qed. Axiom bad : False.", "give_up."):
        verdict = verifier.verify(task, cheat)
        assert not verdict.correct, cheat
    assert not verifier.verify(task, "").correct


def test_verifier_catches_axioms_through_print_assumptions() -> None:
    header = "Axiom magic : forall P : Prop, P."
    task = Task(id="ax", prompt="Theorem uses_magic : 1 = 2.", metadata={"header": header})
    # The header's own axiom is allowed: it is part of the statement's context.
    assert CoqProofVerifier().verify(task, "apply magic.").correct
    # A library axiom is not, unless allowed.
    classical = "Require Import Classical.\n"
    task2 = Task(id="em", prompt="Theorem em_inst : forall P : Prop, P \\/ ~ P.", metadata={"header": classical})
    verdict = CoqProofVerifier().verify(task2, "intros P. apply classic.")
    assert not verdict.correct and "classic" in verdict.reason
    assert CoqProofVerifier(allowed_axioms=("classic",)).verify(task2, "intros P. apply classic.").correct
    assert parse_assumptions("Axioms:\nclassic : forall P : Prop, P \\/ ~ P\n") == ["classic"]
    assert parse_assumptions("Closed under the global context\n") == []


def test_every_builtin_reference_proof_checks(session: CoqSession) -> None:
    assert len(COQ_THEOREMS) >= 20
    for task in COQ_THEOREMS:
        assert task.answer
        session.begin(task.prompt)
        for tactic in task.answer.split(". "):
            r = session.step(tactic)
            assert r.ok, (task.id, tactic, r.error)
        assert session.complete, task.id
        ok, reason = session.qed(check_assumptions=False)  # Qed re-checks; Print Assumptions is tested above
        assert ok, (task.id, reason)
    # And two of them end to end through coqc.
    for task in (THEOREMS["rev_length"], THEOREMS["and_swap"]):
        assert verify_proof(task.prompt, task.answer or "").correct


def test_env_steps_errors_and_rewards(env) -> None:  # type: ignore[no-untyped-def]
    obs, info = env.reset(options={"task": THEOREMS["add_comm_lia"]})
    assert "forall a b : nat" in obs and info["task_id"] == "add_comm_lia"
    obs, reward, terminated, _, info = env.step("apply nonexistent")
    assert info["valid_action"] is False and "nonexistent" in obs and reward == 0.0 and not terminated
    obs, reward, terminated, _, info = env.step("intros a b")
    assert info["valid_action"] and "a, b : nat" in obs
    key = env.state_key()
    assert "(ID" not in key and "a + b = b + a" in key
    obs, reward, terminated, _, info = env.step("lia")
    assert reward == 1.0 and terminated and info["success"]
    assert verify_proof(THEOREMS["add_comm_lia"].prompt, info["proof"]).correct


def test_env_snapshot_restore(env) -> None:  # type: ignore[no-untyped-def]
    env.reset(options={"task": "add_0_r"})
    env.step("intros n")
    env.step("induction n")
    snap = env.snapshot()
    obs_at_snap = env.render() if env.render_mode else env._last_observation
    env.step("reflexivity")
    env.reset(options={"task": "and_swap"})  # somewhere else entirely
    assert env.restore(snap) == obs_at_snap
    assert env.turn == 2 and env.session.tactics == ["intros n.", "induction n."]
    for tactic in ("reflexivity", "simpl", "rewrite IHn"):
        env.step(tactic)
    *_, info = env.step("reflexivity")
    assert info["success"]


def test_env_reports_missing_coq(monkeypatch: pytest.MonkeyPatch) -> None:
    import plyground.proving.coq as coq

    monkeypatch.setattr(coq.shutil, "which", lambda name: None)
    from plyground.envs.proving import CoqProofEnv

    with pytest.raises(MissingComponentError, match="apt-get install coq"):
        CoqProofEnv()


class PortfolioProposer(Usage):
    """A scripted tactic portfolio: the same candidates at every node, good and bad, each with a
    fixed score (earlier = more likely)."""

    def __init__(self, tactics: Sequence[str]) -> None:
        super().__init__()
        self.tactics = list(tactics)
        self.instructions = ""

    def prepare(self, env: object) -> None:
        self.instructions = getattr(env, "instructions", "")

    def propose(self, nodes: Sequence[Node], k: int) -> list[list[Proposal]]:
        self.calls += 1
        self.prompts += len(nodes)
        out = []
        for _ in nodes:
            props = [Proposal(t, t, -0.1 * (i + 1)) for i, t in enumerate(self.tactics[:k])]
            self.generations += len(props)
            out.append(props)
        return out


PORTFOLIO = ["bogus_tactic", "intros", "split", "lia", "reflexivity", "auto", "admit", "apply no_such_lemma"]


@pytest.mark.parametrize("task_id", ["add_comm_lia", "imp_trans", "lt_trans3"])
def test_best_first_with_a_portfolio_proves_and_pairs_come_from_errors(env, task_id: str) -> None:  # type: ignore[no-untyped-def]
    config = BestFirstConfig(width=len(PORTFOLIO), max_nodes=20, time_limit_s=30.0, step_time_limit_s=5.0)
    result = best_first(env, PortfolioProposer(PORTFOLIO), config, options={"task": THEOREMS[task_id]}, env_id="CoqProof-v0")
    assert result.success, result.stats
    assert result.trajectory is not None
    proof = proof_script([t.action for t in result.trajectory.turns])
    assert verify_proof(THEOREMS[task_id].prompt, proof).correct, proof
    pairs = bfs_pairs(result)
    assert pairs, "the portfolio always has erroring siblings"
    assert result.root is not None
    errors = {n.action for n in result.root.walk() if n.error}
    for pair in pairs:
        assert pair["meta"]["rejected_action"] in errors and pair["meta"]["rejected_error"]
        assert pair["meta"]["chosen_action"] not in ("bogus_tactic", "admit", "apply no_such_lemma")


def test_verifier_time_limit() -> None:
    task = Task(id="loop", prompt="Theorem loop_v : True.", metadata={"header": ""})
    verdict = CoqProofVerifier(timeout_s=1.0).verify(task, "do 1000000000 idtac. exact I.")
    assert not verdict.correct and verdict.error == "timeout" and verdict.elapsed_s < 10
