"""Trainers: a config dataclass plus one module per method, on the shared loop in ``core``.

``TRAINERS`` maps the CLI's algorithm names to ``(config class, trainer class)``.
"""

from __future__ import annotations

from typing import Any

from plyground.trainers.core import SyncWeights, TrainConfig, Trainer
from plyground.trainers.dpo import DPOConfig, DPOTrainer
from plyground.trainers.grpo import GRPOConfig, GRPOTrainer
from plyground.trainers.guide import GuideConfig, GuideTrainer
from plyground.trainers.mrt import MRTConfig, MRTTrainer
from plyground.trainers.ppo import PPOConfig, PPOTrainer
from plyground.trainers.scaf_grpo import ScafGRPOConfig, ScafGRPOTrainer
from plyground.trainers.sft import SFTConfig, SFTTrainer

TRAINERS: dict[str, tuple[type[TrainConfig], type[Any]]] = {
    "sft": (SFTConfig, SFTTrainer),
    "grpo": (GRPOConfig, GRPOTrainer),
    "dpo": (DPOConfig, DPOTrainer),
    "ppo": (PPOConfig, PPOTrainer),
    "guide": (GuideConfig, GuideTrainer),
    "scaf-grpo": (ScafGRPOConfig, ScafGRPOTrainer),
    "mrt": (MRTConfig, MRTTrainer),
}

__all__ = [
    "TRAINERS",
    "DPOConfig",
    "DPOTrainer",
    "GRPOConfig",
    "GRPOTrainer",
    "GuideConfig",
    "GuideTrainer",
    "MRTConfig",
    "MRTTrainer",
    "PPOConfig",
    "PPOTrainer",
    "ScafGRPOConfig",
    "ScafGRPOTrainer",
    "SFTConfig",
    "SFTTrainer",
    "SyncWeights",
    "TrainConfig",
    "Trainer",
]
