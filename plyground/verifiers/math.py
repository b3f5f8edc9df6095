"""``MathVerifier``: is the final answer in a response mathematically equal to the task's answer?

Three steps, each bounded:

1. **Extract** (``extract_answer``, in the calling process, regex only): the content of the last
   ``\\boxed{...}`` / ``\\fbox{...}`` (balanced braces); else the text after the last "final
   answer is" / "answer:" phrase; else the last number. Only the last ``MAX_TEXT_CHARS`` are read.
2. **Normalise** both answers (in the calling process, string rewriting only): ``$`` and ``\\$``,
   ``\\left``/``\\right``, spacing commands, ``\\dfrac``, degrees, thousands separators, units
   after a number, a whole answer wrapped in ``\\text{...}``, scientific notation, and explicit
   ``\\cdot`` for implicit products such as ``2(x+1)``. When both sides are then plain numbers
   (integers, decimals, fractions, percents, scientific notation) they are compared exactly as
   rationals right there: most GSM8K-style checks never leave the process.
3. **Compare symbolically** (in a worker process): both sides are parsed by math-verify's LaTeX
   grammar (ANTLR, via latex2sympy2-extended) and compared with ``math_verify.verify``
   (numbers, intervals, sets, tuples, matrices, expressions equal after simplification,
   equations); two equations also count as equal when one is a constant multiple of the other.

Safety: model text is never given to ``eval``, ``sympify`` or ``parse_expr``. math-verify's
plain-expression extractor (``ExprExtractionConfig``) goes through SymPy's ``parse_expr`` (an
``eval``), so it is not used: the answer is wrapped in ``\\boxed{}`` and read by the LaTeX
grammar only.

Time limit: SymPy can hang (``10^{10^{10}}`` is computed exactly, a simplification can run for
minutes) inside C code that no signal interrupts. Every symbolic check therefore runs in a
persistent worker process from a small pool (``multiprocessing`` 'forkserver' context, with SymPy
and math-verify preloaded so a replacement starts in well under a second). The worker first tries
a soft limit (``setitimer``) so the common slow case costs no restart; if the worker has not
answered by the hard limit it is killed and replaced, and the result says ``timeout after X s``.
As with any 'forkserver'/'spawn' multiprocessing, a script that calls the verifier at import
time must keep its top-level code under ``if __name__ == "__main__":`` (workers import the main
module).
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from plyground.types import Task, Verdict

MAX_TEXT_CHARS = 20_000
"""Only the tail of a response is searched: the final answer is at the end."""
MAX_ANSWER_CHARS = 1_000
"""Longer extracted answers are not compared (a real answer is short; parsing is superlinear)."""
MAX_NUMBER_DIGITS = 200
MAX_SCI_EXPONENT = 400
DEFAULT_TIMEOUT_S = 5.0
# The worker interrupts itself at ``timeout_s * _SOFT_FACTOR`` (cheap: it stays alive); the
# parent kills it ``_HARD_GRACE_S`` after ``timeout_s`` (for work no signal can interrupt).
_SOFT_FACTOR = 1.0
_HARD_GRACE_S = 0.5
# A fresh worker imports SymPy and math-verify unless the forkserver preloaded them; on a busy
# 2-core machine that can take several seconds, which is not counted against a check's limit.
_STARTUP_TIMEOUT_S = 120.0
_WORKER_MEMORY_BYTES = 3 * 1024**3


# -- results -----------------------------------------------------------------------------------
@dataclass
class Comparison:
    """The outcome of comparing one answer with a reference: ``equal``, why (``reason``), and
    ``error`` when the check itself failed (time limit, worker crash, unusable reference)."""

    equal: bool
    reason: str
    error: str | None = None
    elapsed_s: float = 0.0


# -- extraction --------------------------------------------------------------------------------
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_MAX_BOXES_TRIED = 8
_PHRASE_RE = re.compile(r"(?:final\s+answer|\banswer)\s*(?:is\s*[:=]?|[:=])", re.IGNORECASE)
_MATH_SPAN_RE = re.compile(r"\$\$?([^$]{1,1000})\$\$?|\\\((.{1,1000}?)\\\)|\\\[(.{1,1000}?)\\\]")
_TEXT_NUMBER_RE = re.compile(
    r"(?:(?<![\w.])-)?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?![\d.]))?|(?<![\w.])\.\d+"
)


def extract_answer(text: str) -> str | None:
    """The final answer's text in a response (``"\\frac{1}{2}"``, ``"(1, 2]"``, ``"42"``), or None.

    Preference: the last ``\\boxed{...}``/``\\fbox{...}`` with balanced braces; else what follows
    the last "final answer is" / "answer:" phrase (the math in ``$...$`` if there is some, else
    the rest of the sentence); else the last number. Reads only the last ``MAX_TEXT_CHARS``
    characters, in time linear in them. Never raises.
    """
    if not isinstance(text, str) or not text:
        return None
    text = _unify_chars(text[-MAX_TEXT_CHARS:])
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed
    phrase = _last_match(_PHRASE_RE.finditer(text))
    if phrase is not None:
        answer = _phrase_answer(text[phrase.end() : phrase.end() + MAX_ANSWER_CHARS])
        if answer:
            return answer
    number = _last_match(_TEXT_NUMBER_RE.finditer(text))
    return number.group(0).strip() if number else None


def _last_boxed(text: str) -> str | None:
    for match in list(_BOXED_RE.finditer(text))[-_MAX_BOXES_TRIED:][::-1]:
        depth, start = 1, match.end()
        for i in range(start, min(len(text), start + MAX_ANSWER_CHARS)):
            char = text[i]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    content = text[start:i].strip()
                    if content:
                        return content
                    break
    return None


def _phrase_answer(rest: str) -> str | None:
    rest = rest.lstrip(" \t*:")
    math = _MATH_SPAN_RE.match(rest) or _MATH_SPAN_RE.search(rest.split("\n", 1)[0])
    if math is not None:
        content = next(g for g in math.groups() if g is not None)
        return content.strip() or None
    # The rest of the sentence: up to a line break or a period that ends it (not "3.5").
    sentence = re.split(r"\n|\.(?!\d)|;", rest, maxsplit=1)[0].strip().strip("*").strip()
    if not sentence:
        return None
    if len(sentence) > 40:  # prose after the phrase: keep its leading number if any
        number = _TEXT_NUMBER_RE.match(sentence)
        return number.group(0) if number else None
    return sentence


def _last_match(matches: Iterator[re.Match[str]]) -> re.Match[str] | None:
    last = None
    for last in matches:  # noqa: B007 -- we only want the last one
        pass
    return last


# -- normalisation (strings only; safe on any input) --------------------------------------------
def _unify_chars(text: str) -> str:
    # Unicode minus and dashes, and LaTeX's braced thousands separator, as models write them.
    return text.replace("\u2212", "-").replace("\u2013", "-").replace("{,}", ",")


# Sizing and spacing commands; a whole command name only (``\\rightarrow`` stays), and not the
# ``\\`` of a matrix row break followed by ``,`` or ``!``.
_DROP_RE = re.compile(r"\\(?:left|right|[bB]igg?[lr]?|displaystyle|q?quad)(?![A-Za-z])|(?<!\\)\\[!,;]")
_TEXT_CMD = r"\\(?:text|textbf|textit|mbox|mathrm|mathbf|operatorname)\s*"
_WHOLE_TEXT_RE = re.compile(rf"^{_TEXT_CMD}\{{([^{{}}]*)\}}$")
_DEGREES_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_NUMBER_CORE = r"-?(?:\d+(?:\.\d*)?|\.\d+)"
_UNITS_RE = re.compile(
    rf"^(?P<num>{_NUMBER_CORE}(?:\s*(?:/|\\%|%)\s*\d*)?)\s*"
    rf"(?:{_TEXT_CMD}\{{[^{{}}]*\}}(?:\^\{{?\d\}}?)?|(?:[A-Za-z]{{2,}}\.?)(?:\s+[A-Za-z]{{2,}}\.?)*(?:\^\d)?)$"
)
# Words after a number that are maths, not a unit ("2 pi", "3 and 5").
_NOT_UNITS = frozenset(
    {"pi", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "inf", "infty",
     "infinity", "and", "or", "mod", "cdot", "times"}
)  # fmt: skip
_THOUSANDS_RE = re.compile(r"(?<![\d.,])(\d{1,3}(?:,\d{3})+)(?![\d,])(?=\.\d|$|[^\d])")
_ASSIGNMENT_RE = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(?=[^=])")
_CHOICE_RE = re.compile(r"^\(?([A-Ea-e])\)?$")
# An implicit product the LaTeX grammar could misread: a digit or ')' right before '(' or a
# digit/letter right after ')'. A digit that is a subscript (``\log_2(8)``) is left alone, and
# a letter before '(' is never touched, so ``\sin(x)`` and ``f(x)`` keep their meaning.
_IMPLICIT_BEFORE_PAREN_RE = re.compile(r"((?<![_\w\\.])\d+(?:\.\d+)?|\))\s*(?=\()")
_IMPLICIT_AFTER_PAREN_RE = re.compile(r"(?<=\))\s*(?=[\dA-Za-z])")


def normalize_answer(answer: str) -> str:
    """A canonical spelling of one answer, by string rewriting only (see the module docstring)."""
    s = _unify_chars(answer).strip()
    s = s.replace("\\$", "").replace("$", "").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _DROP_RE.sub("", s)
    # "\ " is a space, but not in "\\ " (a matrix row break followed by a space).
    s = re.sub(r"(?<!\\)\\ ", " ", s).replace("~", " ")
    s = _DEGREES_RE.sub("", s).strip()
    s = s.rstrip(".").strip()
    if m := _WHOLE_TEXT_RE.match(s):
        s = m.group(1).strip()
    if m := _CHOICE_RE.match(s):
        return m.group(1).upper()
    s = re.sub(r"(?<!\\)%", r"\\%", s)
    if (m := _UNITS_RE.match(s)) and not _NOT_UNITS.intersection(re.findall(r"[a-z]+", s.lower())):
        s = m.group("num").strip()
    s = _THOUSANDS_RE.sub(lambda m: m.group(1).replace(",", ""), s) if _is_numberish(s) else s
    s = _expand_scientific(s)
    s = _plain_to_latex(s)
    s = _IMPLICIT_AFTER_PAREN_RE.sub(" \\\\cdot ", _IMPLICIT_BEFORE_PAREN_RE.sub(r"\1 \\cdot ", s))
    return " ".join(s.split())


def _is_numberish(s: str) -> bool:
    # Thousands separators are only removed from a lone number: in "1,234" they are, in the
    # tuple "(1,234)" or the list "1,234,5" the commas separate items.
    return re.fullmatch(r"-?[\d,]+(?:\.\d+)?(?:\s*\\%)?", s) is not None


_SCI_E_RE = re.compile(r"^(-?(?:\d+(?:\.\d*)?|\.\d+))[eE]([+-]?\d{1,4})$")
_SCI_TIMES_RE = re.compile(
    r"^(-?(?:\d+(?:\.\d*)?|\.\d+))\s*\\(?:times|cdot)\s*10\s*\^\s*\{?\s*([+-]?\d{1,4})\s*\}?$"
)


def _expand_scientific(s: str) -> str:
    if m := _SCI_E_RE.match(s):
        return f"{m.group(1)} \\times 10^{{{m.group(2)}}}"
    return s


# Plain-text maths that models put in a box ("2 pi", "sqrt(3)", "inf"), spelled as LaTeX so
# the grammar reads it; a name already written as a command (after a backslash) or inside a word
# is left alone.
_PLAIN_SQRT_RE = re.compile(r"(?<![\\A-Za-z])sqrt\s*\(([^()]{1,200})\)")
_PLAIN_NAME_RE = re.compile(r"(?<![\\A-Za-z])(pi|infinity|inf)(?![A-Za-z])")


def _plain_to_latex(s: str) -> str:
    if "sqrt" in s:
        s = _PLAIN_SQRT_RE.sub(r"\\sqrt{\1}", s)
    if "pi" in s or "inf" in s:
        s = _PLAIN_NAME_RE.sub(lambda m: "\\pi " if m.group(1) == "pi" else "\\infty ", s)
    return s


_INT_OR_DEC_RE = re.compile(r"^([-+]?)(\d+)?(?:\.(\d*))?$")
_FRAC_RE = re.compile(r"^(-?)\\frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(-?\d+)\s*\}$|^(-?)\\frac(\d)(\d)$")
_SLASH_RE = re.compile(r"^(-?\d+)\s*/\s*(-?\d+)$")


def parse_exact_number(answer: str) -> tuple[Fraction, bool] | None:
    """``(value, is_percent)`` when a *normalised* answer is a plain number, else None.

    Integers, decimals, ``a/b``, ``\\frac{a}{b}``, scientific notation (``1.5 \\times 10^{3}``),
    a trailing ``\\%``, and a leading ``x =``. Pure regex and ``Fraction``; digit counts and
    exponents are bounded, so this is safe to run on model text in the calling process.
    """
    s = _ASSIGNMENT_RE.sub("", answer.strip()).strip()
    percent = s.endswith("\\%")
    if percent:
        s = s[:-2].strip()
    if not s or len(s) > MAX_NUMBER_DIGITS:
        return None
    value: Fraction | None = None
    if m := _SCI_TIMES_RE.match(s):
        mantissa = _decimal(m.group(1))
        exponent = int(m.group(2))
        if mantissa is not None and abs(exponent) <= MAX_SCI_EXPONENT:
            value = mantissa * Fraction(10) ** exponent
    elif m := _FRAC_RE.match(s):
        sign, num, den = (m.group(1), m.group(2), m.group(3)) if m.group(2) else m.group(4, 5, 6)
        value = Fraction(int(num), int(den)) if int(den) != 0 else None
        value = -value if value is not None and sign == "-" else value
    elif m := _SLASH_RE.match(s):
        value = Fraction(int(m.group(1)), int(m.group(2))) if int(m.group(2)) != 0 else None
    else:
        value = _decimal(s)
    return None if value is None else (value, percent)


def _decimal(s: str) -> Fraction | None:
    m = _INT_OR_DEC_RE.match(s)
    if m is None or not (m.group(2) or m.group(3)):
        return None
    digits = m.group(3) or ""
    value = Fraction(int((m.group(2) or "0") + digits), 10 ** len(digits))
    return -value if m.group(1) == "-" else value


def _numbers_equal(pred: tuple[Fraction, bool], gold: tuple[Fraction, bool]) -> bool:
    (p, p_pct), (g, g_pct) = pred, gold
    if p == g:
        return True
    # "50%" answers "0.5" and "50" alike: the percent sign may or may not have been kept.
    return (p_pct and p / 100 == g) or (g_pct and g / 100 == p)


# -- comparison --------------------------------------------------------------------------------
def compare_answers(
    pred: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S, *, shortcut: bool = True
) -> Comparison:
    """Compare an extracted answer with a reference; never raises on the answer's content.

    Numbers are compared exactly in this process; anything else runs in a worker process under
    ``timeout_s`` (see the module docstring). ``shortcut=False`` sends answers that are identical
    after normalisation to the parser too (to check that a reference answer is readable).
    """
    start = time.perf_counter()
    result = _compare(pred, gold, timeout_s, shortcut)
    result.elapsed_s = time.perf_counter() - start
    return result


def is_equivalent(pred: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """True when ``pred`` and ``gold`` are the same mathematical answer (see ``compare_answers``)."""
    return compare_answers(pred, gold, timeout_s).equal


def _compare(pred: str, gold: str, timeout_s: float, shortcut: bool = True) -> Comparison:
    if not isinstance(pred, str) or not isinstance(gold, str):
        return Comparison(False, "answers must be strings", "not a string")
    if len(gold) > MAX_ANSWER_CHARS:
        return Comparison(False, "reference answer too long", f"reference over {MAX_ANSWER_CHARS} chars")
    if len(pred) > MAX_ANSWER_CHARS:
        return Comparison(False, f"answer longer than {MAX_ANSWER_CHARS} characters")
    p, g = normalize_answer(pred), normalize_answer(gold)
    if not g:
        return Comparison(False, "empty reference answer", "empty reference answer")
    if not p:
        return Comparison(False, "empty answer")
    p_num, g_num = parse_exact_number(p), parse_exact_number(g)
    if p == g and (shortcut or g_num is not None):
        return Comparison(True, "identical after normalisation")
    if p_num is not None and g_num is not None:
        if _numbers_equal(p_num, g_num):
            return Comparison(True, "equal numbers")
        return Comparison(False, "different numbers")
    return _default_pool().run(p, g, timeout_s)


# -- the worker side ---------------------------------------------------------------------------
class _SoftTimeout(BaseException):
    # A BaseException so that the ``except Exception`` blocks inside math-verify and SymPy do not
    # swallow it.
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _SoftTimeout


def _worker_main(conn: Any) -> None:
    """Serve comparisons over ``conn`` until it closes: ``(pred, gold, soft_limit_s)`` in,
    ``(equal, reason, error)`` out."""
    import logging
    import signal

    try:
        import resource

        # A runaway big-integer power should fail with MemoryError, not eat the machine.
        resource.setrlimit(resource.RLIMIT_AS, (_WORKER_MEMORY_BYTES, _WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGALRM, _on_alarm)
    # Warm up before reporting ready: the first parse builds ANTLR tables and the first
    # simplification fills SymPy's caches (about 0.5 s that no check should pay).
    _symbolic_equal("x^2-1", "(x-1) \\cdot (x+1)")
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        pred, gold, soft_limit = message
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, soft_limit)
                result: tuple[bool, str, str | None] = _symbolic_equal(pred, gold)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _SoftTimeout:
            result = (False, "timed out", "soft-timeout")
        except MemoryError:
            result = (False, "out of memory", "out of memory")
        except Exception as exc:  # the comparison failed, not the worker
            result = (False, "comparison failed", f"{type(exc).__name__}: {str(exc)[:200]}")
        conn.send(result)


def _symbolic_equal(pred: str, gold: str) -> tuple[bool, str, str | None]:
    from math_verify import verify

    gold_parsed = _latex_parse(gold)
    if not gold_parsed:
        return False, "could not parse the reference answer", f"unparsable reference {gold[:80]!r}"
    pred_parsed = _latex_parse(pred)
    if not pred_parsed:
        return False, "could not parse the answer", None
    if verify(gold_parsed, pred_parsed, timeout_seconds=None):
        # With no parsed expression on either side, math-verify compared the strings.
        parsed = any(not isinstance(x, str) for x in gold_parsed) and any(
            not isinstance(x, str) for x in pred_parsed
        )
        return True, "equivalent" if parsed else "equal as text (not parsed)", None
    if _equations_proportional(pred_parsed, gold_parsed):
        return True, "equivalent equations", None
    return False, "not equivalent", None


def _latex_parse(answer: str) -> list[Any]:
    # The LaTeX grammar only (see the module docstring: no ExprExtractionConfig, no parse_expr).
    from math_verify import LatexExtractionConfig, parse

    config = [LatexExtractionConfig(boxed_match_priority=0)]
    return list(parse("\\boxed{" + answer + "}", extraction_config=config, parsing_timeout=None))


def _equations_proportional(pred: list[Any], gold: list[Any]) -> bool:
    # "2y = 4x + 2" states the same as "y = 2x + 1": (lhs - rhs) differ by a nonzero constant.
    import sympy

    eqs = [next((x for x in side if isinstance(x, sympy.Eq)), None) for side in (pred, gold)]
    if eqs[0] is None or eqs[1] is None:
        return False
    a = eqs[0].lhs - eqs[0].rhs
    b = eqs[1].lhs - eqs[1].rhs
    if a.free_symbols != b.free_symbols or b == 0:
        return False
    ratio = sympy.simplify(a / b)
    return bool(ratio.is_number and ratio != 0 and ratio.is_finite)


# -- the pool (caller side) --------------------------------------------------------------------
class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, ctx: Any) -> None:
        parent_conn, child_conn = ctx.Pipe()
        self.conn = parent_conn
        self.process = ctx.Process(target=_worker_main, args=(child_conn,), daemon=True)
        self.process.start()
        child_conn.close()
        self.ready = False

    def wait_ready(self, timeout_s: float) -> bool:
        if not self.ready and self.conn.poll(timeout_s):
            try:
                self.ready = self.conn.recv() == ("ready",)
            except (EOFError, OSError):
                return False
        return self.ready

    def kill(self) -> None:
        with contextlib.suppress(Exception):  # already reaped
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(Exception):  # already dead: nothing to ask
            self.conn.send(None)
        self.process.join(timeout=1)
        if self.process.is_alive():
            self.kill()
        else:
            self.conn.close()


class WorkerPool:
    """A few persistent worker processes that run symbolic comparisons under a hard time limit.

    Thread-safe: a caller borrows an idle worker (waiting if all are busy), sends one
    comparison, and gives the worker back; a worker that overruns its limit or dies is killed
    and replaced by a fresh one. Workers start lazily, one per concurrent caller, up to ``size``.
    """

    def __init__(self, size: int | None = None) -> None:
        self.size = max(1, size if size is not None else min(2, os.cpu_count() or 1))
        self._ctx = _context()
        # Last in, first out: a lone caller keeps reusing one warm worker instead of waking (and
        # starting) every slot in turn.
        self._idle: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(self.size):
            self._idle.put(None)  # a slot; its worker starts on first use
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        self.restarts = 0

    def run(self, pred: str, gold: str, timeout_s: float) -> Comparison:
        """Compare two normalised answers in a worker; never raises."""
        if self._closed:
            return Comparison(False, "verifier is closed", "verifier is closed")
        worker = self._idle.get()
        try:
            if worker is not None and not worker.process.is_alive():  # died while idle (OOM killer)
                worker.kill()
                worker = None
            if worker is None:
                worker = _Worker(self._ctx)
            if not worker.wait_ready(_STARTUP_TIMEOUT_S):
                worker.kill()
                worker = None
                return Comparison(False, "verifier worker failed to start", "worker failed to start")
            # The worker stops itself at the soft limit; the parent kills it at the hard limit.
            worker.conn.send((pred, gold, max(0.01, timeout_s * _SOFT_FACTOR)))
            if worker.conn.poll(timeout_s + _HARD_GRACE_S):
                try:
                    equal, reason, error = worker.conn.recv()
                except (EOFError, OSError):
                    worker = self._replace(worker)
                    return Comparison(False, "verifier worker crashed", "worker crashed")
                if error == "soft-timeout":
                    return Comparison(False, "timed out", f"timeout after {timeout_s:g} s")
                return Comparison(bool(equal), str(reason), error)
            worker = self._replace(worker)
            return Comparison(False, "timed out", f"timeout after {timeout_s:g} s")
        except Exception as exc:  # a broken pipe or a failed start: report it, keep the pool
            if worker is not None:
                worker.kill()
                worker = None
            return Comparison(False, "verifier worker failed", f"{type(exc).__name__}: {exc}")
        finally:
            if self._closed and worker is not None:
                worker.stop()  # closed while this check ran: do not leave the worker behind
            else:
                self._idle.put(worker)

    def _replace(self, worker: _Worker) -> _Worker | None:
        worker.kill()
        with self._lock:
            self.restarts += 1
        try:
            return _Worker(self._ctx)  # start now, so it boots while the pool serves others
        except Exception:
            return None

    def close(self) -> None:
        """Stop every worker; later comparisons report an error instead of running."""
        self._closed = True
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            if worker is not None:
                worker.stop()


def _context() -> Any:
    # 'forkserver' forks workers from a clean server that has SymPy and math-verify imported (a
    # replacement starts in tens of ms); 'spawn' where there is no forkserver (Windows, macOS
    # frameworks). Both are safe in a parent that runs threads, unlike plain 'fork'.
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["sympy", "math_verify", "plyground.verifiers.math"])
        return ctx
    return multiprocessing.get_context("spawn")


_DEFAULT_POOL: WorkerPool | None = None
_DEFAULT_POOL_LOCK = threading.Lock()


def _default_pool() -> WorkerPool:
    global _DEFAULT_POOL
    with _DEFAULT_POOL_LOCK:
        # A forked child must not share its parent's pipes: it gets a pool of its own.
        if _DEFAULT_POOL is None or _DEFAULT_POOL._closed or _DEFAULT_POOL._pid != os.getpid():
            _DEFAULT_POOL = WorkerPool()
            atexit.register(_DEFAULT_POOL.close)
        return _DEFAULT_POOL


# -- the verifier ------------------------------------------------------------------------------
class MathVerifier:
    """Symbolic math answer check (see the module docstring). Thread-safe; never raises on
    model output. ``close()`` stops the worker processes."""

    name = "math"

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s

    def verify(self, task: Task, response: str) -> Verdict:
        start = time.perf_counter()
        try:
            verdict = self._verify(task, response)
        except Exception as exc:  # a verifier never raises on model output
            verdict = Verdict(0.0, False, "verifier failed", f"{type(exc).__name__}: {exc}")
        verdict.elapsed_s = time.perf_counter() - start
        return verdict

    def _verify(self, task: Task, response: str) -> Verdict:
        if task.answer is None:
            return Verdict(0.0, False, "task has no reference answer", "no reference answer")
        answer = extract_answer(response if isinstance(response, str) else "")
        if answer is None:
            return Verdict(0.0, False, "no final answer found")
        result = compare_answers(answer, str(task.answer), self.timeout_s)
        if result.equal:
            return Verdict(
                1.0, True, f"correct: {_short(answer)} = {_short(str(task.answer))} ({result.reason})"
            )
        reason = f"wrong: got {_short(answer)}, expected {_short(str(task.answer))} ({result.reason})"
        return Verdict(0.0, False, reason, result.error)

    def validate_task(self, task: Task) -> Verdict:
        """Stricter than ``verify(task, "\\boxed{answer}")`` (which an identical string always
        passes): the gold answer must survive extraction and be read by the parser as equal to
        itself. ``Task.validate`` uses this when the verifier has it."""
        start = time.perf_counter()
        if task.answer is None:
            return Verdict(0.0, False, "task has no reference answer", "no reference answer")
        gold = str(task.answer)
        extracted = extract_answer("\\boxed{" + gold + "}")
        if extracted is None or normalize_answer(extracted) != normalize_answer(gold):
            reason = f"the answer does not survive extraction: {_short(gold)} -> {extracted!r}"
            return Verdict(0.0, False, reason, "extraction changes the answer", time.perf_counter() - start)
        result = compare_answers(extracted, gold, self.timeout_s, shortcut=False)
        score = 1.0 if result.equal else 0.0
        reason = f"reference {_short(gold)}: {result.reason}"
        return Verdict(score, result.equal, reason, result.error, time.perf_counter() - start)

    def close(self) -> None:
        """Stop the shared worker processes (they restart on the next check)."""
        global _DEFAULT_POOL
        with _DEFAULT_POOL_LOCK:
            if _DEFAULT_POOL is not None:
                _DEFAULT_POOL.close()
                _DEFAULT_POOL = None


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
