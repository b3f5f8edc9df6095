"""ALFWorld (text): ALFRED household tasks played in TextWorld's PDDL engine with ALFWorld's own
domain (``alfred.pddl``) and grammar (``alfred.twl2``), so observations are ALFWorld's text.

Games are official ``game.tw-pddl`` files from ``game_paths`` (a file, a folder laid out as
ALFWorld's ``json_2.1.1``, or a list of either) or, by default, generated per episode from the seed
(:mod:`plyground.envs.alfworld.generator`). Reward 1 when the goal holds; horizon 50 as ALFWorld's
evaluation (``max_nb_steps_per_episode: 50``). ``info["admissible_actions"]`` lists the admissible
commands (the env contract's key; ``info["admissible_commands"]``, ALFWorld's own name, carries the
same list). A command that is not admissible answers "Nothing happens." as the engine does.
``put O in/on R`` is accepted for ``move O to R``.
``expert_plan=True`` adds the planner's plan (fast-downward, on the goal-relevant sub-problem first;
see :mod:`plyground.envs.alfworld.planning`) to ``info["expert_plan"]`` each turn;
:meth:`AlfWorldEnv.expert_plan` gives it on request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plyground.envs.alfworld.engine import Engine
from plyground.envs.alfworld.generator import TASK_TYPES, find_games, generate_game
from plyground.envs.core import TextEnv

_PUT = re.compile(r"^\s*put\s+(.+?)\s+(?:in|on|into|onto|in/on)\s+(.+?)\s*$", re.IGNORECASE)
MAX_ACTION_CHARS = 500

INSTRUCTIONS = (
    "You are in a household (ALFWorld). Reach the goal given after 'Your task is to:'. "
    "Reply with one command per turn, e.g. 'go to countertop 1', 'open fridge 1', "
    "'take apple 1 from countertop 1', 'move apple 1 to fridge 1', 'heat apple 1 with microwave 1', "
    "'clean apple 1 with sinkbasin 1', 'cool apple 1 with fridge 1', 'use desklamp 1', 'look', 'inventory'. "
    "The admissible commands are listed in info['admissible_actions']."
)


class AlfWorldEnv(TextEnv):
    instructions = INSTRUCTIONS
    max_turns = 50
    reward_range = (0.0, 1.0)

    def __init__(
        self,
        task_type: str | int | Sequence[str | int] | None = None,
        game_paths: str | Path | Sequence[str | Path] | None = None,
        max_turns: int = 50,
        expert_plan: bool = False,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        self.max_turns = max_turns
        self.task_types = _task_types(task_type)
        self.game_files: list[Path] = []
        if game_paths is not None:
            for p in [game_paths] if isinstance(game_paths, (str, Path)) else list(game_paths):
                path = Path(p)
                self.game_files += [path] if path.is_file() else find_games(path, self.task_types)
            if not self.game_files:
                raise ValueError(f"no ALFWorld games of types {self.task_types} under {game_paths!r}")
        self.with_expert_plan = expert_plan
        self.engine = Engine()
        self.admissible: list[str] = []
        self.game_info: dict[str, Any] = {}

    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if "game_file" in options:
            data, source = json.loads(Path(options["game_file"]).read_text()), str(options["game_file"])
            task_type = _task_type_of(Path(options["game_file"]))
        elif self.game_files:
            path = self.game_files[int(rng.integers(len(self.game_files)))]
            data, source, task_type = json.loads(path.read_text()), str(path), _task_type_of(path)
        else:
            task_type = options.get("task_type") or self.task_types[int(rng.integers(len(self.task_types)))]
            game = generate_game(task_type, rng)
            data, source = game.data, f"generated:{game.scene}"
        obs, won, self.admissible = self.engine.load(data)
        self.game_info = {"gamefile": source, "task_type": task_type}
        return obs, self._info(won)

    def _info(self, won: bool, valid: bool = True) -> dict[str, Any]:
        # ``admissible_actions`` is the TextEnv contract's key (search proposers, the env server
        # and the checker read it); ``admissible_commands`` is ALFWorld's own name, kept for
        # code written against ALFWorld.
        info: dict[str, Any] = {"admissible_actions": list(self.admissible),
                                "admissible_commands": list(self.admissible), "won": won,
                                "success": won, "valid_action": valid, **self.game_info}
        if self.with_expert_plan and not won:
            info["expert_plan"] = self.engine.plan()
        return info

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        command = normalize_command(action, self.admissible)
        valid = command in self.admissible
        if not valid:
            # The engine's own answer to an unknown command; nothing changes.
            return "Nothing happens.", 0.0, False, self._info(False, valid=False)
        obs, won, self.admissible = self.engine.step(command)
        return obs, float(won), won, self._info(won)

    def expert_plan(self, timeout: float | None = None, prune: bool = True) -> list[str]:
        """The planner's commands from the current state to the goal (fast-downward); raises
        ``TimeoutError`` after ``timeout`` seconds, the episode's state kept.

        By default the planner first solves the goal-relevant part of the scene (the goal's
        objects, the receptacles they are in, the tools and a receptacle of the goal's type; see
        :mod:`plyground.envs.alfworld.planning`), which stays fast in large kitchens where the
        whole problem can take the planner minutes; ``prune=False`` plans on the whole problem.
        Either way the commands are ordinary commands, checked by the engine when played.
        """
        return self.engine.plan(timeout=timeout, prune=prune)

    def close(self) -> None:
        self.engine.close()
        super().close()


def normalize_command(action: str, admissible: Sequence[str]) -> str:
    """Trim, lower-case, and map ``put O in/on R`` to this grammar's ``move O to R``."""
    command = " ".join(action[:MAX_ACTION_CHARS].strip().lower().split()).rstrip(".")
    if command in admissible:
        return command
    match = _PUT.match(command)
    if match:
        moved = f"move {match.group(1)} to {match.group(2)}"
        if moved in admissible:
            return moved
    return command


def _task_types(task_type: str | int | Sequence[str | int] | None) -> tuple[str, ...]:
    if task_type is None:
        return TASK_TYPES
    items = [task_type] if isinstance(task_type, (str, int)) else list(task_type)
    out = []
    for t in items:
        name = TASK_TYPES[t - 1] if isinstance(t, int) else t
        if name not in TASK_TYPES:
            raise ValueError(f"unknown ALFWorld task type {t!r}; one of {TASK_TYPES} (or 1..6)")
        out.append(name)
    return tuple(out)


def _task_type_of(game_file: Path) -> str:
    traj = game_file.parent / "traj_data.json"
    if traj.exists():
        return str(json.loads(traj.read_text()).get("task_type", ""))
    return ""
