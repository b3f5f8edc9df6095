"""Rollouts: LLM agents playing TextEnvs, recorded as Trajectories (token-in, token-out)."""

from plyground.rollout.agent import build_chat, parse_action
from plyground.rollout.collector import (
    EpisodeSpec,
    RolloutConfig,
    collect,
    collect_sync,
    episode_specs,
    play_episode,
)
from plyground.rollout.tokens import TokenLedger

__all__ = [
    "EpisodeSpec",
    "RolloutConfig",
    "TokenLedger",
    "build_chat",
    "collect",
    "collect_sync",
    "episode_specs",
    "parse_action",
    "play_episode",
]
