"""Verifiers: ``verify(task, response) -> Verdict``, pure, thread-safe, time-limited, never raising
on model output (see ``plyground.verifiers.base``)."""

from plyground.verifiers.base import Verifier
from plyground.verifiers.lean import LeanProofVerifier
from plyground.verifiers.numeric import NumericVerifier, extract_final_answer, parse_number
from plyground.verifiers.progress import ProgressVerifier, StepProgress

__all__ = [
    "LeanProofVerifier",
    "NumericVerifier",
    "ProgressVerifier",
    "StepProgress",
    "Verifier",
    "extract_final_answer",
    "parse_number",
]


def __getattr__(name: str) -> object:
    # The math verifier pulls in SymPy and math-verify; import it only when asked for.
    if name in ("MathVerifier", "extract_answer", "is_equivalent"):
        from plyground.verifiers import math as _math

        return getattr(_math, name)
    raise AttributeError(f"module 'plyground.verifiers' has no attribute {name!r}")
