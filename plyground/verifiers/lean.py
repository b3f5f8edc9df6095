"""``LeanProofVerifier``: check a Lean 4 proof of a task's theorem through the Lean REPL.

``task.prompt`` is a Lean 4 theorem statement up to ``:=`` (miniF2F style, as
:func:`~plyground.proving.lean_repl.load_minif2f_lean` builds them), ``task.metadata["header"]``
the imports and options to run first (default ``LeanProofVerifier.header``, ``import Mathlib``).
The response is the proof: what follows ``:=`` (``by norm_num``, a term), taken from the first
```` ```lean ```` fence when there is one. A response that restates the task's theorem (the same
statement, whitespace aside) is read from after its ``:=``.

A check, through one :class:`~plyground.proving.lean_repl.LeanRepl` process (leanprover-community/repl):

1. refusals before Lean sees anything: a response over ``max_chars``, ``sorry``/``admit``/
   ``native_decide``/``sorryAx`` (the Lean env's own refusal, ``check_lean_tactic``), and any
   command in the proof (``theorem``, ``axiom``, ``#eval``, ``set_option`` without ``in`` ...:
   a proof is one term or tactic block after the task's ``:=``);
2. the header runs once per REPL process (its environment id is cached and reused for every
   check, so ``import Mathlib`` is paid once); after a restart it runs again;
3. ``statement proof`` runs in that environment: correct only when no message has severity
   ``error``, there is no sorry (neither in ``sorries`` nor a "declaration uses sorry" warning)
   and ``#print axioms NAME`` finds the theorem under its own name, using no axiom beyond
   ``propext``, ``Classical.choice``, ``Quot.sound`` and the allowed ones (so ``sorryAx`` and
   ``Lean.ofReduceBool`` fail).

The four promises of :mod:`plyground.verifiers.base`:

- pure: every proof runs in the header's environment, never in one a previous proof made;
- thread-safe: ``processes`` REPLs (default 1), each used by one call at a time; other calls wait;
- never raises on model output: a REPL time-out, crash, a missing REPL or Lean project give a
  Verdict with ``error`` set (a missing one names the install); a crash is retried once on a
  fresh process;
- time-limited: ``timeout_s`` bounds one check (the proof and the axiom query), past it the REPL
  is killed and restarted and the Verdict says "timed out after N s"; the header has its own
  ``header_timeout_s`` (importing Mathlib takes minutes on a cold cache).
"""

from __future__ import annotations

import os
import queue
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from plyground.errors import MissingComponentError
from plyground.proving.lean_repl import (
    DEFAULT_COMMAND,
    LEAN_INSTALL,
    LEAN_PROJECT_ENV,
    LeanRepl,
    LeanReplCrashed,
    LeanReplError,
    LeanReplTimeout,
    ReplResponse,
    check_lean_tactic,
    parse_lean_statement,
)
from plyground.types import Task, Verdict

STANDARD_AXIOMS = ("propext", "Classical.choice", "Quot.sound")
"""The axioms every classical Mathlib proof may use."""

# A command at the start of a line: a proof is one term or tactic block, it declares nothing.
# ``open ... in`` and ``set_option ... in`` scope a tactic and are allowed.
_COMMAND_RE = re.compile(
    r"^[ \t]*(?:@\[|#[A-Za-z_]"
    r"|(?:private|protected|noncomputable|partial|unsafe)\s"
    r"|(?:theorem|lemma|def|abbrev|axiom|axioms|example|instance|opaque|structure|class|inductive"
    r"|mutual|macro|macro_rules|elab|elab_rules|syntax|notation|infix|infixl|infixr|prefix|postfix"
    r"|attribute|namespace|section|end|universe|variable|import|run_cmd|run_elab|run_meta"
    r"|initialize|builtin_initialize|export|local|scoped|declare_syntax_cat|add_decl_doc)\b"
    r"|(?:open|set_option)\b(?![^\n]*\bin\b))",
    re.MULTILINE,
)
_DEBUG_OPTION_RE = re.compile(r"\bdebug\.[\w.]+")
_AXIOMS_RE = re.compile(r"depends on axioms:\s*\[(.*?)\]", re.DOTALL)


def lean_proof_text(task_statement: str, response: str) -> tuple[str, str | None]:
    """``(proof, None)``: what to put after the statement's ``:=``, or ``("", reason)`` for a
    response refused before it reaches Lean."""
    source = response
    tokens = task_statement.split()
    if tokens:  # the response restates the task's theorem: the proof is what follows it
        restated = re.search(r"\s+".join(map(re.escape, tokens)), response)
        if restated is not None:
            source = response[restated.end():]
            fence_end = source.find("```")
            source = source[:fence_end] if fence_end >= 0 else source
    text, reason = check_lean_tactic(source)
    if reason is not None:
        if "command" in reason:
            return "", "the response is a Lean command, not a proof (a restated theorem must keep the task's statement and name)"
        return "", reason.replace("empty tactic", "empty proof")
    if text.startswith(":="):
        text = text[2:].strip()
    if not text:
        return "", "empty proof"
    command = _COMMAND_RE.search(text)
    if command is not None:
        return "", f"the proof contains a command ({command.group(0).strip()!r}): send only the proof after ':='"
    option = _DEBUG_OPTION_RE.search(text)
    if option is not None:
        return "", f"the option {option.group(0)} is not allowed"
    return text, None


def used_axioms(answer: ReplResponse) -> list[str]:
    """The axioms a ``#print axioms NAME`` answer lists (empty: it depends on none)."""
    text = "\n".join(str(m.get("data", "")) for m in answer.messages)
    m = _AXIOMS_RE.search(text)
    if m is None:
        return []
    return [name.strip() for name in m.group(1).split(",") if name.strip()]


class _Timeout(Exception):
    """One check ran past its limit (the REPL was killed and restarted)."""


@dataclass
class _Slot:
    repl: LeanRepl | None = None
    envs: dict[str, int | None] = field(default_factory=dict)  # header -> environment id
    failed: dict[str, str] = field(default_factory=dict)  # header -> why it failed, not rerun
    generation: int = -1  # repl.restarts when ``envs`` and ``failed`` were filled
    checks: int = 0


@dataclass
class LeanProofVerifier:
    """``verify(task, response)``: ``task.prompt`` is a Lean 4 theorem statement (up to ``:=``),
    the response its proof; checked by the Lean REPL (see the module docstring).

    - ``command``: the argv that starts the REPL (default ``lake exe repl``), run in ``project``
      (a Lean 4 project with the REPL, and Mathlib for miniF2F; default ``$PLYGROUND_LEAN_PROJECT``,
      required with the default command);
    - ``header``: the imports when ``task.metadata`` has no ``"header"``;
    - ``timeout_s``: the limit on one check; ``header_timeout_s`` the limit on a header;
    - ``allowed_axioms``: axioms allowed besides ``STANDARD_AXIOMS`` (also
      ``task.metadata["allowed_axioms"]``); ``check_axioms=False`` skips ``#print axioms``;
    - ``processes``: how many REPL processes serve concurrent calls (each holds the header's
      environment: several GiB with Mathlib); ``max_wait_s``: how long a call waits for a free
      one before it is answered with an error;
    - ``recycle_after``: a REPL keeps every environment it made, so after this many checks its
      process is replaced by a fresh one (None: never).
    """

    command: Sequence[str] = DEFAULT_COMMAND
    project: str | os.PathLike[str] | None = None
    header: str = "import Mathlib"
    timeout_s: float = 60.0
    header_timeout_s: float = 600.0
    max_chars: int = 20_000
    memory_limit_mb: int | None = 16_384
    check_axioms: bool = True
    allowed_axioms: tuple[str, ...] = ()
    processes: int = 1
    max_wait_s: float = 600.0
    recycle_after: int | None = 1000
    _slots: queue.Queue[_Slot] = field(init=False, repr=False, compare=False)
    _all: list[_Slot] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.processes < 1:
            raise ValueError("processes must be at least 1")
        self._all = [_Slot() for _ in range(self.processes)]
        self._slots = queue.Queue()
        for slot in self._all:
            self._slots.put(slot)

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every REPL process (a later ``verify`` starts them again)."""
        for slot in self._all:
            if slot.repl is not None:
                slot.repl.close()

    def __enter__(self) -> LeanProofVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _repl(self, slot: _Slot) -> LeanRepl:
        if slot.repl is not None and self.recycle_after is not None and slot.checks >= self.recycle_after:
            slot.repl.close()
            slot.repl, slot.checks = None, 0
        if slot.repl is None:
            chosen = self.project if self.project is not None else os.environ.get(LEAN_PROJECT_ENV) or None
            if chosen is None and tuple(self.command) == DEFAULT_COMMAND:
                raise MissingComponentError(
                    "Lean project",
                    f"pass project=PATH to LeanProofVerifier or set {LEAN_PROJECT_ENV}=PATH: a Lean 4 project where "
                    f"`lake exe repl` runs (install {LEAN_INSTALL}; add Mathlib for miniF2F)",
                )
            if chosen is not None and not Path(chosen).expanduser().is_dir():
                raise MissingComponentError(f"Lean project ({chosen} is not a folder)", f"a Lean 4 project with the REPL ({LEAN_INSTALL})")
            slot.repl = LeanRepl(
                self.command,
                cwd=Path(chosen).expanduser() if chosen is not None else None,
                timeout_s=self.timeout_s,
                memory_limit_mb=self.memory_limit_mb,
                startup_timeout_s=self.header_timeout_s,
            )
            slot.envs, slot.generation = {}, -1
        return slot.repl

    # -- the check -------------------------------------------------------------------------------
    def verify(self, task: Task, response: str) -> Verdict:
        start = time.perf_counter()

        def verdict(correct: bool, reason: str, error: str | None = None) -> Verdict:
            return Verdict(1.0 if correct else 0.0, correct, reason, error, time.perf_counter() - start)

        try:
            _, _, name = parse_lean_statement(task.prompt)  # the name the statement declares
        except ValueError as exc:
            return verdict(False, "bad task", f"the task prompt is not a Lean theorem statement: {exc}")
        statement = task.prompt.rstrip()
        if not statement.endswith(":="):
            statement += " :="
        if len(response) > self.max_chars:
            return verdict(False, f"proof longer than {self.max_chars} characters")
        proof, reason = lean_proof_text(task.prompt, response)
        if reason is not None:
            return verdict(False, reason)
        try:
            proof.encode("utf-8")
        except UnicodeEncodeError:
            return verdict(False, "the proof is not valid Unicode (lone surrogates)")
        header = str(task.metadata.get("header", self.header))
        allowed = set(STANDARD_AXIOMS) | set(self.allowed_axioms) | set(task.metadata.get("allowed_axioms", ()))

        try:
            slot = self._slots.get(timeout=self.max_wait_s)
        except queue.Empty:
            why = f"waited {self.max_wait_s:g} s for a free Lean REPL process"
            return verdict(False, "every Lean REPL process is busy", why)
        try:
            for attempt in (1, 2):  # a crash restarted the REPL: once more on the fresh process
                try:
                    correct, why = self._check(slot, header, f"{statement} {proof}", name, allowed)
                    return verdict(correct, why)
                except _Timeout:
                    return verdict(False, f"Lean timed out after {self.timeout_s:g} s", f"timed out after {self.timeout_s:g} s")
                except LeanReplTimeout:  # the header
                    return verdict(False, "the header timed out", f"the header timed out after {self.header_timeout_s:g} s")
                except LeanReplCrashed as exc:
                    if attempt == 2:
                        return verdict(False, "the Lean REPL crashed", str(exc))
                except _HeaderFailed as exc:
                    return verdict(False, "the header failed", str(exc))
                except (MissingComponentError, LeanReplError, OSError) as exc:
                    return verdict(False, "the Lean REPL is unavailable", str(exc))
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            self._slots.put(slot)

    def _env_id(self, slot: _Slot, repl: LeanRepl, header: str) -> int | None:
        """The environment id of ``header`` in this REPL process (run once, then cached)."""
        if slot.generation != repl.restarts:
            slot.envs, slot.failed, slot.generation = {}, {}, repl.restarts
        if not header.strip():
            return None
        if header in slot.failed:  # the same header fails the same way: not run again
            raise _HeaderFailed(slot.failed[header])
        if header not in slot.envs:
            answer = repl.command(header, timeout_s=self.header_timeout_s)
            if not answer.ok or answer.env is None:
                slot.failed[header] = f"the header failed: {'; '.join(answer.errors)[:500] or answer.raw}"
                raise _HeaderFailed(slot.failed[header])
            slot.envs[header] = answer.env
        return slot.envs[header]

    def _check(self, slot: _Slot, header: str, source: str, name: str, allowed: set[str]) -> tuple[bool, str]:
        repl = self._repl(slot)
        env = self._env_id(slot, repl, header)
        slot.checks += 1
        deadline = time.monotonic() + self.timeout_s
        try:
            answer = repl.command(source, env=env, timeout_s=self.timeout_s)
        except LeanReplTimeout:
            raise _Timeout from None
        if answer.message:  # the request itself was refused (a stale environment id ...): rebuild
            slot.envs = {}
            raise LeanReplCrashed(f"the Lean REPL refused the request: {answer.message}")
        errors = answer.errors
        if errors:
            return False, "Lean rejected the proof: " + "; ".join(errors)[:1000]
        if answer.sorries or any("sorry" in str(m.get("data", "")) for m in answer.messages):
            return False, "the proof uses sorry"
        if answer.env is None:
            raise LeanReplCrashed(f"the Lean REPL answered without an environment: {str(answer.raw)[:200]}")
        if not self.check_axioms:
            return True, "proof checked by the Lean REPL"
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Timeout
        try:
            axioms = repl.command(f"#print axioms {name}", env=answer.env, timeout_s=left)
        except LeanReplTimeout:
            raise _Timeout from None
        if not axioms.ok:
            return False, f"the theorem {name} is not declared under its name: " + "; ".join(axioms.errors)[:500]
        extra = sorted(set(used_axioms(axioms)) - allowed)
        if extra:
            return False, f"the proof depends on axioms: {', '.join(extra)}"
        return True, "proof checked by the Lean REPL; no axioms beyond the standard ones"


class _HeaderFailed(Exception):
    """The task's header did not elaborate (a bad task or project, not a wrong proof)."""
