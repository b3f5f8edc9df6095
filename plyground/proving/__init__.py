"""Theorem proving backends: Coq (``coqtop``/``coqc``, runs here), the Lean 4 REPL protocol and
LeanDojo.

- :mod:`plyground.proving.coq`: ``CoqSession`` (step tactics, goals, backtracking, time limits,
  cheat refusal), ``CoqProofVerifier`` / ``verify_proof`` (``coqc`` + ``Print Assumptions``),
  ``check_theorem_file`` (many proofs, one ``coqc``) and the project's theorem set
  ``COQ_THEOREMS`` / ``load_coq_theorems`` (``data/coq_theorems.jsonl``: 170 theorems, difficulty
  1-5, arithmetic, booleans, lists, logic, induction, each with a reference proof).
- :mod:`plyground.proving.portfolio`: a scripted tactic portfolio (``PortfolioProposer``) for
  best-first search, ``prove_with_portfolio``.
- :mod:`plyground.proving.lean_repl`: ``LeanRepl`` (leanprover-community/repl JSON protocol over a
  subprocess) and ``load_minif2f_lean`` (miniF2F Lean 4 statements as Tasks).
- :mod:`plyground.proving.leandojo`: an adapter over the ``lean-dojo`` package (``Dojo``,
  ``TacticState`` ...), for machines with a Lean toolchain.

The env over them is ``Prove-v0`` (:mod:`plyground.envs.proving`; ``backend="coq"`` default,
``"lean"``, ``"leandojo"``); ``CoqProof-v0`` is its Coq alias.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
from collections.abc import Sequence
from typing import Any


def spawn(
    argv: Sequence[str], memory_limit_mb: int | None = None, **popen: Any
) -> subprocess.Popen[bytes]:
    """Start a prover in its own process group (so a kill reaches its children) with an
    ``RLIMIT_AS`` of ``memory_limit_mb`` MiB (None: unlimited).

    The limit is set with ``prlimit`` right after the start rather than in a ``preexec_fn``,
    which is unsafe in threaded programs (verifiers run in rollout threads)."""
    proc = subprocess.Popen(list(argv), start_new_session=True, **popen)
    if memory_limit_mb is not None:
        limit = memory_limit_mb * 1024 * 1024
        # OSError: it already exited (its output says why) or the platform refuses.
        with contextlib.suppress(OSError):
            resource.prlimit(proc.pid, resource.RLIMIT_AS, (limit, limit))
    return proc


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group of ``proc`` (started with ``spawn``), reap it, close its pipes."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    for stream in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()
