"""plyground: train and evaluate LLM agents and reasoners with reinforcement learning."""

from plyground.envs import EnvSpec, TextEnv, list_envs, make, register, spec
from plyground.types import (
    Completion,
    Message,
    SamplingParams,
    Task,
    TokenRecord,
    Trajectory,
    Turn,
    Verdict,
)

__version__ = "0.1.0"

__all__ = [
    "Completion",
    "EnvSpec",
    "Message",
    "SamplingParams",
    "Task",
    "TextEnv",
    "TokenRecord",
    "Trajectory",
    "Turn",
    "Verdict",
    "list_envs",
    "make",
    "register",
    "spec",
]
