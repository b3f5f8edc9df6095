"""Coq as a proving backend: ``CoqSession`` steps tactics in ``coqtop``, ``CoqProofVerifier``
checks a whole proof with ``coqc``.

``coqtop -quiet -emacs`` (Coq 8.16, Debian's ``coq`` package) is driven one sentence per line.
After every sentence it prints the sentence's output (goals on stdout, errors on stderr; both
are read from one pipe) and then a prompt ``<prompt>name < N |name| 0 < </prompt>`` whose ``N``
is the id of the document state, which ``BackTo N.`` returns to. So:

- a step is one tactic sentence; the answer is everything up to the next prompt;
- goals are read from the answer (``Show.`` is sent when a tactic printed none), ``No more
  goals.`` means the proof is complete; ``(ID n)`` tags are dropped so that a state reads the same
  however it was reached;
- an erroring tactic leaves the state where it was (Coq does not advance);
- a snapshot is the list of accepted tactics; ``goto(tactics)`` backtracks with ``BackTo`` to the
  longest common prefix and replays the rest, so a search moving between siblings pays one
  round trip;
- a step over its time limit kills the process group, starts a fresh ``coqtop`` and replays the
  statement and the accepted tactics (:class:`CoqTimeout` tells the caller it happened);
- cheats are refused before they reach Coq: ``admit``, ``give_up``, ``Admitted``, ``Abort`` and
  every vernacular command (``Axiom``, ``Parameter``, ``Qed``, ``Require`` ...: an action is one
  tactic), bullets and braces (tactics act on the first goal, or use selectors like ``all:``),
  comments and more than one sentence. A complete proof is closed with ``Qed.`` in the session
  and ``Print Assumptions`` must list no axiom the task did not allow.

``CoqProofVerifier`` writes header + statement + ``Proof.`` + response + ``Qed.`` + ``Print
Assumptions`` to a file and runs ``coqc`` in a temporary folder, with a time limit.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from plyground.errors import EnvError, MissingComponentError
from plyground.proving import kill_group, spawn
from plyground.types import Task, Verdict

COQ_INSTALL = "apt-get install coq"
DEFAULT_HEADER = "Require Import Arith Lia List Bool.\nImport ListNotations."

_PROMPT_RE = re.compile(r"<prompt>(\S+) < (\d+) \|[^|]*\| \d+ < </prompt>")
_ID_RE = re.compile(r"\s*\(ID \d+\)")
_TAG_RE = re.compile(r"</?(infomsg|warning|prompt)>")
_GOALS_RE = re.compile(r"^(\d+ goals?|No more goals\.)", re.MULTILINE)
_SENTENCE_END_RE = re.compile(r"\.(\s|$)")
_THEOREM_RE = re.compile(r"^\s*(Theorem|Lemma|Example|Fact|Remark|Corollary|Proposition)\s+([A-Za-z_][\w']*)", re.MULTILINE)

# Tactics that close a goal without proving it.
CHEAT_TACTICS = ("admit", "give_up", "Admitted", "Abort", "Admit")
# Vernacular a proof may not contain (checked as whole words in the verifier).
FORBIDDEN_COMMANDS = (
    "Admitted", "Abort", "Admit", "Axiom", "Axioms", "Parameter", "Parameters", "Conjecture", "Conjectures",
    "Hypothesis", "Hypotheses", "Variable", "Variables", "Context", "Declare", "Require", "Import", "Export",
    "Load", "Add", "Set", "Unset", "Local", "Global", "Qed", "Defined", "Save", "Theorem", "Lemma",
    "Definition", "Fixpoint", "CoFixpoint", "Example", "Fact", "Remark", "Corollary", "Proposition",
    "Program", "Module", "Section", "End", "Reset", "Back", "BackTo", "Undo", "Restart", "Drop", "Extract",
    "Extraction", "Instance", "Existing", "Obligation", "Next", "Inductive", "CoInductive", "Record",
    "Structure", "Class", "Notation", "Infix", "Ltac", "Tactic", "Hint", "Opaque", "Transparent",
    "Arguments", "Canonical", "Coercion", "Goal", "Focus", "Unfocus", "Print", "Redirect", "Timeout",
)
# Uppercase words that may start a tactic sentence.
ALLOWED_COMMANDS = ("Unshelve",)


class CoqError(EnvError):
    """``coqtop`` failed (it died, or a restart could not rebuild the state)."""


class CoqTimeout(CoqError):
    """A sentence ran past its time limit; coqtop was killed, restarted and the state replayed."""


def find_coq(program: str = "coqtop") -> str:
    """The path of ``program`` (``coqtop`` or ``coqc``); MissingComponentError if Coq is absent."""
    path = shutil.which(program)
    if path is None:
        raise MissingComponentError("Coq", COQ_INSTALL)
    return path


def coq_available() -> bool:
    return shutil.which("coqtop") is not None and shutil.which("coqc") is not None


def theorem_name(statement: str) -> str:
    m = _THEOREM_RE.search(statement)
    if m is None:
        raise ValueError(f"not a Coq theorem statement: {statement[:80]!r}")
    return m.group(2)


def normalise_goals(text: str) -> str:
    """Goals without ``(ID n)`` tags, trailing spaces and blank-line runs: a stable state key."""
    text = _ID_RE.sub("", text)
    lines = [line.rstrip() for line in text.strip().splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def check_tactic(action: str) -> tuple[str, str | None]:
    """``(sentence, None)`` for an acceptable one-tactic action (whitespace collapsed, ending in a
    period), else ``("", reason)``: nothing reaches Coq that could stall its reader, close or
    abandon the proof, or add an axiom."""
    text = " ".join(action.split())
    if text.endswith("."):
        text = text[:-1].rstrip()
    if not text:
        return "", "empty tactic"
    if "(*" in text or "*)" in text:
        return "", "comments are not allowed in a tactic"
    if text.count('"') % 2:
        return "", "unterminated string"
    if _SENTENCE_END_RE.search(text) or text.endswith("."):
        return "", "one tactic per step: the action holds more than one sentence"
    if text[0] in "-+*{}":
        return "", "bullets and braces are not supported: tactics act on the first goal (use all: / n: selectors)"
    words = re.findall(r"[A-Za-z_][\w']*", text)
    for word in words:
        if word in CHEAT_TACTICS:
            return "", f"{word!r} is not allowed: it gives up on the goal instead of proving it"
    first = words[0] if words and text[0].isalpha() else ""
    if first[:1].isupper() and first not in ALLOWED_COMMANDS:
        return "", f"{first!r} is a command, not a tactic: send one tactic (e.g. intros, simpl, lia)"
    return text + ".", None


@dataclass
class CoqResult:
    """What one sentence did."""

    ok: bool
    goals: str = ""
    complete: bool = False
    error: str | None = None
    output: str = ""
    elapsed_s: float = 0.0
    timed_out: bool = False


@dataclass
class _Frame:
    tactic: str
    state_id: int
    goals: str


def _error_text(output: str) -> str | None:
    """The ``Error: ...`` part of an answer (with the location header dropped), if any."""
    m = re.search(r"^Error:", output, re.MULTILINE)
    if m is None:
        return None
    return " ".join(output[m.start():].split()) if len(output) - m.start() < 2000 else output[m.start(): m.start() + 2000]


class CoqSession:
    """One ``coqtop`` proving one theorem at a time.

    ``header`` (imports, definitions the statements use) is loaded once per process with ``-l``;
    ``begin(statement)`` starts a proof (backtracking over the previous one), ``step(tactic)``
    runs one tactic, ``goto(tactics)`` moves to the state after a tactic list, ``qed()`` closes a
    complete proof and checks its assumptions. ``timeout_s`` bounds each sentence.
    """

    def __init__(
        self,
        header: str = DEFAULT_HEADER,
        timeout_s: float = 10.0,
        memory_limit_mb: int | None = 4096,
        start_timeout_s: float = 60.0,
        coqtop: str | None = None,
    ) -> None:
        self.header = header
        self.timeout_s = timeout_s
        self.memory_limit_mb = memory_limit_mb
        self.start_timeout_s = start_timeout_s
        self.coqtop = coqtop or find_coq("coqtop")
        self.restarts = 0
        self.sentences = 0
        self.statement: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._base_id = 0
        self._root: _Frame | None = None
        self._stack: list[_Frame] = []
        self._state_id = 0

    # -- process ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        args = [self.coqtop, "-quiet", "-emacs"]
        if self.header.strip():
            if self._dir is None:
                self._dir = tempfile.TemporaryDirectory(prefix="plyground-coq-")
            path = Path(self._dir.name) / "Header.v"
            path.write_text(self.header.rstrip() + "\n", encoding="utf-8")
            args += ["-l", str(path)]
        self._buffer = b""
        self._proc = spawn(
            args, self.memory_limit_mb, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            output, name, state = self._read(time.monotonic() + self.start_timeout_s)
        except (TimeoutError, EOFError) as exc:
            self._kill()
            raise CoqError(f"coqtop did not start ({type(exc).__name__})") from exc
        if name != "Coq":
            self._kill()
            raise CoqError(f"the Coq header failed to load: {_error_text(output) or output[-500:]}")
        self._base_id = self._state_id = state
        self._root = None
        self._stack = []

    def _kill(self) -> None:
        if self._proc is not None:
            kill_group(self._proc)
            self._proc = None

    def close(self) -> None:
        self._kill()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> CoqSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            kill_group(proc)

    # -- the wire --------------------------------------------------------------------------
    def _read(self, deadline: float) -> tuple[str, str, int]:
        """Read up to the next prompt: (output before it, proof name, state id)."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                text = self._buffer.decode("utf-8", errors="replace")
                m = _PROMPT_RE.search(text)
                if m is not None:
                    consumed = len(text[: m.end()].encode("utf-8", errors="replace"))
                    self._buffer = self._buffer[consumed:]
                    self._state_id = int(m.group(2))
                    return text[: m.start()], m.group(1), int(m.group(2))
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise TimeoutError
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise EOFError
                self._buffer += chunk

    def send(self, sentence: str, timeout_s: float | None = None) -> tuple[str, str, int]:
        """Send one sentence (one line); return (output, proof name, state id) from its prompt.

        Raises TimeoutError (the process is then dead: call ``recover``) or EOFError."""
        self.start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        self.sentences += 1
        try:
            proc.stdin.write((sentence.replace("\n", " ") + "\n").encode("utf-8"))
            proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise EOFError(str(exc)) from exc
        output, name, state = self._read(time.monotonic() + (timeout_s or self.timeout_s))
        return _TAG_RE.sub("", output).strip("\n"), name, state

    def _goals_of(self, output: str) -> str | None:
        m = _GOALS_RE.search(output)
        return normalise_goals(output[m.start():]) if m else None

    def _show(self) -> str:
        output, _, _ = self.send("Show.")
        return self._goals_of(output) or normalise_goals(output)

    # -- proofs -----------------------------------------------------------------------------
    @property
    def tactics(self) -> list[str]:
        return [f.tactic for f in self._stack]

    @property
    def goals(self) -> str:
        frame = self._stack[-1] if self._stack else self._root
        return frame.goals if frame is not None else ""

    @property
    def complete(self) -> bool:
        return self.goals.startswith("No more goals")

    def begin(self, statement: str) -> CoqResult:
        """Start proving ``statement`` (one sentence: ``Theorem name : ... .``)."""
        start = time.perf_counter()
        self.start()
        if self.statement is not None or self._state_id != self._base_id:
            try:
                self._backto(self._base_id)
            except (TimeoutError, EOFError, CoqError):
                self._kill()
                self.restarts += 1
                self.start()
        self.statement = None
        self._root, self._stack = None, []
        text = " ".join(statement.split())
        try:
            output, name, _ = self.send(text, self.start_timeout_s)
        except (TimeoutError, EOFError) as exc:
            self._kill()
            raise CoqError(f"coqtop failed on the statement: {type(exc).__name__}") from exc
        err = _error_text(output)
        if err is not None or name == "Coq":
            raise CoqError(f"the statement was not accepted: {err or output[-300:]}")
        self.statement = statement
        goals = self._goals_of(output) or self._show()
        self._root = _Frame("", self._state_id, goals)
        return CoqResult(True, goals, False, None, output, time.perf_counter() - start)

    def _backto(self, state_id: int) -> None:
        output, _, state = self.send(f"BackTo {state_id}.")
        if _error_text(output) is not None or state != state_id:
            raise CoqError(f"BackTo {state_id} failed: {output[-300:]}")

    def step(self, tactic: str, timeout_s: float | None = None) -> CoqResult:
        """Run one tactic. A refused or erroring tactic leaves the state unchanged."""
        if self.statement is None or self._root is None:
            raise CoqError("no proof in progress: call begin(statement) first")
        start = time.perf_counter()
        sentence, reason = check_tactic(tactic)
        if reason is not None:
            return CoqResult(False, self.goals, False, f"Refused: {reason}.", "", time.perf_counter() - start)
        if self.complete:
            return CoqResult(False, self.goals, True, "Error: No more goals.", "", time.perf_counter() - start)
        limit = timeout_s or self.timeout_s
        before = self._state_id
        try:
            output, name, state = self.send(sentence, limit)
        except TimeoutError:
            self.recover()
            return CoqResult(
                False, self.goals, False, f"Error: the tactic timed out after {limit:g} s.", "",
                time.perf_counter() - start, timed_out=True,
            )
        except EOFError:
            self.recover()
            return CoqResult(False, self.goals, False, "Error: coqtop died on this tactic.", "", time.perf_counter() - start)
        if state == before:  # Coq did not advance: the tactic failed (a message saying "Error:" does not count)
            err = _error_text(output) or ("Error: " + " ".join(output.split())[:2000] if output.strip() else "Error: the tactic failed.")
            return CoqResult(False, self.goals, False, err, output, time.perf_counter() - start)
        if name == "Coq":  # the proof was left somehow (should not happen past check_tactic)
            self.recover()
            return CoqResult(False, self.goals, False, "Error: the tactic left the proof.", output, time.perf_counter() - start)
        goals = self._goals_of(output) or self._show()
        self._stack.append(_Frame(sentence, self._state_id, goals))
        return CoqResult(True, goals, goals.startswith("No more goals"), None, output, time.perf_counter() - start)

    def recover(self) -> None:
        """Kill coqtop, start a fresh one and replay the statement and the accepted tactics."""
        statement, tactics = self.statement, self.tactics
        self._kill()
        self.restarts += 1
        self.statement = None
        self._root, self._stack = None, []
        if statement is not None:
            self.begin(statement)
            self._replay(tactics)

    def _replay(self, tactics: Sequence[str]) -> None:
        for tactic in tactics:
            result = self.step(tactic)
            if not result.ok:
                raise CoqError(f"replaying {tactic!r} failed: {result.error}")

    def goto(self, tactics: Sequence[str], statement: str | None = None) -> CoqResult:
        """Move to the state after ``tactics`` (from ``statement``, default the current one):
        back to the longest common prefix with ``BackTo``, then replay the rest."""
        start = time.perf_counter()
        statement = statement if statement is not None else self.statement
        if statement is None:
            raise CoqError("no statement to go to")
        if statement != self.statement:
            self.begin(statement)
        current = self.tactics
        k = 0
        while k < min(len(current), len(tactics)) and current[k] == tactics[k]:
            k += 1
        if k < len(current):
            frame = self._stack[k - 1] if k > 0 else self._root
            assert frame is not None
            try:
                self._backto(frame.state_id)
                del self._stack[k:]
            except (TimeoutError, EOFError, CoqError):
                self._kill()
                self.restarts += 1
                self.begin(statement)
                k = 0
        self._replay(tactics[k:])
        return CoqResult(True, self.goals, self.complete, None, "", time.perf_counter() - start)

    def qed(self, allowed_axioms: Iterable[str] = (), check_assumptions: bool = True) -> tuple[bool, str]:
        """Close a complete proof with ``Qed``, check ``Print Assumptions`` (a few hundred ms with
        big libraries loaded; tactics cannot declare axioms, so it guards against library
        axioms only), then step back into the proof (so the session can go on searching).
        Returns (ok, reason)."""
        if self.statement is None or not self.complete:
            return False, "the proof is not complete"
        name = theorem_name(self.statement)
        before = self._state_id
        try:
            output, _, _ = self.send("Qed.")
            err = _error_text(output)
            if err is not None:
                self._backto(before)
                return False, f"Qed failed: {err}"
            if not check_assumptions:
                self._backto(before)
                return True, "Qed accepted"
            output, _, _ = self.send(f"Print Assumptions {name}.")
            self._backto(before)
        except (TimeoutError, EOFError):
            self.recover()
            return False, "Qed timed out"
        axioms = parse_assumptions(output)
        extra = [a for a in axioms if a not in set(allowed_axioms)]
        if extra:
            return False, f"the proof depends on axioms: {', '.join(extra)}"
        return True, "Qed accepted; closed under the global context" if not axioms else "Qed accepted"


def parse_assumptions(output: str) -> list[str]:
    """Axiom names from ``Print Assumptions`` output (empty when closed under the global context)."""
    if "Closed under the global context" in output:
        return []
    names: list[str] = []
    section = False
    for line in output.splitlines():
        if re.match(r"^(Axioms|Section Variables|Opaque constants|Transparent constants):", line):
            section = line.startswith(("Axioms", "Section Variables"))
            continue
        m = re.match(r"^([^\s:]+) :", line)
        if section and m:
            names.append(m.group(1))
    return names


def declared_axioms(header: str) -> list[str]:
    """Names the header itself assumes (``Axiom``/``Parameter``/``Hypothesis``/``Variable`` ...)."""
    names: list[str] = []
    pattern = r"\b(?:Axioms?|Parameters?|Conjectures?|Hypothes[ie]s|Variables?)\s+([^:.]+?)\s*:"
    for m in re.finditer(pattern, header):
        names += [n for n in m.group(1).replace("(", " ").split() if n]
    return names


def _strip_comments(text: str) -> str:
    out, depth, i = [], 0, 0
    while i < len(text):
        if text.startswith("(*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*)", i) and depth:
            depth, i = depth - 1, i + 2
        else:
            if not depth:
                out.append(text[i])
            i += 1
    return "".join(out)


def _proof_body(response: str) -> tuple[str, str | None]:
    """The tactic script of a response (``Proof.`` / ``Qed.`` and code fences stripped) or a reason
    to reject it."""
    fence = re.search(r"```(?:coq)?\s*\n(.*?)```", response, re.DOTALL)
    text = fence.group(1) if fence else response
    text = _strip_comments(text).strip()
    text = re.sub(r"^Proof\s*\.", "", text).strip()
    text = re.sub(r"(Qed|Defined)\s*\.\s*$", "", text).strip()
    if not text:
        return "", "empty proof"
    words = set(re.findall(r"[A-Za-z_][\w']*", text))
    for bad in CHEAT_TACTICS:
        if bad in words:
            return "", f"the proof uses {bad}"
    for command in FORBIDDEN_COMMANDS:
        if re.search(rf"(^|[.]\s|[;{{}}]\s*|[-+*]\s+){command}\b", text):
            return "", f"the proof contains the command {command}"
    return text, None


@dataclass
class CoqProofVerifier:
    """``verify(task, response)``: ``task.prompt`` is a Coq theorem statement, the response its
    proof script; ``coqc`` checks header + statement + proof + ``Qed``, and ``Print Assumptions``
    may list only the axioms the header declares, ``task.metadata["allowed_axioms"]`` or
    ``allowed_axioms``. Pure and thread-safe (each check has its own temporary folder)."""

    header: str = DEFAULT_HEADER
    timeout_s: float = 30.0
    allowed_axioms: tuple[str, ...] = ()
    max_chars: int = 50_000
    memory_limit_mb: int | None = 4096
    coqc: str | None = field(default=None, repr=False)

    def verify(self, task: Task, response: str) -> Verdict:
        start = time.perf_counter()

        def verdict(correct: bool, reason: str, error: str | None = None) -> Verdict:
            return Verdict(1.0 if correct else 0.0, correct, reason, error, time.perf_counter() - start)

        header = str(task.metadata.get("header", self.header))
        try:
            name = theorem_name(task.prompt)
        except ValueError as exc:
            return verdict(False, "bad task", str(exc))
        if len(response) > self.max_chars:
            return verdict(False, f"proof longer than {self.max_chars} characters")
        body, reason = _proof_body(response)
        if reason is not None:
            return verdict(False, reason)
        coqc = self.coqc or shutil.which("coqc")
        if coqc is None:
            return verdict(False, "coqc unavailable", str(MissingComponentError("Coq", COQ_INSTALL)))
        source = f"{header.rstrip()}\n\n{task.prompt.strip()}\nProof.\n{body}\nQed.\n\nPrint Assumptions {name}.\n"
        with tempfile.TemporaryDirectory(prefix="plyground-coqc-") as tmp:
            path = Path(tmp) / "ProofCheck.v"
            path.write_text(source, encoding="utf-8")
            proc = spawn([coqc, "-q", str(path)], self.memory_limit_mb, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                raw, _ = proc.communicate(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                return verdict(False, f"coqc timed out after {self.timeout_s:g} s", "timeout")
        output = raw.decode("utf-8", errors="replace")
        if proc.returncode != 0:
            return verdict(False, "Coq rejected the proof: " + (_error_text(output) or output[-500:]))
        allowed = set(self.allowed_axioms) | set(declared_axioms(header)) | set(task.metadata.get("allowed_axioms", ()))
        extra = [a for a in parse_assumptions(output) if a not in allowed]
        if extra:
            return verdict(False, f"the proof depends on axioms: {', '.join(extra)}")
        return verdict(True, "proof checked by coqc; closed under the global context")


def verify_proof(statement: str, proof: str, header: str = DEFAULT_HEADER, timeout_s: float = 30.0) -> Verdict:
    """Check a whole proof of a Coq ``statement`` with ``coqc`` (see :class:`CoqProofVerifier`)."""
    return CoqProofVerifier(header=header, timeout_s=timeout_s).verify(Task(id="proof", prompt=statement), proof)


def proof_script(tactics: Sequence[str]) -> str:
    """A tactic list as a proof body, one sentence a line."""
    return "\n".join(t if t.rstrip().endswith(".") else t.rstrip() + "." for t in tactics)


# -- the project's theorem set ----------------------------------------------------------------------
THEOREMS_FILE = Path(__file__).with_name("data") / "coq_theorems.jsonl"
TOPICS = ("arithmetic", "booleans", "lists", "logic", "induction")


def imports_header(imports: Sequence[str]) -> str:
    """``Require Import`` line for ``imports`` (plus ``Import ListNotations`` when List is in)."""
    if not imports:
        return ""
    header = f"Require Import {' '.join(imports)}."
    return header + ("\nImport ListNotations." if "List" in imports else "")


def load_coq_theorems(
    path: str | os.PathLike[str] | None = None,
    topics: Iterable[str] | None = None,
    max_difficulty: int | None = None,
) -> list[Task]:
    """The project's Coq theorem set (``data/coq_theorems.jsonl``: one JSON object a line with
    ``id``, ``difficulty`` 1-5, ``topic``, ``statement``, ``proof`` (a reference proof, one tactic
    sentence after another, no bullets) and ``imports``) as Tasks: ``prompt`` = the statement,
    ``answer`` = the reference proof, ``metadata`` = difficulty, topic, imports and ``header`` when
    the imports differ from ``DEFAULT_HEADER``'s. ``topics`` / ``max_difficulty`` filter."""
    wanted = set(topics) if topics is not None else None
    tasks: list[Task] = []
    text = Path(path if path is not None else THEOREMS_FILE).read_text(encoding="utf-8")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        try:
            id_, statement, proof = str(row["id"]), str(row["statement"]), str(row["proof"])
            difficulty, topic = int(row["difficulty"]), str(row["topic"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path or THEOREMS_FILE}:{n}: bad theorem row ({exc})") from exc
        if wanted is not None and topic not in wanted:
            continue
        if max_difficulty is not None and difficulty > max_difficulty:
            continue
        imports = list(row.get("imports") or [])
        metadata: dict[str, object] = {"difficulty": difficulty, "topic": topic, "imports": imports}
        header = imports_header(imports)
        if header != DEFAULT_HEADER:
            metadata["header"] = header
        tasks.append(Task(id=id_, prompt=statement, answer=proof, metadata=metadata))
    return tasks


COQ_THEOREMS: list[Task] = load_coq_theorems()
"""The whole set (170 theorems; the first 22 are the slice's original built-ins, same ids)."""


def check_theorem_file(
    tasks: Sequence[Task], header: str = DEFAULT_HEADER, timeout_s: float = 300.0, check_assumptions: bool = True
) -> dict[str, str]:
    """Check many reference proofs with ONE ``coqc`` run (a file of statement + ``Proof.`` +
    answer + ``Qed.`` + ``Print Assumptions`` for each). Returns ``{task id: problem}`` for the
    failing ones (empty: all checked and closed under the global context). A Coq error stops
    the file, so the first failure is reported and the tasks after it are marked unchecked.
    ``Print Assumptions`` costs about 0.2 s a theorem with the default libraries loaded;
    ``check_assumptions=False`` leaves it out (``Qed`` still checks every proof)."""
    coqc = find_coq("coqc")
    parts = [header.rstrip(), ""]
    for task in tasks:
        body, reason = _proof_body(task.answer or "")
        if reason is not None:
            return {task.id: reason}
        name = theorem_name(task.prompt)
        parts += [f"(* {task.id} *)", task.prompt.strip(), "Proof.", body, "Qed."]
        parts += [f"Print Assumptions {name}.", ""] if check_assumptions else [""]
    with tempfile.TemporaryDirectory(prefix="plyground-coqc-") as tmp:
        path = Path(tmp) / "TheoremSet.v"
        path.write_text("\n".join(parts), encoding="utf-8")
        proc = spawn([coqc, "-q", str(path)], 4096, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            raw, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            return {t.id: "coqc timed out" for t in tasks}
    output = raw.decode("utf-8", errors="replace")
    problems: dict[str, str] = {}
    if proc.returncode != 0:
        m = re.search(r'line (\d+)', output)
        line = int(m.group(1)) if m else 0
        text = "\n".join(parts).splitlines()
        failing = None
        for i in range(min(line, len(text)) - 1, -1, -1):
            c = re.match(r"^\(\* (\S+) \*\)$", text[i])
            if c:
                failing = c.group(1)
                break
        seen = False
        for task in tasks:
            if task.id == failing:
                problems[task.id], seen = _error_text(output) or output[-500:], True
            elif seen or failing is None:
                problems[task.id] = "unchecked (an earlier theorem failed)" if seen else (_error_text(output) or output[-500:])
        return problems
    if not check_assumptions:
        return problems
    blocks = re.split(r"(?=^Closed under the global context|^Axioms:)", output, flags=re.MULTILINE)
    answers = [b for b in blocks if b.startswith(("Closed under", "Axioms:"))]
    for task, answer in zip(tasks, answers, strict=False):
        axioms = parse_assumptions(answer)
        if axioms:
            problems[task.id] = f"depends on axioms: {', '.join(axioms)}"
    if len(answers) != len(tasks):
        problems["*"] = f"{len(answers)} Print Assumptions answers for {len(tasks)} theorems"
    return problems
