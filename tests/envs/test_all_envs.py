"""``check_env`` over every registered env, and each check failing on an env built to fail it."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest

import plyground
from plyground.envs import TextEnv, check_env
from plyground.envs.checker import (
    check_determinism,
    check_malformed_actions,
    check_reward_range,
    check_snapshot_restore,
    check_text_api,
)
from plyground.errors import MissingComponentError


def _check_kwargs(spec: plyground.EnvSpec, tmp_path: Path) -> dict[str, Any]:
    """Constructor arguments that keep an expensive env's check short."""
    if spec.id == "ALFWorld-v0":
        # One small official-format game (3 receptacles): check_env resets some 30 times, and a
        # generated game per seed would be a fresh engine load each (seconds in a kitchen). The
        # generator's seeding is tested in tests/envs/test_alfworld.py.
        from plyground.envs.alfworld.engine import textworld_available

        if not textworld_available():
            return {}  # make() then raises MissingComponentError: skipped
        from plyground.envs.alfworld import generate_game, write_official_game

        game = write_official_game(generate_game("look_at_obj_in_light", np.random.default_rng(122)), tmp_path)
        return {"game_paths": game}
    return {}


@pytest.mark.parametrize("spec", plyground.list_envs(), ids=lambda spec: spec.id)
def test_check_env_passes(spec: plyground.EnvSpec, tmp_path: Path) -> None:
    try:
        env = plyground.make(spec.id, **_check_kwargs(spec, tmp_path))
    except MissingComponentError as exc:
        pytest.skip(str(exc))
    try:
        check_env(env, nondeterministic=spec.nondeterministic, reward_range=spec.reward_range)
    finally:
        env.close()


# -- envs that break one rule each ----------------------------------------------------------------
class Echo(TextEnv):
    """A well-behaved two-turn env the broken ones below change one thing of."""

    instructions = "Say anything."
    max_turns = 2
    reward_range = (0.0, 1.0)

    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.secret = int(rng.integers(100))
        return f"secret {self.secret}", {}

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        return f"you said {action[:10]!r}", 0.0, False, {}


class RaisesOnEmpty(Echo):
    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        if not action:
            raise ValueError("empty action")
        return super()._step(action)


_counter = itertools.count()


class Nondeterministic(Echo):
    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        return f"tick {next(_counter)}", 0.0, False, {}


class RewardTooHigh(Echo):
    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        return "ok", 5.0, False, {}


class ForgetfulSnapshot(Echo):
    """A native snapshot that keeps the turn but forgets the secret."""

    def snapshot(self) -> Any:
        return {"turn": self.turn, "obs": self._last_observation}

    def restore(self, state: Any) -> str:
        self.turn, self._done = state["turn"], False
        return "restored"


class NoInstructions(Echo):
    instructions = ""


def test_the_echo_env_passes() -> None:
    check_env(Echo())


def test_check_malformed_actions_fails_on_an_exception() -> None:
    with pytest.raises(AssertionError, match=r"^check_malformed_actions failed on RaisesOnEmpty: ValueError: empty action$"):
        check_malformed_actions(RaisesOnEmpty())


def test_check_determinism_fails_on_a_nondeterministic_env() -> None:
    with pytest.raises(AssertionError, match=r"^check_determinism failed on Nondeterministic: a second seeded run: step 1 "):
        check_determinism(Nondeterministic())
    check_env(Nondeterministic(), nondeterministic=True)


def test_check_reward_range_fails_on_a_reward_outside() -> None:
    with pytest.raises(AssertionError, match=r"^check_reward_range failed on RewardTooHigh: reward 5\.0 is outside reward_range \(0\.0, 1\.0\)$"):
        check_reward_range(RewardTooHigh())
    check_reward_range(RewardTooHigh(), reward_range=(0.0, 5.0))


def test_check_snapshot_restore_fails_on_a_lossy_snapshot() -> None:
    with pytest.raises(AssertionError, match=r"^check_snapshot_restore failed on ForgetfulSnapshot: first restore at step 1 gave 'restored', not \"you said 'hello'\"$"):
        check_snapshot_restore(ForgetfulSnapshot())


def test_check_text_api_fails_without_instructions() -> None:
    with pytest.raises(AssertionError, match=r"^check_text_api failed on NoInstructions: instructions are empty$"):
        check_text_api(NoInstructions())


def test_a_gymnasium_spec_names_the_env_by_its_registered_id() -> None:
    env = RaisesOnEmpty()
    env.spec = gymnasium.envs.registration.EnvSpec("plyground/EchoForTest-v0")
    with pytest.raises(AssertionError, match=r"^check_malformed_actions failed on EchoForTest-v0: "):
        check_malformed_actions(env)
