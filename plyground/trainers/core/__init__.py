"""Shared trainer machinery: log-probabilities, losses, and the optimisation loop."""

from plyground.trainers.core.logprobs import collate, token_logprobs
from plyground.trainers.core.loop import EpochSampler, StepTotals, SyncWeights, TrainConfig, Trainer

__all__ = ["EpochSampler", "StepTotals", "SyncWeights", "TrainConfig", "Trainer", "collate", "token_logprobs"]
