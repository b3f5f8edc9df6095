"""``NumericVerifier``: is the final number in a response exactly the task's answer?

Small and exact, for answers that are numbers (arithmetic, GSM8K-style word problems). The final
answer is, in order of preference: the content of the last ``\\boxed{...}``; else the number after
the last "answer is" / "Answer:"; else the last number in the text. It is parsed with a regex
(never ``eval``) as an integer (``-1,234``), a decimal (``0.25``), or a fraction (``3/4``,
``\\frac{3}{4}``), and compared with ``task.answer`` as an exact rational (``fractions.Fraction``),
so ``0.5``, ``1/2`` and ``\\frac{1}{2}`` are the same answer. Symbolic answers belong to the math
verifier.

Only the last ``MAX_RESPONSE_CHARS`` characters are read (the final answer is at the end), and the
parse is linear in that, which is how this verifier keeps its time limit.
"""

from __future__ import annotations

import re
import time
from collections import deque
from fractions import Fraction

from plyground.types import Task, Verdict

MAX_RESPONSE_CHARS = 10_000
# Longer numerals are not answers we check, and Python refuses int() on > 4300 digits anyway.
MAX_NUMBER_CHARS = 200

# A number as it appears in text. The minus sign counts only when it is not glued to a preceding
# word or digit, so "3-5" reads as 3 and 5, not 3 and -5.
_NUMBER = r"""
    (?:(?<![\w.])-)?
    (?:
        \\[dt]?frac\s*\{\s*-?\d+\s*\}\s*\{\s*\d+\s*\}   # \frac{3}{4}
      | \d+\s*/\s*\d+(?!\d|[.,]\d)                       # 3/4
      | (?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?       # 1,234.5  1234  12.5
      | \.\d+                                            # .5
    )
"""
_NUMBER_RE = re.compile(_NUMBER, re.VERBOSE)
_ANSWER_PHRASE_RE = re.compile(
    r"\banswer\s*(?:is\s*)?[:=]?[\s*$]*(" + _NUMBER + ")", re.VERBOSE | re.IGNORECASE
)
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_MAX_BOXES_TRIED = 8
_MAX_BOX_CHARS = 1_000

# Exact forms, for parsing one extracted answer (or the gold answer) as a whole.
_FRAC_FULL = re.compile(r"(-?)\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(\d+)\s*\}")
_SLASH_FULL = re.compile(r"(-?\d+)\s*/\s*(\d+)")
_DECIMAL_FULL = re.compile(r"(-?)((?:\d{1,3}(?:,\d{3})+|\d+)?)(?:\.(\d+))?")
# Decorations around a boxed answer that do not change its value.
_UNITS_SUFFIX = re.compile(r"\s*\\(?:text|mbox|mathrm)\s*\{[^{}]*\}\s*$")
_ASSIGNMENT_PREFIX = re.compile(r"^[A-Za-z]\w*\s*=\s*")


def extract_final_answer(text: str) -> str | None:
    """The final answer's text in ``text`` (``"\\frac{1}{2}"``, ``"1,234"``), or None if there is none.

    Preference: last ``\\boxed{...}``, then the number after the last "answer is" / "Answer:",
    then the last number. Only the last ``MAX_RESPONSE_CHARS`` characters are read.
    """
    if not isinstance(text, str):
        return None
    text = _normalize(text[-MAX_RESPONSE_CHARS:])
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed
    phrase = deque(_ANSWER_PHRASE_RE.finditer(text), maxlen=1)  # the last match
    if phrase:
        return phrase[0].group(1).strip()
    number = deque(_NUMBER_RE.finditer(text), maxlen=1)
    return number[0].group(0).strip() if number else None


def parse_number(text: str) -> Fraction | None:
    """The exact value of one numeric answer (integer, decimal, ``a/b``, ``\\frac{a}{b}``), else None.

    Tolerates the decorations models put in a box: ``$``, a trailing period, ``x = ``, a unit in
    ``\\text{...}``, a percent sign, and LaTeX spacing. Never raises.
    """
    if not isinstance(text, str) or len(text) > MAX_RESPONSE_CHARS:
        return None
    s = _normalize(text)
    for junk in ("\\$", "$", "\\!", "\\,", "\\;", "\\ ", "\\%", "%"):
        s = s.replace(junk, "")
    s = _UNITS_SUFFIX.sub("", s.strip())
    s = _ASSIGNMENT_PREFIX.sub("", s).strip().rstrip(".").strip()
    if not s or len(s) > MAX_NUMBER_CHARS:
        return None
    if m := _FRAC_FULL.fullmatch(s):
        return _ratio(m.group(2), m.group(3), negate=m.group(1) == "-")
    if m := _SLASH_FULL.fullmatch(s):
        return _ratio(m.group(1), m.group(2))
    if (m := _DECIMAL_FULL.fullmatch(s)) and (m.group(2) or m.group(3)):
        whole = (m.group(2) or "0").replace(",", "")
        frac_digits = m.group(3) or ""
        value = Fraction(int(whole + frac_digits), 10 ** len(frac_digits))
        return -value if m.group(1) == "-" else value
    return None


class NumericVerifier:
    """Exact numeric answer check (see the module docstring). Stateless, so thread-safe."""

    name = "numeric"

    def verify(self, task: Task, response: str) -> Verdict:
        start = time.perf_counter()
        try:
            return self._verify(task, response, start)
        except Exception as exc:  # a verifier never raises on model output
            return Verdict(0.0, False, "verifier failed", f"{type(exc).__name__}: {exc}", _since(start))

    def _verify(self, task: Task, response: str, start: float) -> Verdict:
        if task.answer is None:
            return Verdict(0.0, False, "task has no reference answer", "no reference answer", _since(start))
        gold = parse_number(str(task.answer))
        if gold is None:
            error = f"reference answer {task.answer!r} is not a number"
            return Verdict(0.0, False, "unusable reference answer", error, _since(start))
        answer = extract_final_answer(response if isinstance(response, str) else "")
        if answer is None:
            return Verdict(0.0, False, "no final answer found", None, _since(start))
        value = parse_number(answer)
        if value is None:
            return Verdict(0.0, False, f"could not parse the answer {_short(answer)}", None, _since(start))
        if value == gold:
            return Verdict(1.0, True, f"correct: {_short(answer)} = {task.answer}", None, _since(start))
        return Verdict(0.0, False, f"wrong: got {_short(answer)}, expected {task.answer}", None, _since(start))


# -- helpers -----------------------------------------------------------------------------------
def _normalize(text: str) -> str:
    # Unicode minus signs and LaTeX's braced thousands separator, as models write them.
    return text.replace("\u2212", "-").replace("\u2013", "-").replace("{,}", ",")


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` whose braces balance (nested braces allowed).

    Bounded: only the last few boxes are tried, each read at most ``_MAX_BOX_CHARS`` far.
    """
    for match in list(_BOXED_RE.finditer(text))[-_MAX_BOXES_TRIED:][::-1]:
        depth, start = 1, match.end()
        for i in range(start, min(len(text), start + _MAX_BOX_CHARS)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    content = text[start:i].strip()
                    if content:
                        return content
                    break
    return None


def _ratio(numerator: str, denominator: str, negate: bool = False) -> Fraction | None:
    den = int(denominator)
    if den == 0:
        return None
    value = Fraction(int(numerator), den)
    return -value if negate else value


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _since(start: float) -> float:
    return time.perf_counter() - start
