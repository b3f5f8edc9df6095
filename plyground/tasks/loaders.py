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
- Any JSONL file, naming the prompt, answer and id fields (``load_jsonl``); GSM8K or MATH told
  apart by their fields (``load_problems``); local json/csv/parquet through ``datasets`` when it is
  installed (``load_local_dataset``).
- CHAMP (PyPI ``champ-dataset``): problems, concepts and human-written hints -> tiered hints
  (``load_champ``).
- reasoning-gym (PyPI ``reasoning-gym``): seeded procedural generators such as ``gsm_symbolic``
  and ``basic_arithmetic`` (``reasoning_gym_tasks``, ``iter_reasoning_gym``).
"""

from __future__ import annotations

import json
import re
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


# -- CHAMP (PyPI ``champ-dataset``) -------------------------------------------------------------
_CHAMP_ANSWER_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # "C(10, 5), or equivalently 252" -> the checkable form after "or equivalently"
    (re.compile(r"^.*?,\s*or equivalently\s+(.+)$", re.S), r"\1"),
    # "5/14, or approximately 35.7%" / "C(n, 4), or an equivalent form such as ..." -> the first form
    (re.compile(r"^(.+?),\s*or (?:approximately|an equivalent form).*$", re.S), r"\1"),
    # "100 (i.e., all values)", "0 (none of the values)" -> the number
    (re.compile(r"^(.+?)\s*\((?:i\.e\.|none|no )[^)]*\)\s*$", re.S), r"\1"),
    (re.compile(r"^(-?\w+) is the only possible value$"), r"\1"),
    (re.compile(r"^The (?:limit exists and is equal to|only possible value for the limit is) (.+)$"), r"\1"),
    (re.compile(r"^(-?\d+|n|k-2) (?:values|pairs|roots|times|inequalities)$"), r"\1"),
)


def champ_answer(raw: str) -> str:
    """CHAMP's free-form answer -> the checkable part, as LaTeX where it is plain math.

    ``"C(10, 5), or equivalently 252"`` -> ``"252"``; ``"100 (i.e., all values)"`` -> ``"100"``;
    ``"0 is the only possible value"`` -> ``"0"``; ``"sqrt(3)/3"`` -> ``"\\sqrt{3}/3"``;
    ``"2^(n-1)"`` -> ``"2^{n-1}"``. Prose answers ("No integer solutions") are returned as they
    are: they need a judge (``plyground.verifiers.judge``), and validation reports them.
    """
    answer = raw.strip()
    for pattern, replacement in _CHAMP_ANSWER_RULES:
        if pattern.match(answer):
            answer = pattern.sub(replacement, answer).strip()
    return _plain_math_to_latex(answer)


def _plain_math_to_latex(text: str) -> str:
    """``sqrt(x)`` -> ``\\sqrt{x}``, ``a^(b)`` -> ``a^{b}``, ``C(n, k)`` -> ``\\binom{n}{k}`` (balanced
    parentheses only; anything else is left alone)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        for token, opener in (("sqrt(", "\\sqrt{"), ("^(", "^{"), ("C(", "\\binom{")):
            if text.startswith(token, i) and (token != "C(" or i == 0 or not text[i - 1].isalnum()):
                end = _closing_paren(text, i + len(token) - 1)
                if end is None:
                    continue
                inner = _plain_math_to_latex(text[i + len(token) : end])
                if token == "C(":
                    parts = inner.split(",")
                    if len(parts) != 2:
                        continue
                    inner = parts[0].strip() + "}{" + parts[1].strip()
                out.append(opener + inner + "}")
                i = end + 1
                break
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _closing_paren(text: str, start: int) -> int | None:
    depth = 0
    for j in range(start, len(text)):
        if text[j] == "(":
            depth += 1
        elif text[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    return None


def load_champ(version: str = "v0", categories: list[str] | None = None) -> list[Task]:
    """The CHAMP competition problems (PyPI ``champ-dataset``, MIT; 270 problems) -> tasks.

    ``Task.answer`` is :func:`champ_answer` of the published answer (kept whole in
    ``metadata["answer_raw"]``). Hints come in the Scaf-GRPO tiers (``plyground.tasks.hints``):
    knowledge = the problem's concepts (name and statement), planning = its human-written hints,
    solution = its worked solution steps in cumulative chunks; ``Task.hints`` is that ladder
    flattened (abstract -> concrete) and ``metadata["hint_tiers"]`` keeps the tiers. Knowledge and
    planning hints that state the final answer are dropped. ``metadata`` also keeps ``category``,
    ``concepts`` (id, name, category), ``solution`` (the steps joined) and ``solution_steps``.
    ``categories`` keeps only those CHAMP categories (``"Combinatorics"``, ``"Number-Theory"``,
    ``"Inequality"``, ``"Polynomial"``, ``"Sequence"``).
    """
    try:
        import champ_dataset
    except ImportError as exc:
        raise ImportError(
            "load_champ needs the CHAMP data: pip install champ-dataset (or plyground[math])"
        ) from exc
    from plyground.tasks.hints import HintSet, attach_hints, drop_leaks, solution_hints

    dataset = champ_dataset.load(version)
    tasks = []
    for problem in dataset.problems.values():
        if categories is not None and problem.category not in categories:
            continue
        concepts: list[Any] = []
        hints: list[Any] = []
        for ref in problem.ch_list or []:  # ids: "C_..." concepts, "H_..." hints
            (concepts if str(ref).startswith("C_") else hints).append(dataset[str(ref)])
        steps = [step.text for step in (problem.solution.steps if problem.solution else []) or []]
        solution = "\n".join(steps)
        answer = champ_answer(problem.answer or "")
        knowledge = [f"{c.name}: {c.text}" if c.name else str(c.text) for c in _unique(concepts)]
        planning = [str(h.text) for h in _unique(hints)]
        hint_set = drop_leaks(
            HintSet(knowledge=knowledge, planning=planning, solution=solution_hints(solution, answer=answer)),
            answer,
        )
        task = Task(
            id=f"champ/{problem.identifier}",
            prompt=str(problem.text),
            answer=answer or None,
            metadata={
                "source": "champ",
                "category": problem.category,
                "answer_raw": problem.answer,
                # Prose answers ("No integer solutions") validate as text but need a judge.
                "free_form": bool(re.search(r"[A-Za-z]{3,}\s+[A-Za-z]{3,}", answer)),
                "hints_dropped": len(knowledge) + len(planning) - len(hint_set.knowledge) - len(hint_set.planning),
                "solution": solution,
                "solution_steps": steps,
                "concepts": [
                    {"id": c.identifier, "name": c.name, "category": c.category} for c in _unique(concepts)
                ],
            },
        )
        tasks.append(attach_hints(task, hint_set))
    return tasks


def _unique(items: list[Any]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for item in items:
        if item.identifier not in seen:
            seen.add(item.identifier)
            out.append(item)
    return out


# -- reasoning-gym (PyPI ``reasoning-gym``) ------------------------------------------------------
def reasoning_gym_tasks(name: str, size: int = 100, seed: int = 0, **config: Any) -> list[Task]:
    """``size`` tasks from a reasoning-gym generator (``"gsm_symbolic"``, ``"basic_arithmetic"``,
    ... any name ``reasoning_gym.create_dataset`` knows), reproducible from ``seed``; extra keyword
    arguments are the generator's config (``min_terms=3``...). For an unlimited stream use
    :func:`iter_reasoning_gym`.

    ``Task.id`` is ``reasoning_gym/<name>/<seed>/<index>``; ``metadata`` keeps the generator's
    metadata (JSON-safe), and ``solution`` when the generator writes one (``answer_cot``).
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    try:
        import reasoning_gym
    except ImportError as exc:
        raise ImportError(
            "reasoning_gym_tasks needs the generators: pip install reasoning-gym (or plyground[math])"
        ) from exc
    dataset = reasoning_gym.create_dataset(name, size=size, seed=seed, **config)
    tasks = []
    for index in range(size):
        entry = dataset[index]
        extra = _json_safe(dict(entry.get("metadata") or {}))
        metadata: dict[str, Any] = {"source": "reasoning_gym", "generator": name, "seed": seed, "index": index}
        metadata["generator_metadata"] = extra
        if isinstance(extra, dict) and extra.get("answer_cot"):
            metadata["solution"] = str(extra["answer_cot"])
        answer = entry.get("answer")
        tasks.append(
            Task(
                id=f"reasoning_gym/{name}/{seed}/{index}",
                prompt=str(entry["question"]),
                answer=None if answer is None else str(answer),
                metadata=metadata,
            )
        )
    return tasks


def iter_reasoning_gym(name: str, seed: int = 0, chunk: int = 256, **config: Any) -> Iterator[Task]:
    """An endless, reproducible stream of reasoning-gym tasks: chunks of ``chunk`` tasks from seeds
    ``seed, seed + 1, ...``."""
    block = seed
    while True:
        yield from reasoning_gym_tasks(name, size=chunk, seed=block, **config)
        block += 1


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# -- local files through Hugging Face ``datasets`` -------------------------------------------------
def load_local_dataset(
    path: str | Path,
    prompt_key: str = "question",
    answer_key: str | None = "answer",
    id_key: str | None = None,
    split: str = "train",
    file_format: str | None = None,
) -> list[Task]:
    """Local files (json/jsonl, csv, parquet, or a folder ``datasets`` can read) -> tasks, through
    ``datasets.load_dataset``; nothing is downloaded (``HF_DATASETS_OFFLINE`` is set for the
    call and a non-local path is refused). ``datasets`` is optional: without it this raises an
    ``ImportError`` naming the install (plain jsonl needs no ``datasets``: see :func:`load_jsonl`).
    Fields as in :func:`load_jsonl`; ids default to ``<name>/<split>/<row>``."""
    local = Path(path)
    if not local.exists():
        raise FileNotFoundError(f"load_local_dataset reads local files only; {str(path)!r} does not exist")
    try:
        import datasets
    except ImportError as exc:
        raise ImportError(
            "load_local_dataset needs Hugging Face datasets: pip install datasets "
            "(for plain jsonl, plyground.tasks.loaders.load_jsonl needs nothing)"
        ) from exc
    import os

    suffix = (file_format or local.suffix.lstrip(".")).lower()
    builder = {"jsonl": "json", "json": "json", "csv": "csv", "parquet": "parquet"}.get(suffix)
    previous = os.environ.get("HF_DATASETS_OFFLINE")
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        if local.is_dir() and builder is None:
            loaded = datasets.load_dataset(str(local), split=split)
        else:
            if builder is None:
                raise ValueError(f"unknown file format {suffix!r}: pass file_format='json'|'csv'|'parquet'")
            loaded = datasets.load_dataset(builder, data_files={split: str(local)}, split=split)
    finally:
        if previous is None:
            os.environ.pop("HF_DATASETS_OFFLINE", None)
        else:
            os.environ["HF_DATASETS_OFFLINE"] = previous
    tasks = []
    for index, record in enumerate(loaded):
        if prompt_key not in record:
            raise ValueError(f"{path}: row {index} has no field {prompt_key!r} (fields: {sorted(record)})")
        answer = record.get(answer_key) if answer_key is not None else None
        task_id = record.get(id_key) if id_key is not None else None
        used = {prompt_key, answer_key, id_key}
        metadata = _json_safe({k: v for k, v in record.items() if k not in used})
        metadata["row"] = index
        tasks.append(
            Task(
                id=str(task_id) if task_id is not None else f"{local.stem}/{split}/{index}",
                prompt=str(record[prompt_key]),
                answer=None if answer is None else str(answer),
                metadata=metadata,
            )
        )
    return tasks


def load_problems(path: str | Path) -> list[Task]:
    """A jsonl in GSM8K format (``question`` + ``answer`` with ``####``) or MATH format
    (``problem`` + ``solution``/``answer``), told apart by the first record's fields."""
    for _, record in _read_jsonl(path):
        if "problem" in record:
            return load_math(path)
        if "question" in record:
            return load_gsm8k(path)
        raise ValueError(f"{path}: neither GSM8K (question/answer) nor MATH (problem/solution) records")
    return []
