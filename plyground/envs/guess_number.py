"""Guess the number: find a hidden integer from "higher" / "lower" feedback."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plyground.envs.core import EnvSnapshot, TextEnv
from plyground.types import Message

# The last integer in the reply is the guess. A minus sign counts only when it is not glued to a
# preceding digit ("1-100" reads as 1 and 100), and "42.5" is read whole so it can be refused.
_GUESS_RE = re.compile(r"(?<!\d)-?\d+(?:\.\d+)?")
_MAX_GUESS_DIGITS = 12  # longer numerals are out of range anyway; int() of them would be slow


class GuessNumberEnv(TextEnv):
    """
    ## Description
    The env picks an integer uniformly from ``1..n``; the agent guesses and is told whether the
    hidden number is higher or lower. Binary search finds it in ``ceil(log2(n + 1))`` guesses
    (7 for ``n = 100``), so the game tests whether a model keeps track of the feedback.

    ## Action Space
    Free text. The last integer in the text is the guess, so ``"50"``, ``"I guess 50"`` and
    ``"Action: 50"`` are the same action. No integer, a non-integer (``"42.5"``) or a number outside
    ``1..n`` is an invalid action: the observation says what was wrong and the turn counts.

    ## Observation Space
    Text. At reset: the range and the number of guesses allowed. After a guess: ``"Higher."`` or
    ``"Lower."`` with the bound it implies (``"The number is greater than 50."``) and the guesses
    left, or the reason an action was refused.

    ## Starting State
    The hidden number is drawn from the env's ``np_random`` at reset, or set with
    ``reset(options={"target": k})``.

    ## Rewards
    1.0 for the correct guess, 0.0 for every other step.

    ## Episode End
    Terminated on the correct guess; truncated after ``max_turns`` guesses (the last observation
    then reveals the number).

    ## Information
    ``success`` (the number was found), ``valid_action`` (the reply held a guess in range) and
    ``guess`` (the parsed guess, or None).

    ## Arguments
    ``n`` (default 100): the upper end of the range ``1..n``. ``max_turns`` (default 10): the number
    of guesses allowed. ``render_mode``: ``"ansi"`` renders the last observation.

    ## Version History
    - v0: first version.
    """

    reward_range = (0.0, 1.0)

    def __init__(self, n: int = 100, max_turns: int = 10, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.n = int(n)
        self.max_turns = int(max_turns)
        self.instructions = (
            f"Let's play a guessing game. I am thinking of an integer between 1 and {self.n} "
            f"(inclusive). You have {self.max_turns} guesses. After each guess I tell you whether "
            "the number is higher or lower than your guess. Reply with your guess as a single "
            "integer, for example: 50. If you write more than the number, the last integer in your "
            "reply is taken as your guess."
        )
        self.target = 0

    # -- dynamics ------------------------------------------------------------------------------
    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if "target" in options:
            target = int(options["target"])
            if not 1 <= target <= self.n:
                raise ValueError(f"target must be in 1..{self.n}, got {target}")
        else:
            target = int(rng.integers(1, self.n + 1))
        self.target = target
        obs = (
            f"I am thinking of an integer between 1 and {self.n}. "
            f"You have {self.max_turns} guesses. What is your first guess?"
        )
        return obs, {"guess": None}

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        guess, problem = self._parse(action)
        left = self.max_turns - self.turn
        if guess is None:
            info: dict[str, Any] = {"guess": None, "valid_action": False}
            return f"{problem} {self._guesses_left(left)}", 0.0, False, info
        info = {"guess": guess, "valid_action": True}
        if guess == self.target:
            info["success"] = True
            return f"Correct! The number was {self.target}.", 1.0, True, info
        if guess < self.target:
            feedback = f"Higher. The number is greater than {guess}."
        else:
            feedback = f"Lower. The number is less than {guess}."
        return f"{feedback} {self._guesses_left(left)}", 0.0, False, info

    def _parse(self, action: str) -> tuple[int | None, str]:
        """The guess in ``action``, or None and a sentence saying what was wrong."""
        last = deque(_GUESS_RE.finditer(action), maxlen=1)
        retry = f"Reply with an integer from 1 to {self.n}."
        if not last:
            return None, f"Invalid guess: your reply contains no integer. {retry}"
        text = last[0].group(0)
        if "." in text:
            return None, f"Invalid guess: {text} is not a whole number. {retry}"
        if len(text.lstrip("-")) > _MAX_GUESS_DIGITS or not 1 <= int(text) <= self.n:
            shown = text if len(text) <= 20 else text[:17] + "..."
            return None, f"Invalid guess: {shown} is out of range; the number is from 1 to {self.n}."
        return int(text), ""

    def state_key(self) -> str:
        """What search dedupes on: the interval the feedback so far leaves, and the guesses used.
        The observation names only the last bound, so it would merge different knowledge states."""
        low, high = 1, self.n
        for action in self._actions:
            guess, _ = self._parse(action)
            if guess is None or guess == self.target:
                continue
            if guess < self.target:
                low = max(low, guess + 1)
            else:
                high = min(high, guess - 1)
        return f"{low}..{high} after {self.turn}"

    def _guesses_left(self, left: int) -> str:
        if left > 0:
            return f"You have {left} guess{'es' if left != 1 else ''} left."
        return f"You are out of guesses. The number was {self.target}."

    # -- native snapshot: the whole state is a few integers -------------------------------------
    def snapshot(self) -> GuessNumberState:
        return GuessNumberState(
            target=self.target,
            **self._episode_fields(),
        )

    def restore(self, state: Any) -> str:
        if isinstance(state, EnvSnapshot):  # a replay snapshot works too
            return super().restore(state)
        if not isinstance(state, GuessNumberState):
            raise TypeError(f"GuessNumberEnv.restore expects a GuessNumberState, got {type(state).__name__}")
        self.target = state.target
        self._restore_episode_fields(state)
        # The generator goes where replay would leave it, so a later unseeded reset() matches too.
        return state.last_observation


@dataclass(frozen=True)
class GuessNumberState:
    """``GuessNumberEnv.snapshot()``: the game state plus what the base class tracks."""

    target: int
    turn: int
    done: bool
    last_observation: str
    actions: tuple[str, ...]
    options: dict[str, Any] | None
    episode_rng_state: dict[str, Any]
    rng_state: dict[str, Any]


class BisectionPolicy:
    """Plays GuessNumber optimally (binary search) from the observation text alone.

    For benchmarks and tests: ``reset()`` at the start of an episode (a reset observation, which
    states the range, also starts over), then ``act(observation)`` after every observation.
    """

    _RANGE = re.compile(r"between (-?\d+) and (-?\d+)")
    _GREATER = re.compile(r"greater than (-?\d+)")
    _LESS = re.compile(r"less than (-?\d+)")

    def __init__(self, n: int = 100) -> None:
        self.n = n
        self.low, self.high = 1, n

    def reset(self) -> None:
        self.low, self.high = 1, self.n

    def act(self, observation: str) -> str:
        if m := self._RANGE.search(observation):
            self.low, self.high = int(m.group(1)), int(m.group(2))
        if m := self._GREATER.search(observation):
            self.low = max(self.low, int(m.group(1)) + 1)
        if m := self._LESS.search(observation):
            self.high = min(self.high, int(m.group(1)) - 1)
        return str((self.low + self.high) // 2)


def bisection_chat_policy(chat: Sequence[Message]) -> str:
    """``BisectionPolicy`` as a chat policy (for ``ScriptedBackend``): replays the user messages."""
    policy = BisectionPolicy()
    reply = ""
    for message in chat:
        if message.role == "user":
            reply = policy.act(message.content)
    return reply
