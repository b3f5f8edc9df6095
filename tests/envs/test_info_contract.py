"""The ``info`` contract of every registered env (DESIGN.md, Environments): ``info`` carries
``success`` and ``valid_action``, and where the game knows its legal actions,
``admissible_actions``: a list of strings, each of which is a valid action when stepped."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import plyground
from plyground.errors import MissingComponentError

# Envs whose game knows its legal actions: they must list them (the random proposer, the env
# server's /actions and the checker's probe policy read ``admissible_actions``).
KNOW_THEIR_ACTIONS = {
    "ALFWorld-v0",
    "Chess-v0",
    "Endgames-v0",
    "Maze-v0",
    "Maze-PO-v0",
    "TextNav-v0",
    "TextNav-PO-v0",
    "WebShop-v0",
    "WebShop-Browser-v0",
}
# A template slot in an admissible action (WebShop's ``search[<keywords>]``): filled before stepping.
_SLOT = re.compile(r"<[a-z_]+>")
STEPS = 6


def _kwargs(env_id: str, tmp_path: Path) -> dict[str, Any]:
    """Constructor arguments that keep an expensive env short: ALFWorld plays one small
    official-format game (as tests/envs/test_all_envs.py) instead of generating a kitchen."""
    if env_id != "ALFWorld-v0":
        return {}
    from plyground.envs.alfworld.engine import textworld_available

    if not textworld_available():
        return {}  # make() then raises MissingComponentError: skipped
    from plyground.envs.alfworld import generate_game, write_official_game

    return {"game_paths": write_official_game(generate_game("look_at_obj_in_light", np.random.default_rng(122)), tmp_path)}


def _assert_contract(env_id: str, info: dict[str, Any], where: str, done: bool) -> list[str] | None:
    assert isinstance(info.get("success"), bool), f"{env_id} {where}: info['success'] is {info.get('success')!r}"
    assert isinstance(info.get("valid_action"), bool), f"{env_id} {where}: info['valid_action'] missing"
    if env_id in KNOW_THEIR_ACTIONS:
        assert "admissible_actions" in info, f"{env_id} {where}: info lacks 'admissible_actions'"
    actions = info.get("admissible_actions")
    if actions is None:
        return None
    assert isinstance(actions, list), f"{env_id} {where}: admissible_actions is a {type(actions).__name__}"
    assert all(isinstance(a, str) and a for a in actions), f"{env_id} {where}: {actions[:5]!r}"
    if not done:
        assert actions, f"{env_id} {where}: no admissible action while the episode goes on"
    return actions


@pytest.mark.parametrize("env_id", [spec.id for spec in plyground.list_envs()])
def test_admissible_actions_are_strings_and_valid_when_played(env_id: str, tmp_path: Path) -> None:
    try:
        env = plyground.make(env_id, **_kwargs(env_id, tmp_path))
    except MissingComponentError as exc:
        pytest.skip(str(exc))
    rng = np.random.default_rng(0)
    try:
        _, info = env.reset(seed=0)
        actions = _assert_contract(env_id, info, "reset", done=False)
        if actions is None:
            return  # nothing more to check: the env does not list its actions
        for turn in range(1, STEPS + 1):
            action = actions[int(rng.integers(len(actions)))]
            action = _SLOT.sub("shirt", action)
            _, _, terminated, truncated, info = env.step(action)
            assert info["valid_action"] is True, f"{env_id} turn {turn}: admissible {action!r} was invalid"
            actions = _assert_contract(env_id, info, f"turn {turn}", done=terminated or truncated)
            if terminated or truncated:
                break
            assert actions is not None, f"{env_id} turn {turn}: admissible_actions stopped being listed"
    finally:
        env.close()
