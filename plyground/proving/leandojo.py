"""LeanDojo as a proving backend: an adapter over the ``lean-dojo`` package.

BFS-Prover's reference code drives Lean through LeanDojo::

    repo = LeanGitRepo(url, commit)
    theorem = Theorem(repo, file_path, full_name)
    with Dojo(theorem) as (dojo, state):          # state: TacticState (pp, id)
        result = dojo.run_tac(state, "intro x")   # TacticState | ProofFinished | LeanError | ProofGivenUp

That needs a Lean toolchain (elan) and a traced copy of the repository (LeanDojo builds and
traces it on first use, downloading from GitHub), neither of which these machines can get; the
adapter is for users whose machines have them. ``lean_dojo`` is imported lazily (it is slow to
import and optional): :func:`require_lean_dojo` raises a MissingComponentError naming
``pip install lean-dojo`` when it is absent.

- :class:`LeanDojoSession` opens one theorem (``Dojo(theorem, timeout=...)``) and turns each
  ``run_tac`` answer into a :class:`DojoStep` (``ok``, ``complete``, ``error``, ``state``,
  ``goals``); ``TacticState`` ids are the snapshots: stepping from an older state is
  backtracking, no replay needed. A tactic time-out (``DojoTacticTimeoutError``) and a crash
  (``DojoCrashError``) are errors of that step; after a crash the session reopens the Dojo.
- :class:`LeanDojoProofEnv` is ``Prove-v0`` with ``backend="leandojo"``: tasks name theorems
  (``metadata``: ``url``, ``commit``, ``file_path``, ``full_name``; ``prompt`` shown to the
  policy); ``snapshot()`` keeps the ``TacticState`` objects.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plyground.envs.core import TextEnv
from plyground.errors import EnvError, MissingComponentError
from plyground.types import Task

LEAN_DOJO_INSTALL = "pip install lean-dojo (and a Lean 4 toolchain: elan, https://github.com/leanprover/elan)"
FORBIDDEN = ("sorry", "admit", "native_decide")


def require_lean_dojo() -> Any:
    """The ``lean_dojo`` module; MissingComponentError when it is not installed."""
    try:
        return importlib.import_module("lean_dojo")
    except ImportError as exc:
        raise MissingComponentError("lean-dojo", LEAN_DOJO_INSTALL) from exc


def lean_toolchain_available() -> bool:
    """Whether a Lean toolchain is on PATH (LeanDojo runs ``lake env lean``)."""
    return shutil.which("lake") is not None and shutil.which("lean") is not None


def make_theorem(url: str, commit: str, file_path: str | Path, full_name: str) -> Any:
    """``Theorem(LeanGitRepo(url, commit), Path(file_path), full_name)``; ``LeanGitRepo``
    resolves the commit (a network call for a remote URL)."""
    ld = require_lean_dojo()
    return ld.Theorem(ld.LeanGitRepo(url, commit), Path(file_path), full_name)


@dataclass
class DojoStep:
    """What one ``run_tac`` did, whatever class LeanDojo answered with."""

    ok: bool
    complete: bool = False
    state: Any = None
    """The new ``TacticState`` (ok and not complete), else the state the tactic ran on."""
    goals: str = ""
    error: str | None = None
    timed_out: bool = False
    crashed: bool = False
    raw: Any = field(default=None, repr=False)


def classify(result: Any, before: Any, ld: Any) -> DojoStep:
    """Turn a ``run_tac`` answer (``TacticState``, ``ProofFinished``, ``LeanError``,
    ``ProofGivenUp``) into a :class:`DojoStep`; anything else is an error."""
    if isinstance(result, ld.TacticState):
        return DojoStep(True, False, result, str(result.pp), None, raw=result)
    if isinstance(result, ld.ProofFinished):
        return DojoStep(True, True, result, "no goals", None, raw=result)
    goals = str(getattr(before, "pp", ""))
    if isinstance(result, ld.LeanError):
        return DojoStep(False, False, before, goals, f"Error: {result.error}", raw=result)
    if isinstance(result, ld.ProofGivenUp):
        return DojoStep(False, False, before, goals, "Refused: the proof gave up (sorry).", raw=result)
    return DojoStep(False, False, before, goals, f"Error: unexpected LeanDojo answer {type(result).__name__}", raw=result)


class LeanDojoSession:
    """One theorem open in LeanDojo. ``open()`` enters ``Dojo(theorem)``; ``step(state, tactic)``
    runs a tactic on any state obtained in this session (so backtracking is free).

    ``dojo_factory`` builds the context manager (default ``lean_dojo.Dojo``): tests pass a stand-in
    with the same ``__enter__`` -> ``(dojo, state)`` and ``dojo.run_tac(state, tactic)`` contract."""

    def __init__(
        self,
        theorem: Any,
        timeout_s: int = 600,
        additional_imports: Sequence[str] = (),
        dojo_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.ld = require_lean_dojo()
        self.theorem = theorem
        self.timeout_s = timeout_s
        self.additional_imports = list(additional_imports)
        self.dojo_factory = dojo_factory
        self.dojo: Any = None
        self.root: Any = None
        self.restarts = 0
        self._ctx: Any = None

    def open(self) -> Any:
        """Enter the Dojo; returns the root ``TacticState``."""
        if self._ctx is not None:
            return self.root
        factory = self.dojo_factory or self.ld.Dojo
        if self.dojo_factory is None:
            ctx = factory(self.theorem, timeout=self.timeout_s, additional_imports=self.additional_imports)
        else:
            ctx = factory(self.theorem)
        self.dojo, self.root = ctx.__enter__()
        self._ctx = ctx
        return self.root

    def close(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            ctx.__exit__(None, None, None)
        self.dojo = None

    def __enter__(self) -> LeanDojoSession:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def step(self, state: Any, tactic: str) -> DojoStep:
        if self._ctx is None:
            self.open()
        words = tactic.replace("(", " ").replace(")", " ").split()
        for bad in FORBIDDEN:
            if bad in words:
                return DojoStep(False, False, state, str(getattr(state, "pp", "")), f"Refused: {bad!r} is not allowed.")
        try:
            result = self.dojo.run_tac(state, tactic)
        except self.ld.interaction.dojo.DojoTacticTimeoutError:
            return DojoStep(False, False, state, str(getattr(state, "pp", "")), "Error: the tactic timed out.", timed_out=True)
        except self.ld.interaction.dojo.DojoCrashError as exc:
            self.close()
            self.restarts += 1
            return DojoStep(False, False, state, str(getattr(state, "pp", "")), f"Error: Lean crashed ({exc}).", crashed=True)
        return classify(result, state, self.ld)


@dataclass(frozen=True)
class DojoSnapshot:
    task: Task
    actions: tuple[str, ...]
    tactics: tuple[str, ...]
    state: Any
    observation: str
    done: bool
    proved: bool


class LeanDojoProofEnv(TextEnv):
    """``Prove-v0`` over LeanDojo. Each task names a theorem in ``metadata`` (``url``,
    ``commit``, ``file_path``, ``full_name``) or carries a ready ``metadata["theorem"]``."""

    instructions = (
        "You are proving a theorem in Lean 4, one tactic at a time. Reply with exactly one tactic "
        "(intro x / simp / omega / rw [h] / exact h / linarith). No sorry."
    )
    reward_range = (0.0, 1.0)

    def __init__(
        self,
        tasks: Sequence[Task],
        max_turns: int = 32,
        timeout_s: int = 600,
        render_mode: str | None = None,
        dojo_factory: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        require_lean_dojo()
        self.tasks = list(tasks)
        if not self.tasks:
            raise ValueError("LeanDojoProofEnv needs at least one task")
        if dojo_factory is None and not lean_toolchain_available():
            raise MissingComponentError("Lean toolchain (lake, lean) for LeanDojo", LEAN_DOJO_INSTALL)
        self.max_turns = max_turns
        self.timeout_s = timeout_s
        self.dojo_factory = dojo_factory
        self.task: Task | None = None
        self.session: LeanDojoSession | None = None
        self.state: Any = None
        self.tactics: list[str] = []
        self.proved = False

    def _theorem(self, task: Task) -> Any:
        if "theorem" in task.metadata:
            return task.metadata["theorem"]
        meta = task.metadata
        try:
            return make_theorem(str(meta["url"]), str(meta["commit"]), str(meta["file_path"]), str(meta["full_name"]))
        except KeyError as exc:
            raise EnvError(f"task {task.id}: LeanDojo needs metadata url, commit, file_path, full_name ({exc})") from exc

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
        super().close()

    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        chosen = options.get("task")
        if isinstance(chosen, Task):
            task = chosen
        elif isinstance(chosen, dict):
            task = Task.from_dict(chosen)
        elif chosen is not None:
            found = next((t for t in self.tasks if t.id == chosen), None)
            if found is None:
                raise KeyError(f"no task {chosen!r} among the env's {len(self.tasks)} tasks")
            task = found
        else:
            task = self.tasks[int(rng.integers(len(self.tasks)))]
        if self.session is None or self.task is None or task.id != self.task.id:
            if self.session is not None:
                self.session.close()
            self.session = LeanDojoSession(self._theorem(task), self.timeout_s, dojo_factory=self.dojo_factory)
        self.task, self.tactics, self.proved = task, [], False
        self.state = self.session.open()
        return str(self.state.pp), {"task_id": task.id, "tactic_state_id": self.state.id}

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        assert self.session is not None
        tactic = action.strip()
        result = self.session.step(self.state, tactic)
        info: dict[str, Any] = {"task_id": self.task.id if self.task else None}
        if not result.ok:
            info.update(valid_action=False, error=result.error)
            if result.crashed:
                self.state = self.session.open()
                self._replay()
            return f"{result.error}\n\nThe goals are unchanged:\n{result.goals}", 0.0, False, info
        self.tactics.append(tactic)
        self.state = result.state
        if result.complete:
            self.proved = True
            info.update(success=True, proof="\n".join(self.tactics))
            return "No goals. Proof complete.", 1.0, True, info
        return result.goals, 0.0, False, info

    def _replay(self) -> None:
        assert self.session is not None
        state = self.session.root
        for tactic in self.tactics:
            step = self.session.step(state, tactic)
            if not step.ok:
                raise EnvError(f"replaying {tactic!r} after a LeanDojo crash failed: {step.error}")
            state = step.state
        self.state = state

    def state_key(self) -> str:
        return " ".join(str(getattr(self.state, "pp", "")).split())

    def snapshot(self) -> DojoSnapshot:
        if self.task is None:
            raise RuntimeError("snapshot() before reset()")
        return DojoSnapshot(self.task, tuple(self._actions), tuple(self.tactics), self.state,
                            self._last_observation, self._done, self.proved)

    def restore(self, state: Any) -> str:
        """Back to a snapshot: its ``TacticState`` is still valid in this Dojo (ids are kept)."""
        if not isinstance(state, DojoSnapshot):
            raise TypeError(f"LeanDojoProofEnv.restore expects a DojoSnapshot, got {type(state).__name__}")
        if self.task is None or state.task.id != self.task.id or self.session is None:
            self._reset(np.random.default_rng(0), {"task": state.task})
            self.tactics = list(state.tactics)
            self._replay()
        else:
            self.state, self.tactics = state.state, list(state.tactics)
        self.task, self.proved = state.task, state.proved
        self._options = {"task": state.task}
        self._actions = list(state.actions)
        self.turn = len(state.actions)
        self._done = state.done
        self._last_observation = state.observation
        return state.observation
