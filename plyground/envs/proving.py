"""``CoqProof-v0``: prove a Coq theorem one tactic at a time (a BFS-Prover style step prover env).

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
built-in ``COQ_THEOREMS``; ``reset(options={"task": task})`` picks one (a Task, its dict, or an id
of the env's tasks), else the seeded generator does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plyground.envs.core import TextEnv
from plyground.proving.coq import COQ_THEOREMS, DEFAULT_HEADER, CoqError, CoqSession, find_coq, proof_script
from plyground.types import Task

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
    ) -> None:
        super().__init__(render_mode=render_mode)
        find_coq("coqtop")  # MissingComponentError("Coq", "apt-get install coq") before anything starts
        find_coq("coqc")
        self.tasks = list(tasks) if tasks is not None else list(COQ_THEOREMS)
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
