from __future__ import annotations

from collections import deque

import gymnasium
import numpy as np
import pytest

import plyground
from plyground.envs import EnvSnapshot, check_env
from plyground.envs.checker import MALFORMED_ACTIONS
from plyground.envs.lmrl.maze import (
    DOUBLE_T_MAZE,
    MOVES,
    U_MAZE,
    MazeEnv,
    MazeExpert,
    MazeLayout,
    MazeState,
    shortest_path_moves,
)


def distances(layout: MazeLayout, goal: tuple[int, int]) -> dict[tuple[int, int], int]:
    """Breadth-first distances to ``goal``, written independently of the module's solver."""
    dist = {goal: 0}
    queue = deque([goal])
    while queue:
        r, c = queue.popleft()
        for nxt in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if nxt not in dist and layout.is_open(nxt):
                dist[nxt] = dist[(r, c)] + 1
                queue.append(nxt)
    return dist


def run_expert(env: MazeEnv, expert: MazeExpert, **reset_kwargs: object) -> list[tuple]:
    obs, _ = env.reset(**reset_kwargs)  # type: ignore[arg-type]
    expert.reset()
    steps = []
    while not env.done:
        steps.append(env.step(expert.act(obs)))
        obs = steps[-1][0]
    return steps


# -- the layout ------------------------------------------------------------------------------------
def test_the_benchmark_maze() -> None:
    layout = DOUBLE_T_MAZE
    assert layout.shape == (10, 13) and layout.goals == ((8, 6),)
    assert len(layout.open_cells()) == 26  # 25 start cells besides the goal, as the benchmark's table
    array = layout.to_array()
    assert array[1].tolist() == [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    assert array[5].tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    assert MazeLayout.from_array(array, [(8, 6)], "double_t") == layout
    moves = shortest_path_moves(layout)
    assert len(moves) == 25
    # Some of the benchmark's optimal directions for this maze.
    assert moves[(1, 1)] == moves[(5, 4)] == "move right"
    assert moves[(1, 3)] == moves[(4, 9)] == moves[(5, 6)] == "move down"
    assert moves[(1, 5)] == moves[(5, 7)] == "move left"


@pytest.mark.parametrize(
    ("rows", "goals", "message"),
    [
        ((), ((1, 1),), "non-empty"),
        (("###", "#.#", "##"), ((1, 1),), "equal length"),
        (("###", "#x#", "###"), ((1, 1),), "only"),
        (("#.#", "#.#", "###"), ((1, 1),), "border"),
        (("####", "#..#", "####"), ((0, 0),), "goals must be open"),
        (("###", "#.#", "###"), ((1, 1),), "besides the goal"),
    ],
)
def test_bad_layouts_are_refused(rows: tuple[str, ...], goals: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MazeLayout("bad", rows, goals)


# -- the expert ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fully_observed", [True, False])
def test_expert_takes_a_shortest_path_from_every_start(fully_observed: bool) -> None:
    env = MazeEnv(fully_observed=fully_observed)
    expert = MazeExpert(env)
    dist = distances(DOUBLE_T_MAZE, (8, 6))
    for start in DOUBLE_T_MAZE.open_cells():
        if start == (8, 6):
            continue
        steps = run_expert(env, expert, options={"init_position": start})
        assert steps[-1][4]["success"] and steps[-1][2] and not steps[-1][3], start
        assert len(steps) == dist[start]
        assert sum(s[1] for s in steps) == -(dist[start] - 1)
        assert all(s[4]["valid_action"] and s[4]["moved"] for s in steps)


def test_expert_succeeds_over_many_seeds_from_text_alone() -> None:
    env = plyground.make("Maze-v0")
    assert isinstance(env, MazeEnv)
    expert = MazeExpert()  # reads position and goal from the observation
    for seed in range(300):
        steps = run_expert(env, expert, seed=seed)
        assert steps[-1][4]["success"], seed
        assert len(steps) <= 14


@pytest.mark.parametrize("maze", ["double_t", "umaze"])
def test_expert_succeeds_for_every_goal_and_start(maze: str) -> None:
    env = MazeEnv(maze=maze, fully_observed=False)
    expert = MazeExpert(env)
    cells = env.layout.open_cells()
    for goal in cells:
        dist = distances(env.layout, goal)
        for start in cells:
            if start != goal:
                steps = run_expert(env, expert, options={"goal": goal, "init_position": start})
                assert steps[-1][4]["success"] and len(steps) == dist[start]


def test_expert_without_env_needs_the_position() -> None:
    with pytest.raises(ValueError, match="fully observed"):
        MazeExpert().act("There are walls above you, below you.")


# -- rewards and observations ----------------------------------------------------------------------
def test_observations_in_the_benchmarks_words() -> None:
    env = MazeEnv()
    obs, info = env.reset(options={"init_position": (1, 1)})
    assert obs == (
        "The goal is at position 8, 6. Your current position is at position 1, 1. "
        "There are walls to your left, above you, below you."
    )
    assert info["admissible_actions"] == list(MOVES) and info["position"] == (1, 1)
    obs = env.step("move right")[0]
    assert obs.endswith("position 1, 2. There are walls above you, below you.")
    env.reset(options={"init_position": (5, 6)})
    assert env.describe().endswith("There is a wall above you.")
    env.reset(options={"init_position": (1, 11)})
    assert "Your current position is at position 1, 1 1." in env.describe()  # digits apart
    po = MazeEnv(fully_observed=False)
    assert (
        po.reset(options={"init_position": (1, 1)})[0]
        == "There are walls to your left, above you, below you."
    )
    layout = MazeLayout("open", ("#####", "#...#", "#...#", "#...#", "#####"), ((1, 1),))
    assert MazeEnv(maze=layout, fully_observed=False).reset(options={"init_position": (2, 2)})[0] == (
        "There are no walls near you."
    )


def test_rewards_legal_move_wall_bump_illegal_and_goal() -> None:
    env = MazeEnv()
    env.reset(options={"init_position": (5, 6)})
    obs, reward, _, _, info = env.step("move up")  # a wall: legal, no movement
    assert (reward, info["valid_action"], info["moved"], env.position) == (-1.0, True, False, (5, 6))
    obs, reward, _, _, info = env.step("go north")
    assert (reward, info["valid_action"], info["moved"], env.position) == (-4.0, False, False, (5, 6))
    assert obs.startswith("Invalid action: reply with move up, move down, move left or move right. The goal")
    assert env.step("move down")[1:3] == (-1.0, False)
    assert env.step("move down")[1:3] == (-1.0, False)
    obs, reward, terminated, truncated, info = env.step("move down")
    assert (obs, reward, terminated, truncated, info["success"]) == (
        "Success! You reached the goal.",
        0.0,
        True,
        False,
        True,
    )


@pytest.mark.parametrize(
    "action", [*MALFORMED_ACTIONS, "north", "upward", "move diagonally", "🙂" * 5000, "m" * 1_000_000]
)
@pytest.mark.parametrize("fully_observed", [True, False])
def test_malformed_actions_are_illegal_moves(action: str, fully_observed: bool) -> None:
    env = MazeEnv(fully_observed=fully_observed)
    env.reset(seed=0)
    start = env.position
    obs, reward, terminated, truncated, info = env.step(action)
    assert (reward, terminated, truncated, info["valid_action"], info["move"]) == (
        -4.0,
        False,
        False,
        False,
        None,
    )
    assert env.position == start and env.turn == 1 and obs.startswith("Invalid action")


@pytest.mark.parametrize(
    ("action", "move"),
    [
        ("move up", "move up"),
        ("move up\n", "move up"),
        ("MOVE Left", "move left"),
        ("down", "move down"),
        ("Right.", "move right"),
        ('{"thought": "I could move up, but", "action": "move down"}', "move down"),
        ("I will move left then move right", "move right"),
        ("", None),
        ("moveup", None),
        ("go up the stairs", None),
    ],
)
def test_lenient_parse_takes_the_last_move(action: str, move: str | None) -> None:
    assert MazeEnv.parse(action) == move


def test_failure_after_max_steps_scores_the_benchmark_minimum() -> None:
    env = MazeEnv()
    assert env.max_turns == 101
    env.reset(options={"init_position": (1, 1)})
    steps = [env.step("move up") for _ in range(101)]  # into the wall above, every time
    assert sum(s[1] for s in steps) == -101.0
    assert not any(s[2] for s in steps) and [s[3] for s in steps] == [False] * 100 + [True]
    assert steps[-1][0] == "Failure: you did not reach the goal within 100 moves."
    env.reset(options={"init_position": (1, 1)})
    assert sum(env.step("?")[1] for _ in range(101)) == -401.0


def test_the_failure_step_does_not_move() -> None:
    env = MazeEnv(max_steps=2)
    env.reset(options={"init_position": (7, 6)})  # one step above the goal
    env.step("move up")
    env.step("move down")
    _, reward, terminated, truncated, info = env.step("move down")  # would reach the goal
    assert (reward, terminated, truncated, info["success"], env.position) == (
        -1.0,
        False,
        True,
        False,
        (7, 6),
    )


def test_reset_options_and_starts() -> None:
    env = MazeEnv()
    starts = set()
    for seed in range(300):
        env.reset(seed=seed)
        starts.add(env.position)
        assert env.goal == (8, 6)
    assert starts == set(DOUBLE_T_MAZE.open_cells()) - {(8, 6)}
    with pytest.raises(ValueError, match="init_position"):
        env.reset(options={"init_position": (8, 6)})
    with pytest.raises(ValueError, match="init_position"):
        env.reset(options={"init_position": (0, 0)})
    with pytest.raises(ValueError, match="goal"):
        env.reset(options={"goal": (0, 0)})
    with pytest.raises(ValueError, match="unknown maze"):
        MazeEnv(maze="nope")


# -- snapshot / restore ----------------------------------------------------------------------------
def test_native_snapshot_restores_position_and_turn() -> None:
    env = MazeEnv(fully_observed=False)
    env.reset(options={"init_position": (1, 1)})
    obs = [env.step(a)[0] for a in ["move right", "move right"]][-1]
    state = env.snapshot()
    assert isinstance(state, MazeState) and state.position == (1, 3)
    later = [env.step(a) for a in ["move down", "move down", "oops"]]
    for _ in range(2):
        env.reset(seed=9)
        env.step("move left")
        assert env.restore(state) == obs
        assert (env.position, env.turn, env.done) == ((1, 3), 2, False)
        assert [env.step(a) for a in ["move down", "move down", "oops"]] == later
    assert state.position == (1, 3)  # untouched by later play
    with pytest.raises(TypeError):
        env.restore({"position": (1, 1)})


def test_restore_of_a_finished_episode_and_of_a_replay_snapshot() -> None:
    env = MazeEnv()
    env.reset(options={"init_position": (7, 6)})
    env.step("move down")
    done_state = env.snapshot()
    env.reset(seed=1)
    env.restore(done_state)
    assert env.done
    env.reset(seed=2)
    obs = env.step("move left")[0]
    replay = EnvSnapshot(env._episode_rng_state, env._options, ["move left"])
    env.reset(seed=3)
    assert env.restore(replay) == obs


# -- registration ----------------------------------------------------------------------------------
def test_registered_variants() -> None:
    fo, po = plyground.make("Maze-v0"), plyground.make("Maze-PO-v0")
    assert isinstance(fo, MazeEnv) and isinstance(po, MazeEnv)
    assert fo.fully_observed and not po.fully_observed
    assert fo.max_turns == po.max_turns == plyground.spec("Maze-v0").max_turns == 101
    assert "not told where you are" in po.instructions and "row, column" in fo.instructions
    wrapped = gymnasium.make("plyground/Maze-PO-v0")
    assert wrapped.reset(seed=0)[0] == po.reset(seed=0)[0]
    check_env(MazeEnv(maze=U_MAZE, max_steps=5))
    check_env(MazeEnv(maze=MazeLayout.from_array(np.pad(np.zeros((3, 4)), 1, constant_values=1), [(1, 1)])))
