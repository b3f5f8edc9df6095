"""``TextEnv``: a Gymnasium env whose observations and actions are strings.

What a subclass writes: ``_reset(rng, options) -> (observation, info)`` and
``_step(action) -> (observation, reward, terminated, info)``, and sets ``instructions`` and
``max_turns``. The base class handles seeding, turn counting and truncation at ``max_turns``,
the ``success`` / ``valid_action`` keys of ``info``, and a default ``snapshot()`` / ``restore()``
that replays the seed and the action history (override both when the env has cheap native state).

Contract (checked by :func:`plyground.envs.check_env`):
- ``step`` never raises on a malformed or illegal action: it answers with an observation that says
  what was wrong, ``info["valid_action"] = False``, and the turn counts.
- ``terminated`` means the task ended (solved or lost); ``truncated`` means the turn limit hit.
  They are separate because a trainer bootstraps values on truncation and not on termination.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

# Long enough for any observation or action we produce; Gymnasium's Text space needs a bound.
MAX_TEXT_LENGTH = 1_000_000
# The longest string ``TextSpace.sample()`` draws by default.
SAMPLE_MAX_LENGTH = 256


class TextSpace(spaces.Text):
    """A Gymnasium ``Text`` space that admits any Unicode string up to ``MAX_TEXT_LENGTH``."""

    def __init__(self, max_length: int = MAX_TEXT_LENGTH) -> None:
        super().__init__(max_length=max_length, min_length=0, charset=_ALNUM)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random string of at most ``SAMPLE_MAX_LENGTH`` characters unless ``mask`` sets a length.

        Gymnasium would draw the length up to ``max_length``: half a megabyte of noise per sample,
        which makes its env checker take seconds per env and tests nothing short noise does not.
        """
        if mask is None and probability is None:
            mask = (int(self.np_random.integers(0, min(self.max_length, SAMPLE_MAX_LENGTH) + 1)), None)
        return super().sample(mask=mask, probability=probability)


# The charset only matters for ``sample()``: sampling from all of Unicode is useless noise.
_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789 "


@dataclass
class EnvSnapshot:
    """What ``TextEnv.snapshot`` returns by default: enough to rebuild the state by replay."""

    rng_state: dict[str, Any]
    options: dict[str, Any] | None
    actions: list[str] = field(default_factory=list)


class TextEnv(gym.Env[str, str]):
    """Base class of every plyground environment (see the module docstring for the contract).

    Attributes a subclass sets: ``instructions`` (the system prompt for the agent) and
    ``max_turns`` (the horizon; ``step`` truncates there). ``reward_range`` should be set too.
    """

    # Gymnasium's Env declares ``metadata`` as an instance attribute; it is shared per class here.
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}  # type: ignore[misc]
    instructions: str = ""
    max_turns: int = 1
    reward_range: tuple[float, float] = (-float("inf"), float("inf"))

    def __init__(self, render_mode: str | None = None) -> None:
        self.observation_space = TextSpace()
        self.action_space = TextSpace()
        self.render_mode = render_mode
        self.turn = 0
        self._episode_rng_state: dict[str, Any] = {}
        self._options: dict[str, Any] | None = None
        self._actions: list[str] = []
        self._last_observation = ""
        self._done = False

    # -- what subclasses write -------------------------------------------------------------
    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError  # abstract: every env defines its start state

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        raise NotImplementedError  # abstract: every env defines its dynamics

    # -- the Gymnasium API -------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        # The generator's state at the start of the episode, not the seed, defines the episode:
        # Gymnasium keeps one generator across unseeded resets.
        self._episode_rng_state = copy.deepcopy(dict(self.np_random.bit_generator.state))
        return self._begin(dict(options) if options else None)

    def _begin(self, options: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
        self._options = options
        self._actions = []
        self.turn = 0
        self._done = False
        obs, info = self._reset(self.np_random, dict(options or {}))
        info.setdefault("success", False)
        info.setdefault("valid_action", True)
        self._last_observation = obs
        return obs, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        if not isinstance(action, str):
            action = "" if action is None else str(action)
        self._actions.append(action)
        self.turn += 1
        obs, reward, terminated, info = self._step(action)
        info.setdefault("success", False)
        info.setdefault("valid_action", True)
        truncated = not terminated and self.turn >= self.max_turns
        self._done = terminated or truncated
        self._last_observation = obs
        return obs, float(reward), bool(terminated), bool(truncated), info

    def render(self) -> str | None:
        return self._last_observation if self.render_mode == "ansi" else None

    # -- search support ----------------------------------------------------------------------
    def snapshot(self) -> Any:
        """A state that ``restore`` returns to; by default the seed and the actions so far."""
        return EnvSnapshot(copy.deepcopy(self._episode_rng_state), self._options, list(self._actions))

    def restore(self, state: Any) -> str:
        """Return to a snapshot; gives the observation at that point."""
        if not isinstance(state, EnvSnapshot):
            raise TypeError(f"{type(self).__name__}.restore expects an EnvSnapshot, got {type(state).__name__}")
        if self._np_random is None:
            super().reset()
        self.np_random.bit_generator.state = copy.deepcopy(state.rng_state)
        self._episode_rng_state = copy.deepcopy(state.rng_state)
        obs, _ = self._begin(state.options)
        for action in state.actions:
            obs, *_ = self.step(action)
        return obs

    # -- helpers for native snapshots ---------------------------------------------------------------
    def _episode_fields(self) -> dict[str, Any]:
        """The base class's episode bookkeeping as keyword arguments for an env's own snapshot
        dataclass (fields turn, done, last_observation, actions, options, episode_rng_state,
        rng_state), so a native snapshot only adds the env's own state."""
        return {
            "turn": self.turn,
            "done": self._done,
            "last_observation": self._last_observation,
            "actions": tuple(self._actions),
            "options": copy.deepcopy(self._options),
            "episode_rng_state": copy.deepcopy(self._episode_rng_state),
            "rng_state": copy.deepcopy(dict(self.np_random.bit_generator.state)),
        }

    def _restore_episode_fields(self, state: Any) -> None:
        """Undo ``_episode_fields``: put the bookkeeping of a native snapshot back."""
        self.turn, self._done = state.turn, state.done
        self._last_observation = state.last_observation
        self._actions = list(state.actions)
        self._options = copy.deepcopy(state.options)
        self._episode_rng_state = copy.deepcopy(state.episode_rng_state)
        self.np_random.bit_generator.state = copy.deepcopy(state.rng_state)

    @property
    def done(self) -> bool:
        return self._done
