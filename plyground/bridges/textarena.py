"""TextArena games (``textarena.make(game_id)``) as plyground ``TextEnv``s.

``register_textarena()`` registers ``TextArena-<game id>`` plyground ids (``/`` in a game id
becomes ``_``), so the eval harness, the rollout and search run on TextArena games. Registration is
lazy: nothing is built until ``plyground.make``.

The agent plays one seat (``agent_player``, default 0); every other seat is played by an opponent,
a callable ``observation -> action`` (TextArena's own ``Agent`` objects are such callables, and
:class:`BackendOpponent` turns a plyground backend into one). The default opponent,
:class:`RandomMoveOpponent`, picks a bracketed move seen in its observation with a generator seeded
from the episode, so episodes are reproducible and the default snapshot (seed + action replay) works.

TextArena seeds Python's global ``random`` (and some games NumPy's) at reset; each env here keeps
those global states to itself between calls, so two games played interleaved (as search does)
replay exactly as they would alone. Rewards are TextArena's final rewards for the agent's seat,
given on the last step (win 1, loss -1, draw 0 in two-player games; single-player games score in
[-1, 1]); ``success`` is a reward of 1 or more.

Requires ``pip install textarena`` (the ``adapters`` extra). Some games need NLTK data or an
internet service; ``scripts/probe_textarena.py`` lists which reset offline
(``docs/textarena_offline.md``).
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from plyground.envs.core import TextEnv
from plyground.envs.registration import EnvSpec, register
from plyground.errors import EnvError
from plyground.rollout.agent import parse_action
from plyground.types import Message, SamplingParams

INSTALL_HINT = "pip install textarena  (or: pip install 'plyground[adapters]')"
PREFIX = "TextArena-"
Opponent = Callable[[str], str]

_MOVE = re.compile(r"\[([^\[\]\n]{1,40})\]")
# Bracketed words in TextArena observations that are speaker tags, not moves.
_TAGS = re.compile(r"^(GAME|Player \d+|Player|Game|[A-Z][a-z]+ \d+)$")
# The number of seats each game was found to accept (filled on first use).
_NUM_PLAYERS: dict[str, int] = {}


def _textarena() -> Any:
    try:
        import textarena
    except ImportError as exc:  # pragma: no cover - exercised only without the package
        raise EnvError(f"TextArena games need the textarena package: {INSTALL_HINT}") from exc
    return textarena


class RandomMoveOpponent:
    """Plays a random bracketed move from the latest part of its observation (``[3]``, ``[e2e4]``),
    else ``fallback``. Seeded per episode by the env, so games replay exactly."""

    def __init__(self, fallback: str = "[0]", window: int = 1500) -> None:
        self.fallback = fallback
        self.window = window
        self.rng = random.Random(0)

    def seed(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def __call__(self, observation: str) -> str:
        moves = [m for m in _MOVE.findall(observation[-self.window :]) if not _TAGS.match(m.strip())]
        if not moves:
            return self.fallback
        return f"[{self.rng.choice(sorted(set(moves)))}]"


class BackendOpponent:
    """A plyground ``Backend`` as an opponent: one chat per move (instructions + the observation),
    the reply parsed with :func:`plyground.rollout.agent.parse_action`."""

    def __init__(self, backend: Any, params: SamplingParams | None = None, instructions: str = "") -> None:
        self.backend = backend
        self.params = params or SamplingParams(max_tokens=64, temperature=0.0, logprobs=False)
        self.instructions = instructions or _INSTRUCTIONS

    def __call__(self, observation: str) -> str:
        chat = [Message("system", self.instructions), Message("user", observation)]
        completion = self.backend.generate([chat], self.params)[0][0]
        return parse_action(completion.text)


_INSTRUCTIONS = (
    "You are playing a TextArena game. The rules, the board and the other players' moves come in "
    "the user messages. Answer each with your move, written as the game asks (usually in square "
    "brackets, e.g. [3] or [e2e4])."
)


class TextArenaEnv(TextEnv):
    """One seat of a TextArena game; the other seats are played by ``opponent``.

    ``observation_mode``: ``"delta"`` (default) sends only what is new since the agent's last
    observation (TextArena's default wrappers repeat the whole history every turn, and the plyground
    chat already keeps it); ``"full"`` sends TextArena's observation as is.
    """

    reward_range = (-1.0, 1.0)

    def __init__(
        self,
        game_id: str,
        num_players: int | None = None,
        agent_player: int = 0,
        opponent: Opponent | None = None,
        observation_mode: str = "delta",
        max_turns: int = 100,
        game_kwargs: dict[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        if observation_mode not in ("delta", "full"):
            raise ValueError(f"observation_mode must be 'delta' or 'full', got {observation_mode!r}")
        self.game_id = game_id
        self.num_players = num_players
        self.agent_player = agent_player
        self.opponent: Opponent = opponent if opponent is not None else RandomMoveOpponent()
        self.observation_mode = observation_mode
        self.max_turns = max_turns
        self.game_kwargs = dict(game_kwargs or {})
        self.instructions = f"{_INSTRUCTIONS} This game is {game_id}."
        self._game: Any = None
        self._seen = ""
        self._finished = False
        self._final: tuple[str, float, dict[str, Any]] | None = None
        self._py_random: Any = None
        self._np_random_state: Any = None

    # -- global random state kept per env ------------------------------------------------------
    @contextlib.contextmanager
    def _own_random(self) -> Iterator[None]:
        outer, outer_np = random.getstate(), np.random.get_state()
        if self._py_random is not None:
            random.setstate(self._py_random)
            np.random.set_state(self._np_random_state)
        try:
            yield
        finally:
            self._py_random, self._np_random_state = random.getstate(), np.random.get_state()
            random.setstate(outer)
            np.random.set_state(outer_np)

    # -- TextEnv ---------------------------------------------------------------------------------
    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        ta = _textarena()
        seed = int(rng.integers(0, 2**31 - 1))
        self._py_random = None
        self._seen = ""
        self._finished = False
        self._final = None
        if hasattr(self.opponent, "seed"):
            self.opponent.seed(seed + 1)
        with self._own_random():
            random.seed(seed)
            np.random.seed(seed % 2**32)
            if self.num_players is None:
                self.num_players = detect_num_players(self.game_id, seed, **self.game_kwargs)
            # A fresh game each episode: TextArena's observation wrappers keep history across resets.
            self._game = ta.make(self.game_id, **self.game_kwargs)
            self._game.reset(num_players=self.num_players, seed=seed)
            observation = self._advance_opponents()
        info = {"player_id": self.agent_player, "num_players": self.num_players}
        return observation, info

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        if self._finished and self._final is not None:  # the game ended before the agent moved
            obs, reward, info = self._final
            return obs, reward, True, info
        with self._own_random():
            try:
                done, _ = self._game.step(action)
            except Exception as exc:  # a game that chokes on a malformed action: it still counts
                return (f"The game could not read the move {action[:80]!r} ({type(exc).__name__}: {exc}). "
                        "Try again."), 0.0, False, {"valid_action": False}
            state = self._game.state
            valid = int(getattr(state, "error_count", 0) or 0) == 0
            if not done:
                observation = self._advance_opponents()
                if not self._finished:
                    return observation, 0.0, False, {"valid_action": valid}
            else:
                self._finish()
        assert self._final is not None
        obs, reward, info = self._final
        info["valid_action"] = valid and not info["textarena"].get("invalid_move", False)
        return obs, reward, True, info

    # -- the game loop -------------------------------------------------------------------------
    def _advance_opponents(self) -> str:
        """Let the other seats move until it is the agent's turn; the agent's new observation."""
        for _ in range(10_000):
            player_id, observation = self._game.get_observation()
            if player_id == self.agent_player:
                return self._delta(_as_text(observation))
            done, _ = self._game.step(self.opponent(_as_text(observation)))
            if done:
                self._finish()
                return self._final[0] if self._final else ""
        raise EnvError(f"{self.game_id}: the opponents never handed the turn back")

    def _finish(self) -> None:
        state = self._game.state
        pending = [m[1] for m in state.observations.get(self.agent_player, [])]
        rewards, game_info = self._game.close()
        rewards = {k: _reward(v) for k, v in dict(rewards or {}).items()}
        reward = rewards.get(self.agent_player, 0.0)
        seat = dict((game_info or {}).get(self.agent_player, {}))
        reason = seat.get("reason") or ""
        lines = [*pending, f"Game over. {reason}".strip(), f"Your reward: {reward:g}"]
        info = {
            "success": reward >= 1.0,
            "textarena": {"rewards": {str(k): v for k, v in rewards.items()},
                          "reason": str(reason), "invalid_move": bool(seat.get("invalid_move", False))},
        }
        self._finished = True
        self._final = ("\n".join(line for line in lines if line), max(-1.0, min(1.0, reward)), info)

    def _delta(self, full: str) -> str:
        if self.observation_mode == "full":
            return full
        new = full[len(self._seen):].lstrip("\n") if full.startswith(self._seen) else full
        self._seen = full
        return new or full

    def close(self) -> None:
        if self._game is not None:
            with contextlib.suppress(Exception):
                self._game.close()
            self._game = None


def _reward(value: Any) -> float:
    """A TextArena reward as a float. Some games (textarena 0.7.4: Countdown, Cryptarithm,
    Slitherlink) pass their invalid-move message where the reward goes; that counts as a loss."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return -1.0


def _as_text(observation: Any) -> str:
    """TextArena observations are strings under its default wrappers, raw message lists without."""
    if isinstance(observation, str):
        return observation
    if isinstance(observation, list):
        return "\n".join(str(m[1]) if isinstance(m, tuple) and len(m) > 1 else str(m) for m in observation)
    return str(observation)


def detect_num_players(game_id: str, seed: int = 0, candidates: Sequence[int] = (1, 2, 3, 4, 5, 6),
                       **game_kwargs: Any) -> int:
    """The smallest seat count the game's ``reset`` accepts (cached per game id)."""
    if game_id in _NUM_PLAYERS:
        return _NUM_PLAYERS[game_id]
    ta = _textarena()
    last: Exception | None = None
    for n in candidates:
        try:
            ta.make(game_id, **game_kwargs).reset(num_players=n, seed=seed)
        except (AssertionError, ValueError, KeyError, IndexError) as exc:
            last = exc
            continue
        _NUM_PLAYERS[game_id] = n
        return n
    raise EnvError(f"{game_id}: no seat count in {list(candidates)} was accepted by reset ({last})")


def textarena_game_ids(include_variants: bool = True) -> list[str]:
    """TextArena's registered game ids, without its ``-raw`` / ``-train`` wrapper variants."""
    from textarena.envs.registration import ENV_REGISTRY

    ids = [i for i in ENV_REGISTRY if not i.endswith(("-raw", "-train"))]
    if not include_variants:
        ids = [i for i in ids if i.endswith("-v0")]
    return ids


def plyground_id(game_id: str) -> str:
    return PREFIX + game_id.replace("/", "_")


def register_textarena(
    ids: Sequence[str] | None = None,
    opponent: Callable[[], Opponent] | None = None,
    max_turns: int = 100,
    **env_kwargs: Any,
) -> list[EnvSpec]:
    """Register TextArena games as ``TextArena-<game id>`` plyground envs (lazily: no game is built).

    ``ids`` defaults to every TextArena game id (variants included, ``-raw``/``-train`` left out).
    ``opponent`` is a zero-argument factory (one opponent per env instance); the default is
    :class:`RandomMoveOpponent`. Other keyword arguments go to :class:`TextArenaEnv`.
    """
    game_ids = list(ids) if ids is not None else textarena_game_ids()
    specs = []
    for game_id in game_ids:

        def build(_game_id: str = game_id, **kwargs: Any) -> TextArenaEnv:
            merged = {"max_turns": max_turns, **env_kwargs, **kwargs}
            if opponent is not None and "opponent" not in merged:
                merged["opponent"] = opponent()
            return TextArenaEnv(_game_id, **merged)

        specs.append(register(
            plyground_id(game_id),
            build,
            kind="multi-turn",
            max_turns=max_turns,
            reward_range=(-1.0, 1.0),
            components=("textarena",),
            description=f"TextArena game {game_id} (textarena.make), other seats played by a fixed opponent",
        ))
    return specs
