"""ALFWorld on TextWorld's PDDL engine: expert wins, official-format loading, no leftover processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import plyground
from plyground.envs.alfworld.engine import textworld_available

pytestmark = pytest.mark.skipif(not textworld_available(), reason="textworld[pddl] / alfworld not installed")

if textworld_available():
    from plyground.envs.alfworld import (
        TASK_TYPES,
        AlfWorldEnv,
        find_games,
        generate_game,
        write_official_game,
    )
else:  # pragma: no cover
    TASK_TYPES = ()


def _play_expert(env: AlfWorldEnv, seed: int, task_type: str) -> float:
    env.reset(seed=seed, options={"task_type": task_type})
    reward = 0.0
    for command in env.expert_plan():
        _, reward, terminated, truncated, _ = env.step(command)
        if terminated or truncated:
            break
    return reward


def _expert_win_rate(task_type: str, n: int) -> float:
    env = AlfWorldEnv(task_type=task_type)
    try:
        return sum(_play_expert(env, seed, task_type) for seed in range(n)) / n
    finally:
        env.close()


@pytest.fixture(scope="module")
def shared_env() -> Iterator[AlfWorldEnv]:
    env = AlfWorldEnv()
    yield env
    env.close()


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_expert_wins_a_generated_game(shared_env: AlfWorldEnv, task_type: str) -> None:
    assert _play_expert(shared_env, 0, task_type) == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_expert_wins_95_percent_of_50_games(task_type: str) -> None:
    assert _expert_win_rate(task_type, 50) >= 0.95


def test_genuine_text_admissible_commands_invalid_and_put_phrasing() -> None:
    env = plyground.make("ALFWorld-v0", task_type="pick_and_place_simple")
    try:
        obs, info = env.reset(seed=3)
        assert obs.startswith("-= Welcome to TextWorld, ALFRED! =-")
        assert "Your task is to: put some" in obs
        assert any(c.startswith("go to ") for c in info["admissible_commands"])
        obs, reward, terminated, _, info = env.step("x" * 10_000)
        assert obs == "Nothing happens." and not info["valid_action"] and reward == 0.0
        plan = env.expert_plan()  # type: ignore[attr-defined]
        assert plan[-1].startswith("move ")
        for command in plan[:-1]:
            env.step(command)
        obj, recep = plan[-1].removeprefix("move ").split(" to ")
        _, reward, terminated, _, info = env.step(f"put {obj} in/on {recep}")
        assert reward == 1.0 and terminated and info["won"]
    finally:
        env.close()


def test_official_layout_games_load_from_a_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    written = [write_official_game(generate_game(t, rng), tmp_path, trial=f"trial_T20190101_00000{i}_000000")
               for i, t in enumerate(("pick_heat_then_place_in_recep", "pick_two_obj_and_place"))]
    assert (written[0].parent / "traj_data.json").exists() and (written[0].parent / "initial_state.pddl").exists()
    assert find_games(tmp_path, ("pick_two_obj_and_place",)) == [written[1]]
    env = AlfWorldEnv(task_type="pick_heat_then_place_in_recep", game_paths=tmp_path)
    try:
        assert env.game_files == [written[0]]
        obs, info = env.reset(seed=0)
        assert "put a hot" in obs and info["task_type"] == "pick_heat_then_place_in_recep"
        reward = 0.0
        for command in env.expert_plan():
            _, reward, *_ = env.step(command)
        assert reward == 1.0
    finally:
        env.close()


def test_close_leaves_no_process_and_a_dead_engine_restarts() -> None:
    env = AlfWorldEnv(task_type="pick_and_place_simple", expert_plan=True)
    env.reset(seed=1)
    pid = env.engine.pid
    assert pid is not None and env.engine.alive()
    os.kill(pid, 9)
    env.engine._proc.wait(5)  # type: ignore[union-attr]
    _, _, _, _, info = env.step("look")  # the worker is restarted and given its game back
    assert env.engine.alive() and env.engine.pid != pid and info["expert_plan"]
    new_pid = env.engine.pid
    env.close()
    assert not env.engine.alive()
    assert new_pid is not None and not Path(f"/proc/{new_pid}").exists()
