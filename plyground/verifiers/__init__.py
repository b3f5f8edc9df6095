"""Verifiers: ``verify(task, response) -> Verdict``, pure, thread-safe, time-limited, never raising
on model output (see ``plyground.verifiers.base``)."""

from plyground.verifiers.base import Verifier
from plyground.verifiers.numeric import NumericVerifier, extract_final_answer, parse_number

__all__ = ["NumericVerifier", "Verifier", "extract_final_answer", "parse_number"]
