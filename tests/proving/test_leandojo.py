"""The LeanDojo adapter against the real ``lean-dojo`` classes; what needs a toolchain skips."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from plyground.errors import MissingComponentError
from plyground.types import Task

ld = pytest.importorskip("lean_dojo", reason="lean-dojo is not installed (pip install lean-dojo)")

from plyground.proving.leandojo import (  # noqa: E402
    DojoSnapshot,
    LeanDojoSession,
    classify,
    lean_toolchain_available,
    make_theorem,
)

ROOT_PP = "⊢ ∀ (n : ℕ), n + 0 = n"
INTRO_PP = "n : ℕ\n⊢ n + 0 = n"


class StandInDojo:
    """The ``Dojo`` contract (``with Dojo(theorem) as (dojo, state)``, ``dojo.run_tac(state, tac)``)
    answering with lean-dojo's own result classes."""

    def __init__(self, theorem: Any) -> None:
        self.theorem = theorem
        self.calls: list[tuple[int, str]] = []
        self.exited = False

    def __enter__(self) -> tuple[StandInDojo, Any]:
        return self, ld.TacticState(ROOT_PP, 0)

    def __exit__(self, *exc: object) -> None:
        self.exited = True

    def run_tac(self, state: Any, tactic: str) -> Any:
        assert isinstance(state, ld.TacticState) and isinstance(tactic, str)
        self.calls.append((state.id, tactic))
        if tactic == "intro n" and state.id == 0:
            return ld.TacticState(INTRO_PP, 1)
        if tactic == "simp" and state.id == 1:
            return ld.ProofFinished(2, None)
        if tactic == "slow":
            raise ld.interaction.dojo.DojoTacticTimeoutError()
        if tactic == "give_up":
            return ld.ProofGivenUp()
        return ld.LeanError(f"unknown tactic {tactic}")


def test_the_package_has_the_api_bfs_prover_uses() -> None:
    for name in ("Dojo", "Theorem", "LeanGitRepo", "TacticState", "ProofFinished", "LeanError", "ProofGivenUp"):
        assert hasattr(ld, name), name
    assert list(inspect.signature(ld.Dojo.run_tac).parameters) == ["self", "state", "tactic"]
    assert {"entry", "timeout", "additional_imports"} <= set(inspect.signature(ld.Dojo.__init__).parameters)
    assert list(inspect.signature(ld.Theorem).parameters)[:3] == ["repo", "file_path", "full_name"]
    assert list(inspect.signature(ld.LeanGitRepo).parameters)[:2] == ["url", "commit"]
    state = ld.TacticState(INTRO_PP, 7)
    assert state.id == 7 and state.num_goals == 1


def test_classify_maps_every_result_class() -> None:
    root = ld.TacticState(ROOT_PP, 0)
    step = classify(ld.TacticState(INTRO_PP, 1), root, ld)
    assert step.ok and not step.complete and step.state.id == 1 and step.goals == INTRO_PP
    done = classify(ld.ProofFinished(2), root, ld)
    assert done.ok and done.complete
    err = classify(ld.LeanError("unknown identifier 'foo'"), root, ld)
    assert not err.ok and err.state is root and "unknown identifier" in (err.error or "") and err.goals == ROOT_PP
    gave_up = classify(ld.ProofGivenUp(), root, ld)
    assert not gave_up.ok and "sorry" in (gave_up.error or "")


def test_session_steps_backtracks_by_state_and_refuses_sorry() -> None:
    dojos: list[StandInDojo] = []

    def factory(theorem: Any) -> StandInDojo:
        dojos.append(StandInDojo(theorem))
        return dojos[-1]

    with LeanDojoSession("thm", dojo_factory=factory) as session:
        root = session.root
        assert root.pp == ROOT_PP
        assert not session.step(root, "bogus").ok
        intro = session.step(root, "intro n")
        assert intro.ok and intro.state.id == 1
        assert session.step(intro.state, "simp").complete
        again = session.step(root, "intro n")  # backtracking: an older state, no replay
        assert again.ok and dojos[0].calls[-1] == (0, "intro n")
        refused = session.step(root, "sorry")
        assert not refused.ok and refused.error and refused.error.startswith("Refused")
        slow = session.step(root, "slow")
        assert slow.timed_out and not slow.ok
    assert dojos[0].exited and len(dojos) == 1


def test_prove_v0_leandojo_env_with_a_stand_in_dojo() -> None:
    from plyground.envs import make

    task = Task(id="add_zero", prompt="theorem add_zero (n : ℕ) : n + 0 = n", metadata={"theorem": "thm"})
    env = make("Prove-v0", backend="leandojo", tasks=[task], dojo_factory=StandInDojo)
    try:
        obs, info = env.reset(seed=0)
        assert obs == ROOT_PP and info["tactic_state_id"] == 0
        obs, _, _, _, info = env.step("rfl")
        assert info["valid_action"] is False and "unknown tactic" in obs
        env.step("intro n")
        snap = env.snapshot()
        assert isinstance(snap, DojoSnapshot) and snap.state.id == 1
        *_, info = env.step("simp")
        assert info["success"] and info["proof"] == "intro n\nsimp"
        assert env.restore(snap) == INTRO_PP
        _, reward, *_ = env.step("simp")
        assert reward == 1.0
    finally:
        env.close()


def test_env_without_a_toolchain_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import plyground.proving.leandojo as adapter

    monkeypatch.setattr(adapter, "lean_toolchain_available", lambda: False)
    with pytest.raises(MissingComponentError, match="Lean toolchain"):
        adapter.LeanDojoProofEnv(tasks=[Task(id="t", prompt="theorem t : True")])


@pytest.mark.skipif(not lean_toolchain_available(), reason="no Lean toolchain (lake, lean) on PATH: LeanDojo cannot trace or run a repo")
def test_real_dojo_on_a_lean4_example() -> None:  # pragma: no cover - needs elan, network and a traced repo
    theorem = make_theorem("https://github.com/yangky11/lean4-example", "7b6ecb9ad4829e4e73600a3329baeb3b5df8d23f", Path("Lean4Example.lean"), "hello_world")
    with LeanDojoSession(theorem) as session:
        step = session.step(session.root, "rw [Nat.add_comm b, ← Nat.add_assoc]")
        assert step.ok
