"""Evaluation: run a backend on an env for N episodes x K samples and summarise."""

from plyground.evaluation.harness import EvalConfig, ResumeMismatchError, evaluate
from plyground.evaluation.metrics import EvalSummary, pass_at_k, summarize

__all__ = ["EvalConfig", "EvalSummary", "ResumeMismatchError", "evaluate", "pass_at_k", "summarize"]
