"""Trainers: a config dataclass plus one module per method, on the shared loop in ``core``.

``TRAINERS`` maps the CLI's algorithm names to ``(config class, trainer class)``.
"""

from __future__ import annotations

from typing import Any

from plyground.trainers.agent_q import AgentQConfig, AgentQTrainer
from plyground.trainers.archer import ArCHerConfig, ArCHerTrainer
from plyground.trainers.baselines import (
    FilteredBCConfig,
    FilteredBCTrainer,
    ReinforceConfig,
    ReinforceTrainer,
)
from plyground.trainers.bfs_prover import BFSProverConfig, BFSProverTrainer
from plyground.trainers.core import SyncWeights, TrainConfig, Trainer
from plyground.trainers.dpo import DPOConfig, DPOTrainer
from plyground.trainers.grpo import GRPOConfig, GRPOTrainer
from plyground.trainers.guide import GuideConfig, GuideTrainer
from plyground.trainers.mrt import MRTConfig, MRTTrainer
from plyground.trainers.ppo import PPOConfig, PPOTrainer
from plyground.trainers.scaf_grpo import ScafGRPOConfig, ScafGRPOTrainer
from plyground.trainers.score import SCoReConfig, SCoReTrainer
from plyground.trainers.sft import SFTConfig, SFTTrainer

TRAINERS: dict[str, tuple[type[TrainConfig], type[Any]]] = {
    "sft": (SFTConfig, SFTTrainer),
    "grpo": (GRPOConfig, GRPOTrainer),
    "dpo": (DPOConfig, DPOTrainer),
    "ppo": (PPOConfig, PPOTrainer),
    "guide": (GuideConfig, GuideTrainer),
    "scaf-grpo": (ScafGRPOConfig, ScafGRPOTrainer),
    "mrt": (MRTConfig, MRTTrainer),
    "archer": (ArCHerConfig, ArCHerTrainer),
    "score": (SCoReConfig, SCoReTrainer),
    "agent-q": (AgentQConfig, AgentQTrainer),
    "bfs-prover": (BFSProverConfig, BFSProverTrainer),
    "filtered-bc": (FilteredBCConfig, FilteredBCTrainer),
    "reinforce": (ReinforceConfig, ReinforceTrainer),
}

__all__ = [
    "TRAINERS",
    "AgentQConfig",
    "AgentQTrainer",
    "ArCHerConfig",
    "ArCHerTrainer",
    "BFSProverConfig",
    "BFSProverTrainer",
    "DPOConfig",
    "DPOTrainer",
    "FilteredBCConfig",
    "FilteredBCTrainer",
    "GRPOConfig",
    "GRPOTrainer",
    "GuideConfig",
    "GuideTrainer",
    "MRTConfig",
    "MRTTrainer",
    "PPOConfig",
    "PPOTrainer",
    "ReinforceConfig",
    "ReinforceTrainer",
    "SCoReConfig",
    "SCoReTrainer",
    "SFTConfig",
    "SFTTrainer",
    "ScafGRPOConfig",
    "ScafGRPOTrainer",
    "SyncWeights",
    "TrainConfig",
    "Trainer",
]
