"""``JudgeVerifier``: an LLM grades a response against a rubric, through any ``Backend``.

For tasks without a checkable answer (proofs, prose answers such as CHAMP's "No integer
solutions") and for the oracles of the dialogue games. The rubric is a text template with the
placeholders ``{question}``, ``{reference}`` and ``{response}`` (filled by plain replacement, so
braces elsewhere, LaTeX or JSON, need no escaping); the default is ``judge_rubric.txt`` next to
this module, which asks for a 0-10 score as one line of JSON.

The judge's reply is read by :func:`parse_judge_score`, which tolerates the usual mess: JSON
(also in a code fence or among prose), ``"Score: 7/10"``, ``"8 out of 10"``, ``"Rating: 4"``,
``"**8**"``, ``"85%"``, ``"verdict: correct"``, a bare ``"INCORRECT"``. Scores are normalised to
[0, 1] (a bare number is divided by ``scale``); ``correct`` means ``score >= threshold``.

Promises of a verifier (``plyground.verifiers.base``): ``verify`` never raises. A backend error,
a reply that cannot be read, or a judge slower than ``timeout_s`` gives ``score 0``,
``correct=False`` and the cause in ``Verdict.error``. The time limit stops waiting, not the
backend call (a thread cannot be killed): a hung backend keeps one daemon thread busy.

With ``cache_dir``, verdicts are JSON files keyed by the model, the rubric, the task and the
response: a repeated (task, response) pair costs no model call (the judge is deterministic
enough at temperature 0 for that to be the point). Errors are not cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from plyground.types import Message, SamplingParams, Task, Verdict

MAX_RESPONSE_CHARS = 8_000
"""Only the tail of a long response is shown to the judge (the final answer is at the end)."""
MAX_REPLY_CHARS = 20_000


def default_rubric() -> str:
    """The packaged rubric (``plyground/verifiers/judge_rubric.txt``)."""
    return resources.files("plyground.verifiers").joinpath("judge_rubric.txt").read_text(encoding="utf-8")


class JudgeVerifier:
    """LLM-as-judge over ``backend`` (any ``Backend``); see the module docstring.

    ``rubric``: the template text, or a path to a file holding it (default: the packaged one).
    ``scale``: what a bare score is out of (the default rubric asks for 0-10). ``threshold``: the
    normalised score from which a response counts as correct. ``params``: sampling for the
    judge (default greedy, 256 tokens).
    """

    name = "judge"

    def __init__(
        self,
        backend: Any,
        rubric: str | Path | None = None,
        timeout_s: float = 60.0,
        cache_dir: str | Path | None = None,
        scale: float = 10.0,
        threshold: float = 0.5,
        params: SamplingParams | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.backend = backend
        if rubric is None:
            rubric = default_rubric()
        elif isinstance(rubric, Path) or _is_file(rubric):
            rubric = Path(rubric).read_text(encoding="utf-8")
        if "{response}" not in rubric:
            raise ValueError("the rubric must contain the placeholder {response}")
        self.rubric = str(rubric)
        self.timeout_s = timeout_s
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.scale = scale
        self.threshold = threshold
        self.params = params or SamplingParams(max_tokens=256, temperature=0.0, logprobs=False)
        self.calls = 0  # backend calls made (cache hits excluded)

    # -- the verifier --------------------------------------------------------------------------
    def prompt(self, task: Task, response: str) -> str:
        reference = task.answer if task.answer is not None else "(none: judge from the problem alone)"
        return (
            self.rubric.replace("{question}", task.prompt)
            .replace("{reference}", str(reference))
            .replace("{response}", response[-MAX_RESPONSE_CHARS:])
        )

    def verify(self, task: Task, response: str) -> Verdict:
        start = time.perf_counter()
        try:
            verdict = self._verify(task, response if isinstance(response, str) else "")
        except Exception as exc:  # a verifier never raises
            verdict = Verdict(0.0, False, "judge failed", f"{type(exc).__name__}: {exc}")
        verdict.elapsed_s = time.perf_counter() - start
        return verdict

    def _verify(self, task: Task, response: str) -> Verdict:
        prompt = self.prompt(task, response)
        path = self._cache_path(task, prompt)
        if path is not None and path.exists():
            try:
                cached = json.loads(path.read_text(encoding="utf-8"))
                return Verdict(float(cached["score"]), bool(cached["correct"]), str(cached["reason"]))
            except (OSError, ValueError, KeyError, TypeError):
                pass  # torn or foreign file: judge again
        reply, error = self._call(prompt)
        if error is not None:
            return Verdict(0.0, False, "judge failed", error)
        score, why = parse_judge_score(reply, self.scale)
        if score is None:
            return Verdict(0.0, False, "unreadable judge reply", f"no score in judge reply: {_short(reply)}")
        correct = score >= self.threshold
        reason = f"judge score {score:.2f} ({why})"
        explanation = _reason_from_reply(reply)
        if explanation:
            reason += f": {explanation}"
        if path is not None:
            from plyground.tasks.hints import write_json_atomic

            record = {"score": score, "correct": correct, "reason": reason, "reply": reply[:MAX_REPLY_CHARS]}
            with contextlib.suppress(OSError):  # an unwritable cache costs only a repeat call
                write_json_atomic(path, record)
        return Verdict(score, correct, reason)

    def _call(self, prompt: str) -> tuple[str, str | None]:
        """The judge's reply, or an error; waits at most ``timeout_s``."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                out = self.backend.generate([[Message("user", prompt)]], self.params)
                box["text"] = out[0][0].text
            except BaseException as exc:  # reported, never raised
                box["error"] = f"{type(exc).__name__}: {exc}"

        self.calls += 1
        thread = threading.Thread(target=run, name="judge-call", daemon=True)
        thread.start()
        thread.join(self.timeout_s)
        if thread.is_alive():
            return "", f"timeout after {self.timeout_s:g} s"
        if "error" in box:
            return "", f"backend error: {box['error']}"
        text = box.get("text")
        if not isinstance(text, str):
            return "", "backend returned no text"
        return text[:MAX_REPLY_CHARS], None

    def _cache_path(self, task: Task, prompt: str) -> Path | None:
        if self.cache_dir is None:
            return None
        model = getattr(self.backend, "model_name", None)
        model = model if isinstance(model, str) and model else str(getattr(self.backend, "name", "backend"))
        key = "\0".join([model, str(self.scale), str(self.threshold), task.id, prompt])
        return self.cache_dir / f"{hashlib.sha256(key.encode('utf-8')).hexdigest()[:32]}.json"

    def close(self) -> None:
        """Nothing to release (the backend belongs to the caller)."""


def _is_file(text: str) -> bool:
    """Is a one-line ``text`` the path of an existing file (rather than rubric text)?"""
    if "\n" in text or "{response}" in text:
        return False
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


# -- reading a judge's reply ------------------------------------------------------------------------
# Bounded, anchored at a number's start: unbounded ``\d+`` makes digit floods quadratic.
_NUM = r"(?<![\d.])(-?\d{1,15}(?:\.\d{1,15})?)(?![\d.])"
_LABEL = r"(?:score|rating|grade|mark|points?)"
_JSON_RE = re.compile(r"\{[^{}]{0,2000}\}")
_LABELED_FRACTION_RE = re.compile(_LABEL + r"[^\d\n]{0,20}?" + _NUM + r"\s*(?:/|out\s+of)\s*" + _NUM, re.I)
_LABELED_NUMBER_RE = re.compile(_LABEL + r"[^\d\n/]{0,20}?" + _NUM + r"\s*(%)?", re.I)
_VERDICT_RE = re.compile(
    r"(?:verdict|judge?ment|decision|evaluation|conclusion|result)\W{0,5}\s*(\w+(?:\s+\w+)?)", re.I
)
_BOLD_NUMBER_RE = re.compile(r"\*\*\s*" + _NUM + r"\s*(?:/\s*" + _NUM + r")?\s*\*\*")
_FRACTION_RE = re.compile(_NUM + r"\s*(?:/|out\s+of)\s*(5|10|100)\b", re.I)
_PERCENT_RE = re.compile(_NUM + r"\s*%")
_NEGATIVE_RE = re.compile(r"\b(?:incorrect|wrong|not\s+correct|false|invalid|fail(?:s|ed)?|no)\b", re.I)
_POSITIVE_RE = re.compile(r"\b(?:correct|right|true|valid|pass(?:es|ed)?|yes)\b", re.I)


def parse_judge_score(text: str, scale: float = 10.0) -> tuple[float | None, str]:
    """The score in a judge's reply, normalised to [0, 1], and how it was read; ``(None, why)``
    when there is none. Never raises.

    In order: a JSON object with ``score``/``rating``/``grade`` (a number, ``"7/10"``) or
    ``verdict``/``correct``; ``"Score: 7/10"`` / ``"score 8 out of 10"``; ``"Score: 8"``
    (``/ scale``) or ``"Score: 85%"``; ``"Verdict: correct"``; ``"**8**"`` / ``"**8/10**"``;
    ``"7/10"``, ``"4 out of 5"``, ``"85%"`` anywhere; a reply whose only judgement word is
    correct or incorrect; a reply that is only a number.
    """
    if not isinstance(text, str) or not text.strip():
        return None, "empty reply"
    text = text[-MAX_REPLY_CHARS:]
    for found in reversed(list(_JSON_RE.finditer(text))):
        score = _score_from_json(found.group(0), scale)
        if score is not None:
            return score, "json"
    match: re.Match[str] | None = _last(_LABELED_FRACTION_RE, text)
    if match and (score := _ratio(match.group(1), match.group(2))) is not None:
        return score, "labelled fraction"
    match = _last(_LABELED_NUMBER_RE, text)
    if match:
        score = _ratio(match.group(1), "100" if match.group(2) else _scale_for(match.group(1), scale))
        if score is not None:
            return score, "labelled score"
    match = _last(_VERDICT_RE, text)
    if match and (word := _polarity(match.group(1))) is not None:
        return word, "verdict"
    match = _last(_BOLD_NUMBER_RE, text)
    if match and (score := _ratio(match.group(1), match.group(2) or str(scale))) is not None:
        return score, "bold number"
    match = _last(_FRACTION_RE, text)
    if match and (score := _ratio(match.group(1), match.group(2))) is not None:
        return score, "fraction"
    match = _last(_PERCENT_RE, text)
    if match and (score := _ratio(match.group(1), "100")) is not None:
        return score, "percent"
    negative, positive = bool(_NEGATIVE_RE.search(text)), bool(_POSITIVE_RE.search(text))
    if negative != positive:
        return (0.0 if negative else 1.0), "judgement word"
    bare = text.strip().strip("*`'\". ")
    if re.fullmatch(_NUM, bare) and (score := _ratio(bare, str(scale))) is not None:
        return score, "bare number"
    return None, "no score found"


def _score_from_json(blob: str, scale: float) -> float | None:
    try:
        data = json.loads(blob)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    data = {str(k).lower(): v for k, v in data.items()}
    for key in ("score", "rating", "grade", "points"):
        if key not in data:
            continue
        value = data[key]
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        if isinstance(value, (int, float)):
            out_of = data.get("max_score", data.get("out_of", data.get("max", scale)))
            return _ratio(str(value), str(out_of) if "max_score" in data or "out_of" in data or "max" in data
                          else _scale_for(str(value), scale))
        if isinstance(value, str):
            score, _ = parse_judge_score(value if "/" in value or "%" in value else f"score: {value}", scale)
            if score is not None:
                return score
    for key in ("verdict", "correct", "is_correct", "judgement", "judgment", "decision"):
        if key in data:
            value = data[key]
            if isinstance(value, bool):
                return 1.0 if value else 0.0
            if isinstance(value, str) and (word := _polarity(value)) is not None:
                return word
    return None


def _polarity(word: str) -> float | None:
    if _NEGATIVE_RE.search(word):
        return 0.0
    if _POSITIVE_RE.search(word):
        return 1.0
    return None


def _scale_for(value: str, scale: float) -> str:
    """What a bare score is out of: ``scale``, except that a fraction strictly between 0 and 1
    ("0.8") is read as already normalised."""
    try:
        number = float(value)
    except ValueError:
        return str(scale)
    return "1" if "." in value and 0 < number < 1 else str(scale)


def _ratio(value: str, out_of: str | None) -> float | None:
    try:
        number, total = float(value), float(out_of or "nan")
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(number) and math.isfinite(total)) or total <= 0:
        return None
    return min(1.0, max(0.0, number / total))


def _last(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for last in pattern.finditer(text):  # noqa: B007 -- only the last one is wanted
        pass
    return last


def _reason_from_reply(reply: str) -> str:
    for match in reversed(list(_JSON_RE.finditer(reply))):
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and isinstance(data.get("reason"), str):
            return _short(data["reason"], 200)
    return _short(reply.strip().splitlines()[0] if reply.strip() else "", 120)


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
