"""``Prove-v0``: prove a theorem one tactic at a time (a BFS-Prover style step prover env).

``make("Prove-v0")`` builds :class:`CoqProofEnv` (``backend="coq"``, the default: Coq runs on
these machines), :class:`LeanProofEnv` (``backend="lean"``: the Lean 4 REPL in a Lean project
named by ``lean_project=`` or ``$PLYGROUND_LEAN_PROJECT``) or the LeanDojo adapter
(``backend="leandojo"``, :mod:`plyground.proving.leandojo`). ``CoqProof-v0`` is kept as an alias
of ``Prove-v0`` with the Coq backend.

The Coq backend:

- observation: the open goals as ``coqtop`` prints them (``(ID n)`` tags dropped); after an
  erroring tactic, the Coq error followed by the unchanged goals;
- action: one tactic (``intros n``, ``induction l; simpl``, ``lia``; a final period is optional);
  vernacular (``Admitted``, ``Axiom`` ...), ``admit``/``give_up``, bullets, comments and several
  sentences at once are refused without reaching Coq;
- reward 1 when the goals are all closed and the proof passes ``Qed`` and ``Print Assumptions``
  (no axioms) in the session, else 0; the episode then terminates;
- an erroring or refused tactic: ``info["valid_action"] = False``, state unchanged, the turn counts;
- ``snapshot()`` is the theorem and the accepted tactics; ``restore`` backtracks ``coqtop`` to the
  longest common prefix (``BackTo``) and replays the rest; ``state_key()`` is the normalised goals.

Tasks: ``tasks=`` (a list of :class:`~plyground.types.Task`: ``prompt`` = the ``Theorem ... .``
sentence, ``metadata["header"]`` = imports/definitions, default ``DEFAULT_HEADER``), default the
project's set ``COQ_THEOREMS`` (170 theorems, ``data/coq_theorems.jsonl``), which ``topics=`` and
``max_difficulty=`` filter; ``reset(options={"task": task})`` picks one (a Task, its dict, or an id
of the env's tasks), else the seeded generator does.

The Lean backend (:class:`LeanProofEnv`): ``reset`` runs the task's header (imports, once per
header: its environment id is reused) and ``statement := by sorry``, whose sorry gives the root
proof-state id; a step is one REPL tactic request on the current proof-state id; an answer with
error messages is an invalid action (state unchanged); no goals left is a candidate proof, which
is re-checked as one whole command (no errors, no ``sorry``, no ``sorryAx``/new axioms by
``#print axioms``) before reward 1. ``snapshot()`` keeps the proof-state ids; ``restore`` reuses
them while the REPL process lives and replays the tactics after a restart. Tasks: ``tasks=``,
e.g. :func:`~plyground.proving.lean_repl.load_minif2f_lean` (``prompt`` = the statement up to
``:=``, ``metadata["header"]`` = imports), or ``minif2f=PATH`` to load them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from plyground.envs.core import TextEnv
from plyground.errors import MissingComponentError
from plyground.proving.coq import COQ_THEOREMS, DEFAULT_HEADER, CoqError, CoqSession, find_coq, proof_script
from plyground.proving.lean_repl import (
    DEFAULT_COMMAND,
    LEAN_INSTALL,
    LEAN_PROJECT_ENV,
    LeanRepl,
    LeanReplError,
    check_lean_tactic,
    load_minif2f_lean,
)
from plyground.types import Task

BACKENDS = ("coq", "lean", "leandojo")

INSTRUCTIONS = (
    "You are proving a theorem in the Coq proof assistant, one tactic at a time.\n"
    "You see the open goals: hypotheses above the ==== line, the goal to prove below it.\n"
    "Reply with exactly one Coq tactic, for example: intros n. / induction n; simpl. / lia. / "
    "rewrite IHn. / destruct b. / split. / apply H. / reflexivity. / auto.\n"
    "Tactics act on the first goal (use `all:` for every goal). No bullets, no comments, no "
    "Admitted/admit. The proof is done when no goals remain."
)


@dataclass(frozen=True)
class ProofSnapshot:
    """The state of a proof episode: the task, the actions (all turns) and the accepted tactics."""

    task: Task
    actions: tuple[str, ...]
    tactics: tuple[str, ...]
    observation: str
    done: bool
    proved: bool


class CoqProofEnv(TextEnv):
    """State = open goals, action = one tactic, reward 1 for a complete checked proof."""

    instructions = INSTRUCTIONS
    reward_range = (0.0, 1.0)

    def __init__(
        self,
        tasks: Sequence[Task] | None = None,
        max_turns: int = 32,
        timeout_s: float = 10.0,
        header: str | None = None,
        check_assumptions: bool = True,
        render_mode: str | None = None,
        topics: Sequence[str] | None = None,
        max_difficulty: int | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        find_coq("coqtop")  # MissingComponentError("Coq", "apt-get install coq") before anything starts
        find_coq("coqc")
        self.tasks = list(tasks) if tasks is not None else list(COQ_THEOREMS)
        if topics is not None:
            self.tasks = [t for t in self.tasks if t.metadata.get("topic") in set(topics)]
        if max_difficulty is not None:
            self.tasks = [t for t in self.tasks if int(t.metadata.get("difficulty", 1)) <= max_difficulty]
        if not self.tasks:
            raise ValueError("CoqProofEnv needs at least one task")
        self.max_turns = max_turns
        self.timeout_s = timeout_s
        self.header = header
        self.check_assumptions = check_assumptions
        self.task: Task | None = None
        self.proved = False
        self._session: CoqSession | None = None

    # -- the session --------------------------------------------------------------------------
    def _header_of(self, task: Task) -> str:
        return str(task.metadata.get("header", self.header if self.header is not None else DEFAULT_HEADER))

    def _session_for(self, task: Task) -> CoqSession:
        header = self._header_of(task)
        if self._session is not None and self._session.header != header:
            self._session.close()
            self._session = None
        if self._session is None:
            self._session = CoqSession(header=header, timeout_s=self.timeout_s)
            self._session.start()
        return self._session

    @property
    def session(self) -> CoqSession:
        if self._session is None:
            raise RuntimeError("no episode yet: call reset()")
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        super().close()

    # -- TextEnv ----------------------------------------------------------------------------
    def _pick(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        chosen = options.get("task")
        if chosen is None:
            return self.tasks[int(rng.integers(len(self.tasks)))]
        if isinstance(chosen, Task):
            return chosen
        if isinstance(chosen, dict):
            return Task.from_dict(chosen)
        for task in self.tasks:
            if task.id == chosen:
                return task
        raise KeyError(f"no task {chosen!r} among the env's {len(self.tasks)} tasks")

    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.task = self._pick(rng, options)
        self.proved = False
        result = self._session_for(self.task).begin(self.task.prompt)
        return result.goals, {"task_id": self.task.id, "goals": result.goals}

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        session = self.session
        result = session.step(action)
        # No timings in info: Gymnasium's checker compares the info of two equally seeded steps.
        info: dict[str, Any] = {"task_id": self.task.id if self.task else None}
        if not result.ok:
            info["valid_action"] = False
            info["error"] = result.error
            if result.timed_out:
                info["timed_out"] = True
            return f"{result.error}\n\nThe goals are unchanged:\n{result.goals}", 0.0, False, info
        if not result.complete:
            return result.goals, 0.0, False, info
        ok, reason = session.qed(self._allowed_axioms(), self.check_assumptions)
        info["check"] = reason
        info["proof"] = proof_script(session.tactics)
        self.proved = ok
        if ok:
            info["success"] = True
            return "No more goals. Proof complete: Qed accepted.", 1.0, True, info
        return f"No more goals, but the proof was rejected: {reason}", 0.0, True, info

    def _allowed_axioms(self) -> list[str]:
        return list(self.task.metadata.get("allowed_axioms", ())) if self.task else []

    # -- search support -----------------------------------------------------------------------
    def state_key(self) -> str:
        """The normalised goals (BFS-Prover dedupes nodes by proof state)."""
        if self._session is None:
            return ""
        return " ".join(self._session.goals.split())

    def snapshot(self) -> ProofSnapshot:
        if self.task is None or self._session is None:
            raise RuntimeError("snapshot() before reset()")
        return ProofSnapshot(
            task=self.task,
            actions=tuple(self._actions),
            tactics=tuple(self._session.tactics),
            observation=self._last_observation,
            done=self._done,
            proved=self.proved,
        )

    def restore(self, state: Any) -> str:
        if not isinstance(state, ProofSnapshot):
            raise TypeError(f"CoqProofEnv.restore expects a ProofSnapshot, got {type(state).__name__}")
        session = self._session_for(state.task)
        try:
            session.goto(list(state.tactics), state.task.prompt)
        except CoqError:
            session.recover()
            session.goto(list(state.tactics), state.task.prompt)
        self.task = state.task
        self.proved = state.proved
        self._options = {"task": state.task}
        self._actions = list(state.actions)
        self.turn = len(state.actions)
        self._done = state.done
        self._last_observation = state.observation
        return state.observation


# -- Lean 4 over the REPL ---------------------------------------------------------------------------
LEAN_INSTRUCTIONS = (
    "You are proving a theorem in Lean 4, one tactic at a time.\n"
    "You see the open goals (hypotheses, then the goal after ⊢).\n"
    "Reply with exactly one Lean 4 tactic, for example: intro x / norm_num / simp / linarith / "
    "omega / induction n with ... / rw [h] / exact h / nlinarith [sq_nonneg (a - b)].\n"
    "No sorry/admit. The proof is done when no goals remain."
)


def find_lean_project(path: str | os.PathLike[str] | None = None) -> Path:
    """The Lean project the REPL runs in: ``path``, else ``$PLYGROUND_LEAN_PROJECT``; a clear
    MissingComponentError when neither names a folder."""
    chosen = path if path is not None else os.environ.get(LEAN_PROJECT_ENV)
    how = (
        f"pass lean_project=PATH to Prove-v0 (backend='lean') or set {LEAN_PROJECT_ENV}=PATH: a Lean 4 project "
        f"where `lake exe repl` runs (install {LEAN_INSTALL}; add Mathlib for miniF2F)"
    )
    if chosen is None or not str(chosen).strip():
        raise MissingComponentError("Lean project", how)
    folder = Path(chosen).expanduser()
    if not folder.is_dir():
        raise MissingComponentError(f"Lean project ({folder} is not a folder)", how)
    return folder


@dataclass(frozen=True)
class LeanSnapshot:
    """A Lean proof episode: the task, the actions, the accepted tactics, their proof-state ids
    (``ids[0]`` is the root) and the REPL process generation they belong to."""

    task: Task
    actions: tuple[str, ...]
    tactics: tuple[str, ...]
    ids: tuple[int, ...]
    generation: int
    observation: str
    done: bool
    proved: bool


def _goals_text(goals: Sequence[str] | None) -> str:
    if not goals:
        return "No goals."
    return "\n\n".join(goals) if len(goals) == 1 else f"{len(goals)} goals\n\n" + "\n\n".join(goals)


class LeanProofEnv(TextEnv):
    """State = the REPL's goals at a proof-state id, action = one tactic, reward 1 for a proof
    the REPL re-checks whole. Needs a Lean project (``lean_project`` or ``$PLYGROUND_LEAN_PROJECT``)."""

    instructions = LEAN_INSTRUCTIONS
    reward_range = (0.0, 1.0)

    def __init__(
        self,
        tasks: Sequence[Task] | None = None,
        lean_project: str | os.PathLike[str] | None = None,
        repl_command: Sequence[str] = DEFAULT_COMMAND,
        minif2f: str | os.PathLike[str] | None = None,
        split: str | None = "test",
        header: str = "import Mathlib",
        max_turns: int = 32,
        timeout_s: float = 60.0,
        memory_limit_mb: int | None = 16_384,
        check_axioms: bool = True,
        render_mode: str | None = None,
        repl: LeanRepl | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        if repl is None:
            project = find_lean_project(lean_project)
            repl = LeanRepl(repl_command, cwd=project, timeout_s=timeout_s, memory_limit_mb=memory_limit_mb)
        self.repl = repl
        if tasks is None:
            if minif2f is None:
                raise ValueError("Prove-v0 with backend='lean' needs tasks= (Lean statements) or minif2f=PATH")
            tasks = load_minif2f_lean(minif2f, split)
        self.tasks = list(tasks)
        if not self.tasks:
            raise ValueError("LeanProofEnv needs at least one task")
        self.max_turns = max_turns
        self.header = header
        self.check_axioms = check_axioms
        self.task: Task | None = None
        self.proved = False
        self._envs: dict[str, int] = {}  # header -> environment id (this REPL process)
        self._generation = -1
        self._ids: list[int] = []
        self._tactics: list[str] = []
        self._goals: list[str] = []

    def close(self) -> None:
        self.repl.close()
        super().close()

    # -- REPL helpers -----------------------------------------------------------------------------
    def _header_of(self, task: Task) -> str:
        return str(task.metadata.get("header", self.header))

    def _env_id(self, header: str) -> int | None:
        if self._generation != self.repl.restarts:
            self._envs = {}
            self._generation = self.repl.restarts
        if not header.strip():
            return None
        if header not in self._envs:
            answer = self.repl.command(header)
            if not answer.ok or answer.env is None:
                raise LeanReplError(f"the header failed: {'; '.join(answer.errors)[:500]}")
            self._envs[header] = answer.env
        return self._envs[header]

    def _start_proof(self, task: Task) -> tuple[int, list[str]]:
        statement = task.prompt.rstrip()
        if not statement.endswith(":="):
            statement += " :="
        for _ in range(2):  # a restart in between: once more with fresh ids
            try:
                env = self._env_id(self._header_of(task))
                answer = self.repl.command(f"{statement} by sorry", env=env)
                break
            except LeanReplError:
                if self._generation == self.repl.restarts:
                    raise
        else:  # pragma: no cover - both tries hit a restart
            raise LeanReplError("the Lean REPL restarted twice while starting the proof")
        errors = [e for e in answer.errors]
        if errors or not answer.sorries or answer.sorries[0].get("proofState") is None:
            raise LeanReplError(f"the statement was not accepted: {'; '.join(errors)[:500] or answer.raw}")
        sorry = answer.sorries[0]
        return int(sorry["proofState"]), [str(sorry.get("goal", ""))]

    # -- TextEnv ------------------------------------------------------------------------------------
    def _pick(self, rng: np.random.Generator, options: dict[str, Any]) -> Task:
        return CoqProofEnv._pick(self, rng, options)  # type: ignore[arg-type]

    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.task = self._pick(rng, options)
        self.proved = False
        root, goals = self._start_proof(self.task)
        self._ids, self._tactics, self._goals = [root], [], goals
        obs = _goals_text(goals)
        return obs, {"task_id": self.task.id, "goals": obs, "proof_state": root}

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        info: dict[str, Any] = {"task_id": self.task.id if self.task else None}
        tactic, reason = check_lean_tactic(action)
        if reason is not None:
            info.update(valid_action=False, error=f"Refused: {reason}.")
            return f"Refused: {reason}.\n\nThe goals are unchanged:\n{_goals_text(self._goals)}", 0.0, False, info
        if self._generation != self.repl.restarts:
            self._replay()
        try:
            answer = self.repl.tactic(tactic, self._ids[-1])
        except LeanReplError as exc:  # time-out or crash: the REPL restarted, the state is replayed
            info.update(valid_action=False, error=str(exc), timed_out="took over" in str(exc))
            self._replay()
            return f"Error: {exc}\n\nThe goals are unchanged:\n{_goals_text(self._goals)}", 0.0, False, info
        if not answer.ok or answer.proof_state is None:
            error = "; ".join(answer.errors) or "the tactic failed"
            info.update(valid_action=False, error=error)
            return f"Error: {error}\n\nThe goals are unchanged:\n{_goals_text(self._goals)}", 0.0, False, info
        self._ids.append(answer.proof_state)
        self._tactics.append(tactic)
        self._goals = list(answer.goals or [])
        info["proof_state"] = answer.proof_state
        if not answer.proof_complete:
            return _goals_text(self._goals), 0.0, False, info
        ok, why = self._check_whole()
        info["check"] = why
        info["proof"] = self.proof
        self.proved = ok
        if ok:
            info["success"] = True
            return "No goals. Proof complete: the whole proof checks.", 1.0, True, info
        return f"No goals, but the proof was rejected: {why}", 0.0, True, info

    @property
    def proof(self) -> str:
        """The accepted tactics as a ``by`` block."""
        return "by\n" + "\n".join("  " + line for t in self._tactics for line in t.splitlines())

    def _check_whole(self) -> tuple[bool, str]:
        assert self.task is not None
        statement = self.task.prompt.rstrip()
        if not statement.endswith(":="):
            statement += " :="
        env = self._env_id(self._header_of(self.task))
        answer = self.repl.command(f"{statement} {self.proof}", env=env)
        if not answer.ok:
            return False, "the whole proof failed: " + "; ".join(answer.errors)[:500]
        if answer.sorries or any("sorry" in str(m.get("data", "")) for m in answer.messages):
            return False, "the proof uses sorry"
        name = self.task.metadata.get("name")
        if self.check_axioms and name and answer.env is not None:
            axioms = self.repl.command(f"#print axioms {name}", env=answer.env)
            text = " ".join(str(m.get("data", "")) for m in axioms.messages)
            allowed = {"propext", "Classical.choice", "Quot.sound"}
            used = set(re.findall(r"[\w.]+", text.split("depends on axioms:", 1)[-1])) if "depends on axioms" in text else set()
            extra = sorted(used - allowed)
            if extra:
                return False, f"the proof depends on axioms: {', '.join(extra)}"
        return True, "checked whole by the Lean REPL"

    def _replay(self) -> None:
        """The REPL restarted: start the proof again and replay the accepted tactics."""
        assert self.task is not None
        root, goals = self._start_proof(self.task)
        ids = [root]
        for tactic in self._tactics:
            answer = self.repl.tactic(tactic, ids[-1])
            if not answer.ok or answer.proof_state is None:
                raise LeanReplError(f"replaying {tactic!r} failed: {'; '.join(answer.errors)}")
            ids.append(answer.proof_state)
            goals = list(answer.goals or [])
        self._ids, self._goals = ids, goals

    # -- search support -------------------------------------------------------------------------------
    def state_key(self) -> str:
        return " ".join(_goals_text(self._goals).split())

    def snapshot(self) -> LeanSnapshot:
        if self.task is None:
            raise RuntimeError("snapshot() before reset()")
        return LeanSnapshot(
            self.task, tuple(self._actions), tuple(self._tactics), tuple(self._ids), self._generation,
            self._last_observation, self._done, self.proved,
        )

    def restore(self, state: Any) -> str:
        """Back to a snapshot by its proof-state id (no REPL request while the process that made
        the ids lives; a replay after a restart)."""
        if not isinstance(state, LeanSnapshot):
            raise TypeError(f"LeanProofEnv.restore expects a LeanSnapshot, got {type(state).__name__}")
        self.task = state.task
        self._tactics = list(state.tactics)
        if state.generation == self.repl.restarts and self._generation == state.generation:
            self._ids = list(state.ids)
            self._goals = self._goals_at(state)
        else:
            self._replay()
        self.proved = state.proved
        self._options = {"task": state.task}
        self._actions = list(state.actions)
        self.turn = len(state.actions)
        self._done = state.done
        self._last_observation = state.observation
        return state.observation

    def _goals_at(self, state: LeanSnapshot) -> list[str]:
        obs = state.observation
        if "The goals are unchanged:\n" in obs:
            obs = obs.split("The goals are unchanged:\n", 1)[1]
        if obs.startswith("No goals"):
            return []
        m = re.match(r"^\d+ goals\n\n", obs)
        return obs[m.end():].split("\n\n") if m else [obs]


def make_prove_env(backend: str = "coq", **kwargs: Any) -> TextEnv:
    """``Prove-v0``: ``backend="coq"`` (default) builds :class:`CoqProofEnv`, ``backend="lean"``
    :class:`LeanProofEnv` (needs ``lean_project=`` or ``$PLYGROUND_LEAN_PROJECT``),
    ``backend="leandojo"`` :class:`~plyground.proving.leandojo.LeanDojoProofEnv` (needs
    ``lean-dojo`` and a Lean toolchain)."""
    if backend == "coq":
        return CoqProofEnv(**kwargs)
    if backend == "lean":
        return LeanProofEnv(**kwargs)
    if backend == "leandojo":
        from plyground.proving.leandojo import LeanDojoProofEnv

        return LeanDojoProofEnv(**kwargs)
    raise ValueError(f"unknown proving backend {backend!r}: choose one of {', '.join(BACKENDS)}")
