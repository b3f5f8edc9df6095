"""A hand-written 3-step deterministic TextEnv and fixed proposers for the search tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from plyground.envs.core import TextEnv
from plyground.search.proposer import Proposal
from plyground.search.tree import Node


class ChainEnv(TextEnv):
    """Pick three letters; success iff they spell ``target``.

    Admissible: ``a``, ``b``, ``c`` (a letter) and ``wait`` (valid, changes nothing: a
    transposition of the current state). Anything else is invalid (``valid_action = False``),
    changes nothing and costs the turn. The episode ends after three letters (reward 1 on
    success, else 0) or at ``max_turns``."""

    reward_range = (0.0, 1.0)
    ACTIONS = ("a", "b", "c", "wait")

    def __init__(self, target: str = "abc", max_turns: int = 6, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        self.target, self.max_turns = target, max_turns
        self.instructions = "Spell the hidden three-letter word, one letter (a, b or c) per turn."
        self.letters = ""

    def _obs(self) -> str:
        return f"letters so far: '{self.letters}'"

    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.letters = ""
        return self._obs(), {"admissible_actions": list(self.ACTIONS)}

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        info: dict[str, Any] = {"admissible_actions": list(self.ACTIONS)}
        action = action.strip()
        if action == "wait":
            return self._obs(), 0.0, False, info
        if action not in ("a", "b", "c"):
            info["valid_action"] = False
            return f"error: {action!r} is not a letter. " + self._obs(), 0.0, False, info
        self.letters += action
        if len(self.letters) == 3:
            won = self.letters == self.target
            info["success"] = won
            return ("solved! " if won else "wrong word. ") + self._obs(), float(won), True, info
        return self._obs(), 0.0, False, info

    def state_key(self) -> str:
        return self.letters


class FixedProposer:
    """Proposes the same actions with fixed mean log-probabilities at every node and records
    which nodes it was asked to expand (one ``propose`` = one batched call)."""

    def __init__(self, actions: dict[str, float]) -> None:
        self.actions = actions
        self.instructions = ""
        self.expanded: list[str] = []
        self.calls = self.prompts = self.generations = 0

    def prepare(self, env: TextEnv) -> None:
        self.instructions = env.instructions

    def propose(self, nodes: Sequence[Node], k: int) -> list[list[Proposal]]:
        self.calls += 1
        self.prompts += len(nodes)
        out = []
        for node in nodes:
            self.expanded.append(node.key)
            props = [Proposal(a, f"I pick {a}", lp) for a, lp in list(self.actions.items())[:k]]
            self.generations += len(props)
            out.append(props)
        return out

    def usage(self) -> dict[str, float]:
        return {"calls": self.calls, "prompts": self.prompts, "generations": self.generations, "tokens": 0, "model_s": 0.0}
