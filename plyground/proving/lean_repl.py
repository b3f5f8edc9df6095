"""``LeanRepl``: the Lean 4 REPL's JSON protocol over a subprocess, and a miniF2F loader.

The REPL (leanprover-community/repl, run as ``lake exe repl`` inside a Lean project) reads JSON
requests on stdin, each ended by a blank line, and answers each with one JSON object (pretty
printed over several lines) followed by a blank line. Requests:

- command mode: ``{"cmd": "theorem t : 1 + 1 = 2 := by sorry", "env": 3}`` (no ``env``: a fresh
  environment, where ``import`` is allowed) -> ``{"env": 4, "messages": [...], "sorries": [...]}``,
  each sorry carrying a ``proofState`` id and its ``goal``;
- tactic mode: ``{"tactic": "intro x", "proofState": 0}`` -> ``{"proofState": 1, "goals": [...],
  "proofStatus": "...", "messages": [...]}``;
- files and pickles: ``{"path": ..., "allTactics": true}``, ``{"pickleTo": ..., "env": n}``,
  ``{"unpickleEnvFrom": ...}``, ...;
- an unusable request is answered ``{"message": "Unknown environment."}``.

Ids are only meaningful inside one REPL process: backtracking is reusing an older id. After a
time-out or a crash :class:`LeanRepl` starts a fresh process (``restarts`` counts them) and
raises :class:`LeanReplTimeout` / :class:`LeanReplCrashed`, so the caller knows every id it held
is gone and replays what it needs.

No Lean toolchain can be installed on the machines this project is built on (it downloads from
GitHub); the protocol layer is tested against the REPL's own recorded transcripts through a
stand-in process, and against a real REPL where ``lean`` is on PATH.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plyground.errors import EnvError, MissingComponentError
from plyground.proving import kill_group, spawn
from plyground.types import Task

LEAN_PROJECT_ENV = "PLYGROUND_LEAN_PROJECT"
"""The environment variable that names the Lean 4 project (with the REPL built) when no path is given."""
LEAN_CHEATS = ("sorry", "admit", "native_decide", "sorryAx")
"""Tactics and terms that close a goal without proving it."""

DEFAULT_COMMAND = ("lake", "exe", "repl")
LEAN_INSTALL = "elan (https://github.com/leanprover/elan), then `lake build` in a checkout of leanprover-community/repl"


class LeanReplError(EnvError):
    """The REPL process failed (not a Lean error in the proof: those come back in ``messages``)."""


class LeanReplTimeout(LeanReplError):
    """A request ran past its time limit; the process was killed and restarted."""


class LeanReplCrashed(LeanReplError):
    """The process died or answered garbage; it was restarted."""


@dataclass
class ReplResponse:
    """One REPL answer, with the fields plyground reads pulled out (``raw`` keeps all of it)."""

    raw: dict[str, Any]
    env: int | None = None
    proof_state: int | None = None
    goals: list[str] | None = None
    proof_status: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    sorries: list[dict[str, Any]] = field(default_factory=list)
    message: str | None = None
    """The top-level ``message`` of an answer to an unusable request (``"Unknown environment."``)."""

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> ReplResponse:
        goals = raw.get("goals")
        return cls(
            raw=raw,
            env=raw.get("env"),
            proof_state=raw.get("proofState"),
            goals=list(goals) if isinstance(goals, list) else None,
            proof_status=raw.get("proofStatus"),
            messages=list(raw.get("messages") or []),
            sorries=list(raw.get("sorries") or []),
            message=raw.get("message") if isinstance(raw.get("message"), str) else None,
        )

    @property
    def errors(self) -> list[str]:
        """The text of every error: the request's own ``message`` and error-severity messages."""
        out = [self.message] if self.message else []
        out += [str(m.get("data", "")) for m in self.messages if m.get("severity") == "error"]
        return out

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def proof_complete(self) -> bool:
        """A tactic answer whose goals are all closed, without errors (or sorries on newer REPLs)."""
        if not self.ok or self.goals is None or self.goals:
            return False
        return self.proof_status is None or self.proof_status == "Completed"


class LeanRepl:
    """A REPL subprocess. ``request(payload)`` sends one JSON request and returns the answer.

    - ``command``: the argv that starts the REPL (default ``lake exe repl``; kept as ``argv``), run
      in ``cwd`` (the user's Lean project, where ``lake`` finds the REPL and Mathlib).
    - ``timeout_s``: the default per-request limit; past it the process group is killed,
      a fresh one started, and :class:`LeanReplTimeout` raised.
    - ``memory_limit_mb``: ``RLIMIT_AS`` of the process (None: unlimited). Lean memory-maps its
      ``.olean`` files, which counts towards it: Mathlib needs several GiB.
    - ``startup_timeout_s``: an ``import Mathlib`` is slow, so the first command gets this limit.
    """

    def __init__(
        self,
        command: Sequence[str] = DEFAULT_COMMAND,
        cwd: str | os.PathLike[str] | None = None,
        timeout_s: float = 60.0,
        memory_limit_mb: int | None = 16_384,
        env: dict[str, str] | None = None,
        startup_timeout_s: float = 600.0,
    ) -> None:
        self.argv = list(command)
        self.cwd = Path(cwd) if cwd is not None else None
        self.timeout_s = timeout_s
        self.memory_limit_mb = memory_limit_mb
        self.env = env
        self.startup_timeout_s = startup_timeout_s
        self.restarts = 0
        self.requests = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._fresh = True

    # -- process lifetime ------------------------------------------------------------------------
    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        exe = self.argv[0]
        if shutil.which(exe) is None and not Path(exe).exists():
            raise MissingComponentError(f"Lean REPL ({exe})", LEAN_INSTALL)
        self._buffer = b""
        self._fresh = True
        self._proc = spawn(
            self.argv,
            self.memory_limit_mb,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            kill_group(proc)

    def restart(self) -> None:
        if self._proc is not None:
            kill_group(self._proc)
            self._proc = None
        self.restarts += 1
        self.start()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> LeanRepl:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            kill_group(proc)

    # -- the protocol --------------------------------------------------------------------------
    def request(self, payload: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Send one request and return the REPL's JSON answer as a dict."""
        self.start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        if timeout_s is None:
            timeout_s = self.startup_timeout_s if self._fresh else self.timeout_s
        self.requests += 1
        data = (json.dumps(payload, ensure_ascii=False) + "\n\n").encode()
        try:
            proc.stdin.write(data)
            proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            self.restart()
            raise LeanReplCrashed(f"the Lean REPL died before the request ({exc}); restarted") from exc
        try:
            text = self._read_block(time.monotonic() + timeout_s)
        except TimeoutError:
            self.restart()
            raise LeanReplTimeout(f"the Lean REPL took over {timeout_s:g} s; killed and restarted") from None
        except EOFError:
            code = proc.poll()
            self.restart()
            raise LeanReplCrashed(f"the Lean REPL exited (code {code}); restarted") from None
        self._fresh = False
        try:
            answer = json.loads(text)
        except json.JSONDecodeError as exc:
            self.restart()
            raise LeanReplCrashed(f"the Lean REPL answered non-JSON {text[:200]!r}; restarted") from exc
        if not isinstance(answer, dict):
            raise LeanReplCrashed(f"the Lean REPL answered {type(answer).__name__}, not an object")
        return answer

    def _read_block(self, deadline: float) -> str:
        """Read up to the blank line that ends one answer (leading blank lines are skipped)."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                self._buffer = self._buffer.lstrip(b"\r\n")
                end = _block_end(self._buffer)
                if end is not None:
                    block, self._buffer = self._buffer[: end[0]], self._buffer[end[1]:]
                    return block.decode("utf-8", errors="replace")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                if not sel.select(left):
                    raise TimeoutError
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    if self._buffer.strip():  # a last answer without its blank line
                        block, self._buffer = self._buffer, b""
                        return block.decode("utf-8", errors="replace")
                    raise EOFError
                self._buffer += chunk

    def run(self, payload: dict[str, Any], timeout_s: float | None = None) -> ReplResponse:
        return ReplResponse.parse(self.request(payload, timeout_s))

    def command(self, cmd: str, env: int | None = None, all_tactics: bool = False, timeout_s: float | None = None) -> ReplResponse:
        payload: dict[str, Any] = {"cmd": cmd}
        if env is not None:
            payload["env"] = env
        if all_tactics:
            payload["allTactics"] = True
        return self.run(payload, timeout_s)

    def tactic(self, tactic: str, proof_state: int, timeout_s: float | None = None) -> ReplResponse:
        return self.run({"tactic": tactic, "proofState": proof_state}, timeout_s)

    def file(self, path: str | os.PathLike[str], all_tactics: bool = False, timeout_s: float | None = None) -> ReplResponse:
        payload: dict[str, Any] = {"path": str(path)}
        if all_tactics:
            payload["allTactics"] = True
        return self.run(payload, timeout_s)

    def check_proof(self, statement: str, proof: str, header: str = "", timeout_s: float | None = None) -> ReplResponse:
        """Run ``header`` (imports) and ``statement`` + ``proof`` as one fresh command."""
        text = f"{header.rstrip()}\n\n{statement.rstrip()} {proof.strip()}" if header.strip() else f"{statement.rstrip()} {proof.strip()}"
        return self.command(text, timeout_s=timeout_s)


def _block_end(buffer: bytes) -> tuple[int, int] | None:
    """Where the first blank line in ``buffer`` starts and ends, if there is one."""
    m = re.search(rb"\r?\n[ \t]*\r?\n", buffer)
    return (m.start(), m.end()) if m else None


# -- transcripts ------------------------------------------------------------------------------
def split_blocks(text: str, join_lines: bool = False) -> list[str]:
    """The blank-line-separated blocks of a ``.in`` / ``.expected.out`` file.

    ``join_lines=True`` reads a block as the REPL reads a request: its lines are concatenated
    without their line breaks (upstream's ``invalid_line_break`` case records that a raw line
    break inside a JSON string vanishes: ``by`` + newline + ``sorry`` reads ``bysorry``)."""
    blocks: list[str] = []
    current: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.strip():
            current.append(line.rstrip("\r\n") if join_lines else line)
        elif current:
            blocks.append("".join(current))
            current = []
    if current:
        blocks.append("".join(current))
    return blocks


def read_transcript(in_path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The requests of ``NAME.in`` (read as the REPL reads them) and the answers of
    ``NAME.expected.out`` beside it (empty when there is none)."""
    in_path = Path(in_path)
    out_path = in_path.with_name(in_path.name[: -len(".in")] + ".expected.out")
    requests = [json.loads(b) for b in split_blocks(in_path.read_text(encoding="utf-8"), join_lines=True)]
    answers = [json.loads(b) for b in split_blocks(out_path.read_text(encoding="utf-8"))] if out_path.exists() else []
    return requests, answers


# -- miniF2F (Lean 4) ---------------------------------------------------------------------------
_THEOREM_RE = re.compile(r"^(theorem|lemma)\s+(\S+)", re.MULTILINE)
_SORRY_TAIL_RE = re.compile(r":=\s*by\s+sorry\s*$|:=\s*sorry\s*$")


def parse_lean_statement(text: str, name: str | None = None) -> tuple[str, str, str]:
    """(header, statement, name) of one miniF2F file: the header is everything before the
    theorem (imports, options, ``open``); the statement runs to ``:=`` (the ``by sorry`` dropped)."""
    m = _THEOREM_RE.search(text)
    if m is None:
        raise ValueError("no theorem in the file")
    header = text[: m.start()].strip()
    body = text[m.start():].strip()
    body = _SORRY_TAIL_RE.sub("", body).rstrip()
    return header, body + " :=", name or m.group(2)


def load_minif2f_lean(path: str | os.PathLike[str], split: str | None = None) -> list[Task]:
    """miniF2F's Lean 4 statements (yangky11/miniF2F-lean4 layout: ``<split>/<name>.lean``, or a
    folder of ``.lean`` files) as Tasks sorted by id.

    ``Task.prompt`` is the statement up to and including ``:=``; a proof is what follows it (e.g.
    ``by norm_num``). ``metadata`` holds ``header`` (imports and ``open`` lines to run first),
    ``split`` and ``file``. ``split`` picks ``"test"`` or ``"valid"``; None loads every split found.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no miniF2F folder at {root}")
    if split is not None:
        folders = [(split, root / split)]
    else:
        subs = sorted(p for p in root.iterdir() if p.is_dir())
        folders = [(p.name, p) for p in subs] if subs else [("", root)]
    tasks: list[Task] = []
    for split_name, folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"no split {split_name!r} under {root}")
        for file in sorted(folder.glob("*.lean")):
            header, statement, name = parse_lean_statement(file.read_text(encoding="utf-8"), file.stem)
            tasks.append(
                Task(
                    id=f"{split_name}/{name}" if split_name else name,
                    prompt=statement,
                    metadata={"header": header, "split": split_name, "file": file.name, "name": name, "language": "lean4"},
                )
            )
    return tasks


def iter_transcripts(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Every ``NAME.in`` under ``folder`` that has a ``NAME.expected.out`` (upstream skips the rest)."""
    for p in sorted(Path(folder).rglob("*.in")):
        if p.with_name(p.name[: -len(".in")] + ".expected.out").exists():
            yield p


def check_lean_tactic(action: str) -> tuple[str, str | None]:
    """``(tactic, None)`` or ``("", reason)``: cheats and commands are refused before the REPL."""
    text = action.strip()
    fence = re.search(r"```(?:lean4?|lean)?\s*\n(.*?)```", text, re.DOTALL)
    if fence:
        text = fence.group(1).strip()
    if not text:
        return "", "empty tactic"
    words = set(re.findall(r"[A-Za-z_][\w'.]*", text))
    for bad in LEAN_CHEATS:
        if bad in words:
            return "", f"{bad!r} is not allowed: it closes the goal without proving it"
    if re.match(r"^\s*(theorem|lemma|def|axiom|example|import|open|#|set_option|namespace|end)\b", text):
        return "", "a command, not a tactic: send one tactic"
    return text, None
