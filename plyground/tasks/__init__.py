"""Problem sets as ``Task`` lists, read from their upstream formats (see ``plyground.tasks.loaders``)."""

from plyground.tasks.loaders import (
    ValidationReport,
    gsm8k_gold,
    load_gsm8k,
    load_jsonl,
    load_math,
    validate_tasks,
)

__all__ = ["ValidationReport", "gsm8k_gold", "load_gsm8k", "load_jsonl", "load_math", "validate_tasks"]
