"""Errors, one class per boundary.

A failure belongs to exactly one boundary: the registry (an unknown name), an environment, a
backend (inference), a verifier, or the token bookkeeping of the rollout. Inside a rollout a
failure is recorded on the trajectory (``Trajectory.error = "<boundary>: <message>"``) and the
batch goes on; only at the front door (CLI) does a fatal one become a non-zero exit.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PlygroundError(Exception):
    """Base class of every error plyground raises on purpose."""

    boundary = "plyground"

    def tag(self) -> str:
        return f"{self.boundary}: {self}"


class UnknownNameError(PlygroundError, KeyError):
    """A name (env id, backend, algorithm) that is not registered; suggests the closest ones."""

    boundary = "registry"

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.7)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(known) if known else "(none registered)"
        self.message = f"Unknown {kind} {name!r}.{hint} Known: {listing}."
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.message


class EnvError(PlygroundError):
    """An environment failed inside reset/step (a bug or a dead component, not a bad action)."""

    boundary = "env"


class MissingComponentError(EnvError):
    """A real component an env needs (browser, engine, server) is not installed."""

    def __init__(self, component: str, install: str) -> None:
        super().__init__(f"{component} is not available. Install it with: {install}")


class BackendError(PlygroundError):
    """Inference failed: a server that is down, a timeout, a bad response."""

    boundary = "backend"


class TokenMismatchError(PlygroundError):
    """The accumulated token ids disagree with the tokenizer's rendering of the chat."""

    boundary = "tokens"


class VerifierError(PlygroundError):
    """A verifier could not reach a judgement (it is reported in ``Verdict.error``)."""

    boundary = "verifier"
