"""Maze, as in LMRL-Gym: walk a grid maze to the goal with text moves.

The benchmark's maze is the "double T" (13 x 10 cells, goal at row 8, column 6); the small U maze
of the same code base ships too. Besides the env, :func:`shortest_path_moves` gives the optimal
move from every open cell (breadth-first search from the goal) and :class:`MazeExpert` plays it.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plyground.envs.core import EnvSnapshot, TextEnv

Cell = tuple[int, int]

# The benchmark's four moves, as (row, column) steps. Rows count down from the top.
MOVES: dict[str, Cell] = {
    "move up": (-1, 0),
    "move down": (1, 0),
    "move left": (0, -1),
    "move right": (0, 1),
}
# The order in which the benchmark lists neighbouring walls.
_WALL_SIDES: tuple[tuple[str, Cell], ...] = (
    ("to your right", (0, 1)),
    ("to your left", (0, -1)),
    ("above you", (-1, 0)),
    ("below you", (1, 0)),
)
_MOVE_RE = re.compile(r"\bmove\s+(up|down|left|right)\b", re.IGNORECASE)
_BARE_RE = re.compile(r"(?:move\s+)?(up|down|left|right)", re.IGNORECASE)
_POSITION_RE = re.compile(r"current position is at position ([\d ]+), ([\d ]+)\.")
_GOAL_RE = re.compile(r"goal is at position ([\d ]+), ([\d ]+)\.")


@dataclass(frozen=True)
class MazeLayout:
    """A maze: rows of ``#`` (wall) and ``.`` (open), the goal cells, and a name.

    The border must be walls, so every move stays inside the grid. ``from_array`` takes the
    upstream form: a 2-D array of 1 (wall) and 0 (open).
    """

    name: str
    rows: tuple[str, ...]
    goals: tuple[Cell, ...]

    def __post_init__(self) -> None:
        if not self.rows or any(len(row) != len(self.rows[0]) for row in self.rows):
            raise ValueError(f"maze {self.name!r}: rows must be non-empty and of equal length")
        if any(set(row) - {"#", "."} for row in self.rows):
            raise ValueError(f"maze {self.name!r}: rows may hold only '#' and '.'")
        border = self.rows[0] + self.rows[-1] + "".join(row[0] + row[-1] for row in self.rows)
        if set(border) != {"#"}:
            raise ValueError(f"maze {self.name!r}: the border must be walls")
        if not self.goals or any(not self.is_open(goal) for goal in self.goals):
            raise ValueError(f"maze {self.name!r}: goals must be open cells, got {self.goals}")
        if len(self.open_cells()) < 2:
            raise ValueError(f"maze {self.name!r}: needs an open cell besides the goal")

    @classmethod
    def from_array(cls, array: Any, goals: Sequence[Cell], name: str = "custom") -> MazeLayout:
        grid = np.asarray(array)
        if grid.ndim != 2:
            raise ValueError(f"a maze array must be 2-D, got shape {grid.shape}")
        rows = tuple("".join("#" if v else "." for v in row) for row in grid.tolist())
        return cls(name, rows, tuple((int(r), int(c)) for r, c in goals))

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.rows[0])

    def is_open(self, cell: Cell) -> bool:
        r, c = cell
        return 0 <= r < len(self.rows) and 0 <= c < len(self.rows[0]) and self.rows[r][c] == "."

    def open_cells(self) -> list[Cell]:
        return [(r, c) for r, row in enumerate(self.rows) for c, ch in enumerate(row) if ch == "."]

    def to_array(self) -> np.ndarray:
        """The upstream form: 1 for a wall, 0 for an open cell."""
        return np.array([[1 if ch == "#" else 0 for ch in row] for row in self.rows], dtype=np.uint8)


# The benchmark's maze (LMRL-Gym ``double_t_maze``, goal (8, 6)) and its U maze (goal (3, 3)).
DOUBLE_T_MAZE = MazeLayout(
    "double_t",
    (
        "#############",
        "#.....#.....#",
        "###.#####.###",
        "###.#####.###",
        "###.#####.###",
        "###.......###",
        "######.######",
        "######.######",
        "######.######",
        "#############",
    ),
    goals=((8, 6),),
)
U_MAZE = MazeLayout("umaze", ("#####", "#...#", "#.#.#", "#.#.#", "#####"), goals=((3, 3),))
MAZES = {layout.name: layout for layout in (DOUBLE_T_MAZE, U_MAZE)}


def shortest_path_moves(layout: MazeLayout, goals: Sequence[Cell] | None = None) -> dict[Cell, str]:
    """The first move of a shortest path to the nearest goal, for every open cell that can reach
    one (breadth-first search outward from the goals; goal cells themselves are left out)."""
    targets = [tuple(g) for g in (goals if goals is not None else layout.goals)]
    policy: dict[Cell, str] = {}
    seen = set(targets)
    queue: deque[Cell] = deque(targets)  # type: ignore[arg-type]
    while queue:
        r, c = queue.popleft()
        for move, (dr, dc) in MOVES.items():
            prev = (r - dr, c - dc)  # a cell from which ``move`` leads to (r, c)
            if prev not in seen and layout.is_open(prev):
                seen.add(prev)
                policy[prev] = move
                queue.append(prev)
    return policy


def _spaced(n: int) -> str:
    """A coordinate as the benchmark writes it: digits apart ("1 0" for ten), one token each."""
    return " ".join(str(n))


class MazeEnv(TextEnv):
    """
    ## Description
    LMRL-Gym's Maze: the agent starts at a random open cell of a fixed maze and walks to the goal
    with the moves up, down, left and right. Fully observed (``Maze-v0``): every observation gives
    the goal, the agent's position and the adjacent walls. Partially observed (``Maze-PO-v0``):
    only the adjacent walls; the agent must work out where it is from its move history (the chat).

    ## Action Space
    Free text. The last ``"move up"`` / ``"move down"`` / ``"move left"`` / ``"move right"`` in the
    reply (any case) is the move, so JSON such as ``{"action": "move up"}`` works; a reply that is
    only a direction (``"up"``) counts too. Anything else is an illegal action: the observation
    says so, the agent stays put, and the turn counts. Moving into a wall is a legal move that
    leaves the agent in place.

    ## Observation Space
    Text, in the benchmark's sentences. Fully observed: ``"The goal is at position 8, 6. Your
    current position is at position 1, 1. There are walls to your left, above you, below you."``;
    partially observed: the wall sentence alone. Coordinates are (row, column) from the top left,
    and the digits of a number are written apart, as in the benchmark (``"1 1"`` is eleven).

    ## Starting State
    The goal is drawn from the maze's goal cells (one in the benchmark's maze) and the start from
    the other open cells, uniformly with the env's ``np_random``; ``reset(options={"goal": (r, c),
    "init_position": (r, c)})`` sets either.

    ## Rewards
    As in LMRL-Gym's ``standard_reward``: 0 for the move that reaches the goal, -1 for any other
    legal move (a bump into a wall included), -4 for an illegal action. After ``max_steps`` moves
    without reaching the goal, the next step ends the episode with -1 and a failure message, so a
    failed episode of legal moves scores -101 (the benchmark's minimum score).

    ## Episode End
    Terminated when the agent reaches the goal (success). Truncated at step ``max_steps + 1`` (the
    failure step above), which is ``max_turns``.

    ## Information
    ``success``, ``valid_action``, ``move`` (the parsed move or None), ``moved`` (False after an
    illegal action or a bump into a wall), ``position`` and ``goal`` (for tools and experts; the
    partially observed agent is not shown them) and ``admissible_actions`` (the four moves).

    ## Arguments
    ``maze`` (default ``"double_t"``): a name in ``MAZES`` or a ``MazeLayout``. ``fully_observed``
    (default True). ``max_steps`` (default 100, as the benchmark). ``illegal_reward`` (default
    -4.0). ``render_mode``: ``"ansi"`` renders the last observation.

    ## Version History
    - v0: first version. Differences from upstream: replies are parsed leniently instead of
      matched verbatim against ``"move up\\n"`` etc., and an illegal action's observation names
      the legal moves before the usual description.
    """

    reward_range = (-4.0, 0.0)

    def __init__(
        self,
        maze: str | MazeLayout = "double_t",
        fully_observed: bool = True,
        max_steps: int = 100,
        illegal_reward: float = -4.0,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        if isinstance(maze, str):
            if maze not in MAZES:
                raise ValueError(f"unknown maze {maze!r}; known mazes: {sorted(MAZES)}")
            maze = MAZES[maze]
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.layout = maze
        self.fully_observed = bool(fully_observed)
        self.max_steps = int(max_steps)
        self.max_turns = self.max_steps + 1  # the moves, then the step that reports the failure
        self.illegal_reward = float(illegal_reward)
        self.reward_range = (min(-1.0, self.illegal_reward), 0.0)
        self.position: Cell = (0, 0)
        self.goal: Cell = self.layout.goals[0]
        self._cells = self.layout.open_cells()
        seeing = (
            "Each turn I tell you where the goal is, where you are, and on which sides of you there "
            "are walls. Positions are given as row, column, counted from the top left corner; the "
            "digits of a number are written apart, so 1 0 means ten."
            if self.fully_observed
            else "You are not told where you are or where the goal is: each turn I tell you only on "
            "which sides of you there are walls, so keep track of your moves."
        )
        self.instructions = (
            "You are in a maze of walls and open cells. Your objective is to reach the goal in as few "
            f"moves as possible. {seeing} Reply with one move: move up, move down, move left or move "
            "right. Each move costs 1 point; moving into a wall leaves you where you are and still "
            f"costs 1 point; a reply that is not one of the four moves costs {-self.illegal_reward:g} "
            f"points. You have {self.max_steps} moves."
        )

    # -- dynamics ------------------------------------------------------------------------------
    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if "goal" in options:
            goal = _cell(options["goal"])
            if not self.layout.is_open(goal):
                raise ValueError(f"goal {goal} is not an open cell of maze {self.layout.name!r}")
        else:
            goal = self.layout.goals[int(rng.integers(len(self.layout.goals)))]
        starts = [cell for cell in self._cells if cell != goal]
        if "init_position" in options:
            start = _cell(options["init_position"])
            if start not in starts:
                raise ValueError(f"init_position {start} is not an open cell other than the goal")
        else:
            start = starts[int(rng.integers(len(starts)))]
        self.goal, self.position = goal, start
        return self.describe(), self._info(None, moved=False)

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        move = self.parse(action)
        if self.turn > self.max_steps:  # the benchmark's failure step: the move is not made
            info = self._info(move, moved=False)
            info["valid_action"] = move is not None
            return f"Failure: you did not reach the goal within {self.max_steps} moves.", -1.0, False, info
        if move is None:
            info = self._info(None, moved=False)
            info["valid_action"] = False
            obs = "Invalid action: reply with move up, move down, move left or move right. " + self.describe()
            return obs, self.illegal_reward, False, info
        dr, dc = MOVES[move]
        target = (self.position[0] + dr, self.position[1] + dc)
        moved = self.layout.is_open(target)
        if moved:
            self.position = target
        info = self._info(move, moved=moved)
        if self.position == self.goal:
            info["success"] = True
            return "Success! You reached the goal.", 0.0, True, info
        return self.describe(), -1.0, False, info

    @staticmethod
    def parse(action: str) -> str | None:
        """The move in ``action`` (one of ``MOVES``), or None."""
        last = deque(_MOVE_RE.finditer(action), maxlen=1)
        if last:
            return f"move {last[0].group(1).lower()}"
        bare = _BARE_RE.fullmatch(action.strip().strip("\"'`.!").strip())
        return f"move {bare.group(1).lower()}" if bare else None

    def describe(self) -> str:
        """The observation at the current position, in the benchmark's words."""
        r, c = self.position
        sides = [side for side, (dr, dc) in _WALL_SIDES if not self.layout.is_open((r + dr, c + dc))]
        if not sides:
            walls = "There are no walls near you."
        elif len(sides) == 1:
            walls = f"There is a wall {sides[0]}."
        else:
            walls = f"There are walls {', '.join(sides)}."
        if not self.fully_observed:
            return walls
        return (
            f"The goal is at position {_spaced(self.goal[0])}, {_spaced(self.goal[1])}. "
            f"Your current position is at position {_spaced(r)}, {_spaced(c)}. {walls}"
        )

    def _info(self, move: str | None, moved: bool) -> dict[str, Any]:
        return {
            "move": move,
            "moved": moved,
            "position": self.position,
            "goal": self.goal,
            "admissible_actions": list(MOVES),
        }

    # -- native snapshot: a few cells and counters ----------------------------------------------
    def snapshot(self) -> MazeState:
        return MazeState(
            position=self.position,
            goal=self.goal,
            **self._episode_fields(),
        )

    def restore(self, state: Any) -> str:
        if isinstance(state, EnvSnapshot):
            return super().restore(state)
        if not isinstance(state, MazeState):
            raise TypeError(f"MazeEnv.restore expects a MazeState, got {type(state).__name__}")
        self.position, self.goal = state.position, state.goal
        self._restore_episode_fields(state)
        return state.last_observation


def _read_cell(found: re.Match[str]) -> Cell:
    return int(found.group(1).replace(" ", "")), int(found.group(2).replace(" ", ""))


def _cell(value: Any) -> Cell:
    r, c = value
    return int(r), int(c)


@dataclass(frozen=True)
class MazeState:
    """``MazeEnv.snapshot()``: position and goal plus what the base class tracks."""

    position: Cell
    goal: Cell
    turn: int
    done: bool
    last_observation: str
    actions: tuple[str, ...]
    options: dict[str, Any] | None
    episode_rng_state: dict[str, Any]
    rng_state: dict[str, Any]


class MazeExpert:
    """The shortest-path policy for ``MazeEnv``: always reaches the goal in the fewest moves.

    Given the env, it reads the position and goal from the env (needed for the partially observed
    variant); without one, from the fully observed observation text, on the benchmark's maze (or
    ``layout``). ``reset()`` at the start of an episode, ``act(observation)`` after every
    observation.
    """

    def __init__(self, env: MazeEnv | None = None, layout: MazeLayout | None = None) -> None:
        self.env = env
        self.layout = env.layout if env is not None else (layout or DOUBLE_T_MAZE)
        self._moves: dict[Cell, dict[Cell, str]] = {}

    def reset(self) -> None:
        """Nothing to forget: each move depends only on the current position."""

    def act(self, observation: str) -> str:
        if self.env is not None:
            position, goal = self.env.position, self.env.goal
        else:
            found, found_goal = _POSITION_RE.search(observation), _GOAL_RE.search(observation)
            if found is None or found_goal is None:
                raise ValueError("MazeExpert without an env needs a fully observed observation")
            position, goal = _read_cell(found), _read_cell(found_goal)
        if goal not in self._moves:
            self._moves[goal] = shortest_path_moves(self.layout, [goal])
        return self._moves[goal].get(position, "move up")  # at the goal or walled off: any move
