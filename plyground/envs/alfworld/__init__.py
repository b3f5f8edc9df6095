"""ALFWorld on the real TextWorld PDDL engine (see :mod:`plyground.envs.alfworld.env`)."""

from plyground.envs.alfworld.env import AlfWorldEnv, normalize_command
from plyground.envs.alfworld.generator import TASK_TYPES, find_games, generate_game, write_official_game

__all__ = ["TASK_TYPES", "AlfWorldEnv", "find_games", "generate_game", "normalize_command", "write_official_game"]
