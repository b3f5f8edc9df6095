"""Problem sets as ``Task`` lists, read from their upstream formats (see ``plyground.tasks.loaders``),
and hints in tiers (``plyground.tasks.hints``)."""

from plyground.tasks.hints import HintSet, solution_hints
from plyground.tasks.loaders import (
    ValidationReport,
    gsm8k_gold,
    iter_reasoning_gym,
    load_champ,
    load_gsm8k,
    load_jsonl,
    load_local_dataset,
    load_math,
    load_problems,
    reasoning_gym_tasks,
    validate_tasks,
)

__all__ = [
    "HintSet",
    "ValidationReport",
    "gsm8k_gold",
    "iter_reasoning_gym",
    "load_champ",
    "load_gsm8k",
    "load_jsonl",
    "load_local_dataset",
    "load_math",
    "load_problems",
    "reasoning_gym_tasks",
    "solution_hints",
    "validate_tasks",
]
