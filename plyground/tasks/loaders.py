"""Task loaders: problem sets in their upstream formats -> ``list[Task]``.

Each loader reads one format as its authors publish it and keeps everything that is not the
prompt or the gold answer in ``Task.metadata`` (the worked solution, level, subject, source
line). ``validate_tasks`` then checks that every gold answer passes its own verifier and says how
many do not, and why.

- GSM8K (``openai/grade-school-math``): ``{"question", "answer"}``; the gold answer is the text
  after the final ``#### `` with thousands separators removed.
- MATH and MATH-500 (``hendrycks/math``, ``openai/prm800k``): ``{"problem", "solution",
  "answer", "level", "subject", "unique_id"}``; without ``answer`` the gold answer is the last
  ``\\boxed{...}`` of the solution.
- Any JSONL file, naming the prompt, answer and id fields.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plyground.types import Task, Verdict
from plyground.verifiers.base import Verifier
from plyground.verifiers.math import extract_answer


def _read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line_number, record)`` for each non-blank line; a malformed line is an error that
    names the file and line (data files are trusted input, so a bad one should stop loading)."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            yield number, record


def _require(record: dict[str, Any], key: str, path: str | Path, number: int) -> Any:
    if key not in record:
        raise ValueError(f"{path}:{number}: missing field {key!r} (fields: {sorted(record)})")
    return record[key]


def gsm8k_gold(solution: str) -> str | None:
    """The final answer of a GSM8K solution: the text after the last ``#### ``, without commas."""
    if "####" not in solution:
        return None
    return solution.rsplit("####", 1)[1].strip().replace(",", "") or None


def load_gsm8k(path: str | Path, split: str | None = None) -> list[Task]:
    """GSM8K jsonl (``question``, ``answer`` ending in ``#### <number>``) -> tasks.

    ``Task.id`` is ``gsm8k/<split>/<line index>`` (``split`` defaults to the file's stem);
    ``metadata`` keeps the worked ``solution``.
    """
    split = split or Path(path).stem
    tasks = []
    for index, (number, record) in enumerate(_read_jsonl(path)):
        solution = str(_require(record, "answer", path, number))
        tasks.append(
            Task(
                id=f"gsm8k/{split}/{index}",
                prompt=str(_require(record, "question", path, number)),
                answer=gsm8k_gold(solution),
                metadata={"source": "gsm8k", "split": split, "solution": solution, "line": number},
            )
        )
    return tasks


def load_math(path: str | Path) -> list[Task]:
    """MATH / MATH-500 jsonl -> tasks.

    ``Task.id`` is ``unique_id`` when present (``test/precalculus/807.json``), else
    ``math/<line index>``; ``metadata`` keeps ``solution``, ``level`` and ``subject``. A record
    without ``answer`` (the original MATH files) takes the last ``\\boxed{...}`` of its solution.
    """
    tasks = []
    for index, (number, record) in enumerate(_read_jsonl(path)):
        solution = str(record.get("solution", ""))
        answer = record.get("answer")
        if answer is None and solution:
            answer = extract_answer(solution) if "boxed" in solution or "fbox" in solution else None
        metadata: dict[str, Any] = {"source": "math", "solution": solution, "line": number}
        for key in ("level", "subject", "type"):
            if key in record:
                metadata[key] = record[key]
        tasks.append(
            Task(
                id=str(record.get("unique_id") or f"math/{index}"),
                prompt=str(_require(record, "problem", path, number)),
                answer=None if answer is None else str(answer),
                metadata=metadata,
            )
        )
    return tasks


def load_jsonl(
    path: str | Path, prompt_key: str, answer_key: str | None, id_key: str | None = None
) -> list[Task]:
    """Any jsonl of problems -> tasks: ``prompt_key`` and ``answer_key`` name the fields (the
    answer may be absent: ``answer_key=None`` or a missing field gives ``Task.answer = None``);
    ``id_key`` names the id field, else ids are ``<file stem>/<line index>``. All other fields go
    to ``metadata``."""
    stem = Path(path).stem
    tasks = []
    for index, (number, record) in enumerate(_read_jsonl(path)):
        answer = record.get(answer_key) if answer_key is not None else None
        task_id = record.get(id_key) if id_key is not None else None
        used = {prompt_key, answer_key, id_key}
        metadata = {k: v for k, v in record.items() if k not in used}
        metadata["line"] = number
        tasks.append(
            Task(
                id=str(task_id) if task_id is not None else f"{stem}/{index}",
                prompt=str(_require(record, prompt_key, path, number)),
                answer=None if answer is None else str(answer),
                metadata=metadata,
            )
        )
    return tasks


@dataclass
class ValidationReport:
    """How many tasks' gold answers pass their own verifier, and for those that fail, why.

    ``reasons`` counts failures by reason; ``examples`` holds the first few failures as
    ``{"id", "answer", "reason", "error"}``.
    """

    total: int = 0
    passed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.total - self.passed

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 1.0

    def summary(self) -> str:
        lines = [f"{self.passed}/{self.total} gold answers validate ({self.rate:.1%})"]
        for reason, count in self.reasons.most_common(5):
            lines.append(f"  {count} x {reason}")
        for example in self.examples[:5]:
            lines.append(f"  e.g. {example['id']}: {example['answer']!r} -> {example['reason']}")
        return "\n".join(lines)


def validate_tasks(
    tasks: list[Task], verifier: Verifier | None = None, max_examples: int = 20
) -> ValidationReport:
    """Check each task's gold answer against its own verifier (``Task.validate``)."""
    if verifier is None:
        from plyground.verifiers.math import MathVerifier

        verifier = MathVerifier()
    report = ValidationReport()
    for task in tasks:
        verdict: Verdict = task.validate(verifier)
        report.total += 1
        if verdict.correct:
            report.passed += 1
            continue
        # Group by the kind of failure, not the answer-specific text of the reason.
        kind = verdict.error or verdict.reason.rsplit("(", 1)[-1].rstrip(")")
        report.reasons[kind.split(" ")[0] if kind.startswith("unparsable") else kind] += 1
        if len(report.examples) < max_examples:
            report.examples.append(
                {"id": task.id, "answer": task.answer, "reason": verdict.reason, "error": verdict.error}
            )
    return report
