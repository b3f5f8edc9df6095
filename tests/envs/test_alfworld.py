"""ALFWorld on TextWorld's PDDL engine: expert wins, official-format loading, no leftover processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

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


def _play_expert(env: AlfWorldEnv, seed: int, task_type: str, plan_timeout: float | None = None) -> float:
    env.reset(seed=seed, options={"task_type": task_type})
    reward = 0.0
    try:
        plan = env.expert_plan(timeout=plan_timeout)
    except TimeoutError:
        return 0.0  # the planner's search blew up: a loss
    for command in plan:
        _, reward, terminated, truncated, _ = env.step(command)
        if terminated or truncated:
            break
    return reward


def _expert_win_rate(task_type: str, n: int) -> float:
    env = AlfWorldEnv(task_type=task_type)
    try:
        return sum(_play_expert(env, seed, task_type, plan_timeout=300) for seed in range(n)) / n
    finally:
        env.close()


# Seeds whose generated game is in a small scene (3-10 receptacles; a kitchen, which heat and cool
# need, has 10 at the least): the engine's step and the planner's time grow with the scene.
SMALL_SEEDS = {
    "pick_and_place_simple": 122,
    "look_at_obj_in_light": 122,
    "pick_clean_then_place_in_recep": 17,
    "pick_heat_then_place_in_recep": 60,
    "pick_cool_then_place_in_recep": 60,
    "pick_two_obj_and_place": 122,
}


@pytest.fixture(scope="module")
def shared_env() -> Iterator[AlfWorldEnv]:
    """One env (one engine worker) for the default tests: starting a worker costs seconds."""
    env = AlfWorldEnv()
    yield env
    env.close()


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_expert_wins_a_generated_game(shared_env: AlfWorldEnv, task_type: str) -> None:
    assert _play_expert(shared_env, SMALL_SEEDS[task_type], task_type) == 1.0


# Measured 2026-11-26: 50/50 for five task types; pick_two 47/50, the planner timing out on three
# large-kitchen games (docs/results/alfworld_expert.md). The bar stays 95%; pick_two is a known gap.
_PICK_TWO_GAP = pytest.mark.xfail(reason="47/50: planner timeouts on large pick_two problems", strict=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    "task_type",
    [pytest.param(t, marks=_PICK_TWO_GAP) if t == "pick_two_obj_and_place" else t for t in TASK_TYPES],
)
def test_expert_wins_95_percent_of_50_games(task_type: str) -> None:
    assert _expert_win_rate(task_type, 50) >= 0.95


def test_generated_games_are_seeded() -> None:
    rng_a, rng_b, rng_c = (np.random.default_rng(s) for s in (5, 5, 6))
    for task_type in TASK_TYPES:
        a, b, c = generate_game(task_type, rng_a), generate_game(task_type, rng_b), generate_game(task_type, rng_c)
        assert a.data == b.data and a.problem != c.problem
        assert f"{a.goal_text}" in a.data["grammar"]


def test_genuine_text_admissible_commands_invalid_and_put_phrasing(shared_env: AlfWorldEnv) -> None:
    env = shared_env
    obs, info = env.reset(seed=SMALL_SEEDS["pick_and_place_simple"], options={"task_type": "pick_and_place_simple"})
    assert obs.startswith("-= Welcome to TextWorld, ALFRED! =-")
    assert "Your task is to: put some" in obs
    assert any(c.startswith("go to ") for c in info["admissible_commands"])
    obs, reward, terminated, _, info = env.step("x" * 10_000)
    assert obs == "Nothing happens." and not info["valid_action"] and reward == 0.0
    plan = env.expert_plan()
    assert plan[-1].startswith("move ")
    for command in plan[:-1]:
        env.step(command)
    obj, recep = plan[-1].removeprefix("move ").split(" to ")
    _, reward, terminated, _, info = env.step(f"put {obj} in/on {recep}")
    assert reward == 1.0 and terminated and info["won"]


def test_a_game_reset_again_replays_the_same(shared_env: AlfWorldEnv) -> None:
    """The worker reuses a game it parsed before; a reset must still start from the initial state."""
    env, seed, task_type = shared_env, SMALL_SEEDS["pick_two_obj_and_place"], "pick_two_obj_and_place"
    first_obs, first_info = env.reset(seed=seed, options={"task_type": task_type})
    plan = env.expert_plan()
    first = [env.step(command)[:3] for command in plan]
    env.reset(seed=SMALL_SEEDS["look_at_obj_in_light"], options={"task_type": "look_at_obj_in_light"})
    obs, info = env.reset(seed=seed, options={"task_type": task_type})
    assert obs == first_obs and info["admissible_commands"] == first_info["admissible_commands"]
    assert env.expert_plan() == plan
    assert [env.step(command)[:3] for command in plan] == first and first[-1][1] == 1.0


def test_official_layout_games_load_from_a_path(shared_env: AlfWorldEnv, tmp_path: Path) -> None:
    rng = np.random.default_rng(SMALL_SEEDS["look_at_obj_in_light"])
    written = [write_official_game(generate_game(t, rng), tmp_path, trial=f"trial_T20190101_00000{i}_000000")
               for i, t in enumerate(("look_at_obj_in_light", "pick_two_obj_and_place"))]
    assert (written[0].parent / "traj_data.json").exists() and (written[0].parent / "initial_state.pddl").exists()
    assert find_games(tmp_path, ("pick_two_obj_and_place",)) == [written[1]]
    env = AlfWorldEnv(task_type="look_at_obj_in_light", game_paths=tmp_path)
    assert env.game_files == [written[0]]
    env.engine = shared_env.engine  # a running worker (env's own would start one); shared_env closes it
    obs, info = env.reset(seed=0)
    assert "look at" in obs and info["task_type"] == "look_at_obj_in_light"
    assert info["gamefile"] == str(written[0])
    reward = 0.0
    for command in env.expert_plan():
        _, reward, *_ = env.step(command)
    assert reward == 1.0


def test_close_leaves_no_process_and_a_dead_engine_restarts(shared_env: AlfWorldEnv) -> None:
    env = shared_env
    env.with_expert_plan = True
    try:
        env.reset(seed=SMALL_SEEDS["pick_and_place_simple"], options={"task_type": "pick_and_place_simple"})
        env.step("look")
        pid = env.engine.pid
        assert pid is not None and env.engine.alive()
        os.kill(pid, 9)
        env.engine._proc.wait(5)  # type: ignore[union-attr]
        # The worker is restarted and given its game back, replayed to where it was ("look").
        obs, _, _, _, info = env.step("inventory")
        assert env.engine.alive() and env.engine.pid != pid and info["expert_plan"]
        assert obs == "You are not carrying anything."
        # A planner that does not answer in time: its worker is ended, the episode goes on.
        stuck = env.engine.pid
        with pytest.raises(TimeoutError):
            env.expert_plan(timeout=0)
        assert not env.engine.alive() and stuck is not None and not Path(f"/proc/{stuck}").exists()
        obs, _, _, _, info = env.step("inventory")
        assert obs == "You are not carrying anything." and env.engine.alive() and info["admissible_commands"]
    finally:
        env.with_expert_plan = False
    new_pid = env.engine.pid
    env.close()
    assert not env.engine.alive()
    assert new_pid is not None and not Path(f"/proc/{new_pid}").exists()
