"""Hints in the Scaf-GRPO tiers: knowledge -> planning -> solution, each in cumulative levels.

A :class:`HintSet` holds, per tier, the hint pieces ``h1..hl``; level ``k`` of a tier is the first
``k`` pieces together (``level(tier, k)``), as in Scaf-GRPO, where a failing group is retried with
Knowledge levels 1..4, then Planning 1..4, then Solution 1..4 (``ladder()``). ``Task.hints`` is the
pieces flattened in that order (abstract -> concrete, ``to_list()``), and
``Task.metadata["hint_tiers"]`` keeps the tiers so they survive a JSON round trip
(``attach_hints`` / ``HintSet.from_task``).

Sources:

- CHAMP's concepts (knowledge) and human-written hints (planning): ``plyground.tasks.loaders.load_champ``.
- The reference solution, cut into cumulative chunks: :func:`solution_hints`.
- Any backend, writing all three tiers from the problem and its solution, cached on disk as JSON:
  :func:`generate_hints`.

The final answer never appears in the knowledge and planning tiers: hints that state it
(:func:`leaks_answer`) are dropped there. Solution hints stop before the step that states it.

The prompt format is Scaf-GRPO's: system ``SCAF_SYSTEM_PROMPT``, user
``"Question: {q}\\n{Tier} Hints: {hints}"`` (:func:`hinted_prompt`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from plyground.types import Message, SamplingParams, Task

TIERS: tuple[str, ...] = ("knowledge", "planning", "solution")
TIER_LABELS = {"knowledge": "Knowledge", "planning": "Planning", "solution": "Solution"}
DEFAULT_LEVELS = 4
SCAF_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass
class HintSet:
    """Hint pieces per tier (``knowledge``, ``planning``, ``solution``), each ordered; level ``k``
    of a tier is its first ``k`` pieces (cumulative)."""

    knowledge: list[str] = field(default_factory=list)
    planning: list[str] = field(default_factory=list)
    solution: list[str] = field(default_factory=list)

    @property
    def tiers(self) -> dict[str, list[str]]:
        return {"knowledge": self.knowledge, "planning": self.planning, "solution": self.solution}

    def levels(self, tier: str) -> int:
        """How many cumulative levels ``tier`` has."""
        return len(self.tiers[_tier(tier)])

    def level(self, tier: str, k: int) -> str:
        """The text of level ``k`` of ``tier``: its first ``k`` pieces, one per line (``k`` is
        clipped to the tier's size; ``k <= 0`` gives ``""``)."""
        pieces = self.tiers[_tier(tier)]
        return "\n".join(pieces[: max(0, k)])

    def to_list(self) -> list[str]:
        """All pieces, abstract -> concrete: knowledge, then planning, then solution (``Task.hints``)."""
        return [*self.knowledge, *self.planning, *self.solution]

    def ladder(self) -> list[tuple[str, int]]:
        """The Scaf-GRPO escalation: ``(tier, k)`` for every level of every non-empty tier, in
        order; hint level ``n >= 1`` of an env is ``ladder()[n - 1]``."""
        return [(tier, k) for tier in TIERS for k in range(1, self.levels(tier) + 1)]

    def at(self, hint_level: int) -> tuple[str, str] | None:
        """``(tier, text)`` of step ``hint_level`` of the ladder (1-based, clipped to the last);
        None for level 0 or an empty set."""
        ladder = self.ladder()
        if hint_level <= 0 or not ladder:
            return None
        tier, k = ladder[min(hint_level, len(ladder)) - 1]
        return tier, self.level(tier, k)

    def __len__(self) -> int:
        return len(self.ladder())

    def to_dict(self) -> dict[str, list[str]]:
        return {tier: list(pieces) for tier, pieces in self.tiers.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HintSet:
        return cls(**{tier: [str(p) for p in data.get(tier) or [] if str(p).strip()] for tier in TIERS})

    @classmethod
    def from_task(cls, task: Task, levels: int = DEFAULT_LEVELS) -> HintSet:
        """The task's tiers: ``metadata["hint_tiers"]`` when present; else ``Task.hints`` as the
        planning tier. A missing solution tier is cut from ``metadata["solution"]`` when the task
        has a worked solution (so GSM8K and MATH tasks get solution hints for free)."""
        tiers = task.metadata.get("hint_tiers") if isinstance(task.metadata, dict) else None
        hints = cls.from_dict(tiers) if isinstance(tiers, dict) else cls(planning=list(task.hints))
        solution = task.metadata.get("solution") if isinstance(task.metadata, dict) else None
        if not hints.solution and isinstance(solution, str) and solution.strip():
            hints.solution = solution_hints(solution, levels=levels, answer=task.answer)
        return hints


def _tier(tier: str) -> str:
    name = tier.lower()
    if name not in TIERS:
        raise ValueError(f"unknown hint tier {tier!r}; tiers: {', '.join(TIERS)}")
    return name


def attach_hints(task: Task, hints: HintSet) -> Task:
    """A copy of ``task`` carrying ``hints``: ``Task.hints = hints.to_list()`` and the tiers in
    ``metadata["hint_tiers"]``."""
    metadata = dict(task.metadata)
    metadata["hint_tiers"] = hints.to_dict()
    return replace(task, hints=hints.to_list(), metadata=metadata)


def format_hint(tier: str, text: str) -> str:
    """``"Planning Hints: ..."``: one tier's hint line as Scaf-GRPO writes it."""
    return f"{TIER_LABELS[_tier(tier)]} Hints: {text}"


def hinted_prompt(question: str, hints: HintSet | None = None, hint_level: int = 0) -> str:
    """The Scaf-GRPO user prompt: ``"Question: {q}"`` plus, for ``hint_level >= 1``, the ladder's
    step ``hint_level`` as ``"\\n{Tier} Hints: {hints}"``."""
    prompt = f"Question: {question}"
    step = hints.at(hint_level) if hints is not None else None
    if step is not None:
        prompt += "\n" + format_hint(*step)
    return prompt


# -- hints from the reference solution ---------------------------------------------------------
_CALC_RE = re.compile(r"<<[^<>]*>>")  # GSM8K calculator annotations
_ASY_RE = re.compile(r"\[asy\].*?\[/asy\]", re.S)
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\\$(])")
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def solution_steps(solution: str) -> list[str]:
    """A worked solution as steps: its lines, or its sentences when it is one paragraph; GSM8K
    ``<<...>>`` annotations, Asymptote figures and the ``#### answer`` line removed."""
    text = _ASY_RE.sub("", _CALC_RE.sub("", solution or ""))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("####")]
    if len(lines) <= 1:
        lines = [s.strip() for s in _SENTENCE_RE.split(" ".join(lines)) if s.strip()]
    return lines


def solution_hints(
    solution: str, levels: int = DEFAULT_LEVELS, answer: str | None = None, hide_answer: bool = True
) -> list[str]:
    """The solution tier cut from a worked solution: at most ``levels`` consecutive chunks of its
    steps (:func:`solution_steps`), nearly equal in size, so that level ``k`` (the first ``k``
    chunks) reveals more of the solution at each level.

    With ``hide_answer`` (the default) the steps from the last one on that states the final answer
    (``\\boxed{...}``, or ``answer`` when given and :func:`leaks_answer` finds it) are left out, so
    even the last level leaves the final step to the solver; at least one step is kept.
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    steps = solution_steps(solution)
    if hide_answer:
        while len(steps) > 1 and (
            "\\boxed" in steps[-1] or (answer is not None and leaks_answer(steps[-1], answer))
        ):
            steps.pop()
        steps = [s for s in steps if "\\boxed" not in s]
    if not steps:
        return []
    count = min(levels, len(steps))
    bounds = [round(i * len(steps) / count) for i in range(count + 1)]
    return [" ".join(steps[bounds[i] : bounds[i + 1]]) for i in range(count)]


def leaks_answer(text: str, answer: str | None) -> bool:
    """Does ``text`` state ``answer``? Numbers are compared by value (``1,200`` states ``1200``;
    single-digit answers are too common to tell and never count); other answers of three or more
    characters by substring, ignoring spaces and ``$``."""
    if not text or answer is None:
        return False
    gold = answer.strip().strip("$").replace(",", "").strip()
    value = _number(gold)
    if value is not None:
        if len(gold.lstrip("-")) < 2:
            return False
        return any(_number(m.group(0).replace(",", "")) == value for m in _NUMBER_RE.finditer(text))
    squeezed = re.sub(r"[\s$]", "", gold)
    return len(squeezed) >= 3 and squeezed in re.sub(r"[\s$]", "", text)


def _number(text: str) -> Fraction | None:
    if not re.fullmatch(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:/\d+)?", text):
        return None
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def drop_leaks(hints: HintSet, answer: str | None) -> HintSet:
    """``hints`` without the knowledge and planning pieces that state ``answer``."""
    return HintSet(
        knowledge=[h for h in hints.knowledge if not leaks_answer(h, answer)],
        planning=[h for h in hints.planning if not leaks_answer(h, answer)],
        solution=list(hints.solution),
    )


# -- hints written by a model ----------------------------------------------------------------------
HINT_WRITER_PROMPT = """You write hints for a math problem, for a student who is stuck. Write three tiers of hints, each as a list of at most {levels} short pieces that build on one another:
- "knowledge": the concepts, definitions or theorems the problem needs (no problem-specific numbers);
- "planning": the strategy, step by step, without carrying out the computations;
- "solution": the first steps of the worked solution, stopping before the final answer.
Never state the final answer ({answer}) in any hint.
Reply with JSON only: {{"knowledge": [...], "planning": [...], "solution": [...]}}

Problem:
{problem}

Reference solution:
{solution}"""


def hint_prompt(task: Task, levels: int = DEFAULT_LEVELS, template: str = HINT_WRITER_PROMPT) -> str:
    solution = task.metadata.get("solution") if isinstance(task.metadata, dict) else None
    return template.format(
        levels=levels,
        answer=task.answer if task.answer is not None else "unknown",
        problem=task.prompt,
        solution=solution or "(none given)",
    )


def parse_hint_reply(text: str, levels: int = DEFAULT_LEVELS) -> HintSet:
    """A model's reply -> tiers. Reads the JSON object (also inside a code fence or among prose);
    failing that, sections headed ``Knowledge:`` / ``Planning:`` / ``Solution:`` with one piece
    per line (bullets and numbers stripped). At most ``levels`` pieces per tier; unreadable -> empty."""
    hints = _parse_hint_json(text)
    if hints is None:
        hints = _parse_hint_sections(text)
    return HintSet(**{tier: pieces[:levels] for tier, pieces in hints.tiers.items()})


def _parse_hint_json(text: str) -> HintSet | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    data = {str(k).lower(): v for k, v in data.items()}
    tiers: dict[str, list[str]] = {}
    for tier in TIERS:
        value = data.get(tier)
        if isinstance(value, str):
            value = [value]
        tiers[tier] = [str(v).strip() for v in value or [] if str(v).strip()] if isinstance(value, list) else []
    return HintSet(**tiers)


_SECTION_RE = re.compile(r"^\W*(knowledge|planning|solution)\b[^:\n]*:\s*(.*)$", re.I)


def _parse_hint_sections(text: str) -> HintSet:
    tiers: dict[str, list[str]] = {tier: [] for tier in TIERS}
    current: str | None = None
    for raw in text.splitlines():
        match = _SECTION_RE.match(raw.strip())
        if match:
            current = match.group(1).lower()
            rest = match.group(2).strip()
            if rest:
                tiers[current].append(rest)
            continue
        piece = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", raw).strip()
        if current is not None and piece:
            tiers[current].append(piece)
    return HintSet(**tiers)


def generate_hints(
    task: Task,
    backend: Any,
    cache_dir: str | Path | None = None,
    levels: int = DEFAULT_LEVELS,
    params: SamplingParams | None = None,
    template: str = HINT_WRITER_PROMPT,
) -> HintSet:
    """Hints written by ``backend`` (any ``Backend``) from the task and its worked solution.

    The reply is parsed by :func:`parse_hint_reply`; knowledge and planning pieces that state the
    answer are dropped. With ``cache_dir``, the result is a JSON file keyed by the task id, the
    model (``backend.model_name``, else ``backend.name``) and the prompt's hash: a second call
    with the same key does not call the backend. An empty result is not cached. Backend errors
    propagate (a hint writer is offline tooling, not a verifier).
    """
    prompt = hint_prompt(task, levels, template)
    model = _model_name(backend)
    path = _cache_path(cache_dir, task.id, model, prompt) if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            return HintSet.from_dict(cached["hints"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a torn or foreign file: regenerate
    params = params or SamplingParams(max_tokens=512, temperature=0.0, logprobs=False)
    chat = [Message("user", prompt)]
    text = backend.generate([chat], params)[0][0].text
    hints = drop_leaks(parse_hint_reply(text, levels), task.answer)
    if path is not None and len(hints):
        record = {
            "task_id": task.id,
            "model": model,
            "prompt_sha256": _sha(prompt),
            "reply": text,
            "hints": hints.to_dict(),
        }
        write_json_atomic(path, record)
    return hints


def _model_name(backend: Any) -> str:
    name = getattr(backend, "model_name", None)
    return str(name) if isinstance(name, str) and name else str(getattr(backend, "name", type(backend).__name__))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _cache_path(cache_dir: str | Path, *parts: str) -> Path:
    return Path(cache_dir) / f"{_sha(chr(0).join(parts))[:32]}.json"


def write_json_atomic(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def hint_tasks(tasks: Sequence[Task], levels: int = DEFAULT_LEVELS) -> list[Task]:
    """Each task with its tiers attached (:meth:`HintSet.from_task`): solution hints cut from
    ``metadata["solution"]`` where the task has no tiers yet."""
    return [attach_hints(t, HintSet.from_task(t, levels)) for t in tasks]
