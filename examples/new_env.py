"""Write a new environment in one file, register it, and check it.

    .venv/bin/python examples/new_env.py

A TextEnv subclass writes `_reset` and `_step`; the base class handles seeding, turn counting,
truncation at `max_turns`, and snapshot/restore by replay (override them for cheap native state).
"""

from typing import Any

import gymnasium
import numpy as np

import plyground
from plyground.envs.checker import check_env
from plyground.inference.scripted import ScriptedBackend
from plyground.rollout import collect_sync, episode_specs


class ReverseWordEnv(plyground.TextEnv):
    """
    ## Description
    Spell a word backwards. One turn.

    ## Rewards
    1 for the exact reversed word, else 0.
    """

    max_turns = 1
    reward_range = (0.0, 1.0)
    instructions = "Reply with the given word spelled backwards, nothing else."
    words = ("planet", "reward", "search", "policy", "verifier")

    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.word = self.words[int(rng.integers(len(self.words)))]
        return f"Word: {self.word}", {}

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        if not action.strip():
            return "Empty reply: write the reversed word.", 0.0, True, {"valid_action": False}
        correct = action.strip().lower() == self.word[::-1]
        return ("Correct." if correct else f"Wrong: it was {self.word[::-1]}."), float(correct), True, {"success": correct}


plyground.register("ReverseWord-v0", ReverseWordEnv, kind="single-turn", max_turns=1, reward_range=(0.0, 1.0))

if __name__ == "__main__":
    check_env(plyground.make("ReverseWord-v0"))  # the same checks CI runs on every built-in env
    env = gymnasium.make("plyground/ReverseWord-v0")  # Gymnasium sees it too
    print(env.reset(seed=0)[0])

    # A scripted "model" that solves it, through the same rollout machinery an LLM uses.
    solver = ScriptedBackend(lambda chat: chat[-1].content.removeprefix("Word: ")[::-1])
    trajs = collect_sync(lambda: plyground.make("ReverseWord-v0"), solver, episode_specs(5))
    print("success rate:", sum(t.success for t in trajs) / len(trajs))
