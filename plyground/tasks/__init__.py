"""Problem sets as ``Task`` lists, read from their upstream formats (see ``plyground.tasks.loaders``),
and hints in tiers (``plyground.tasks.hints``). The theorem sets are read next to their provers and
listed here too: ``load_minif2f_lean`` (miniF2F's Lean 4 statements) and ``load_coq_theorems`` (the
170 graded Coq theorems shipped with the package)."""

from plyground.proving.coq import load_coq_theorems
from plyground.proving.lean_repl import load_minif2f_lean
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
    "load_coq_theorems",
    "load_gsm8k",
    "load_jsonl",
    "load_local_dataset",
    "load_math",
    "load_minif2f_lean",
    "load_problems",
    "reasoning_gym_tasks",
    "solution_hints",
    "validate_tasks",
]
