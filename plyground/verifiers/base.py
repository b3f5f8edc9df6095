"""The ``Verifier`` protocol: judge one response to one task.

A verifier is the reward side of an env or an eval: ``verify(task, response) -> Verdict``. Every
implementation keeps four promises, because verifiers run on untrusted model output, many at once:

- **pure**: the verdict depends only on ``task`` and ``response`` (no hidden state, no I/O that
  changes the answer), so scoring can be cached and repeated;
- **thread-safe**: one instance is shared by the workers of a rollout;
- **never raises on model output**: a response it cannot read is a wrong answer
  (``correct=False``); a check that itself failed (bad gold answer, time limit) sets
  ``Verdict.error``. Exceptions are for programming errors only;
- **time-limited**: it bounds its own work (input length, a deadline) and reports ``elapsed_s``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from plyground.types import Task, Verdict


@runtime_checkable
class Verifier(Protocol):
    """Anything that turns (task, response) into a ``Verdict``; see the module docstring."""

    def verify(self, task: Task, response: str) -> Verdict:
        ...
