"""Text environments and their registry.

A new env is one module plus one ``register(...)`` line below (or in your own package).
"""

from plyground.envs.checker import check_env
from plyground.envs.core import EnvSnapshot, TextEnv, TextSpace
from plyground.envs.registration import EnvSpec, list_envs, make, register, spec

__all__ = [
    "EnvSnapshot",
    "EnvSpec",
    "TextEnv",
    "TextSpace",
    "check_env",
    "list_envs",
    "make",
    "register",
    "spec",
]

# -- built-in environments -------------------------------------------------------------------
register(
    "GuessNumber-v0",
    "plyground.envs.guess_number:GuessNumberEnv",
    kind="multi-turn",
    max_turns=10,
    reward_range=(0.0, 1.0),
    description="Find a hidden integer in 1..N from higher/lower feedback.",
)
register(
    "Arithmetic-v0",
    "plyground.envs.arithmetic:ArithmeticEnv",
    kind="single-turn",
    max_turns=1,
    reward_range=(0.0, 1.0),
    description="Solve one generated arithmetic problem; scored by the numeric verifier.",
)
register(
    "Wordle-v0",
    "plyground.envs.lmrl.wordle:WordleEnv",
    kind="multi-turn",
    max_turns=6,
    reward_range=(-1.0, 0.0),
    description="LMRL-Gym Wordle: six guesses, G/Y/B feedback; the benchmark's 431-word vocabulary.",
)
register(
    "Wordle-Official-v0",
    "plyground.envs.lmrl.wordle:WordleEnv",
    kind="multi-turn",
    max_turns=6,
    reward_range=(-1.0, 0.0),
    description="Wordle with the official lists: 2,315 answers, 12,972 allowed guesses.",
    answers="official",
    allowed="official-guesses",
)
register(
    "Maze-v0",
    "plyground.envs.lmrl.maze:MazeEnv",
    kind="multi-turn",
    max_turns=101,
    reward_range=(-4.0, 0.0),
    description="LMRL-Gym Maze, fully observed: goal, position and walls; 100 moves.",
)
register(
    "Maze-PO-v0",
    "plyground.envs.lmrl.maze:MazeEnv",
    kind="multi-turn",
    max_turns=101,
    reward_range=(-4.0, 0.0),
    description="LMRL-Gym Maze, partially observed: only the walls around you; 100 moves.",
    fully_observed=False,
)
