"""The TextWorld PDDL engine in a worker process of its own.

The worker holds TextWorld's ``PddlEnv`` (fast-downward loaded as a library) with ALFWorld's
demangler applied to the entity names, as ALFWorld's ``AlfredDemangler`` wrapper does. The env
talks to it over a pipe; ``close()`` ends it, and a dead worker is started again on the next call.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
from collections import OrderedDict
from typing import IO, Any

from plyground.errors import MissingComponentError

GAMES_CACHED = 8  # games whose parsed grammar, names and PDDL translation the worker keeps


def textworld_available() -> bool:
    try:
        import alfworld  # noqa: F401
        import fast_downward  # noqa: F401
        import textworld  # noqa: F401
    except ImportError:
        return False
    return True


def _read(stream: IO[bytes]) -> Any:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError
    return pickle.loads(stream.read(struct.unpack("<Q", header)[0]))


def _write(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def serve() -> None:  # pragma: no cover - runs in the worker process
    """The worker's loop: requests in on stdin, answers out on the original stdout."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the engine prints goes to stderr, not into the protocol
    inp = sys.stdin.buffer
    import fast_downward
    import textworld
    from alfworld.agents.utils.misc import Demangler
    from textworld.envs.pddl import PddlEnv

    _cache_translation()
    scratch = None  # a second copy of fast-downward for sub-problems; the env's copy holds the game
    env = PddlEnv(textworld.EnvInfos(admissible_commands=True, won=True, policy_commands=False))
    # The parsed grammar and the demangled names of the last few games, keyed by the game's texts:
    # parsing them is most of a load, and check_env, search and evaluation reset the same games again.
    parsed: OrderedDict[tuple[str, str, str], tuple[Any, Any]] = OrderedDict()
    while True:
        try:
            msg = _read(inp)
        except EOFError:
            return
        op = msg[0]
        try:
            if op == "close":
                _write(out, ("ok", None))
                return
            if op == "load":
                data = msg[1]
                key = (data["pddl_domain"], data["grammar"], data["pddl_problem"])
                if key in parsed:
                    # What PddlEnv.load sets, from the cache; reset() builds the state afresh.
                    parsed.move_to_end(key)
                    env._game_data, env._game_file, env.walkthrough = data, None, data.get("walkthrough")
                    env._logic, env._entity_infos = parsed[key]
                else:
                    env.load(data)
                    demangler = Demangler(game_infos=env._entity_infos)
                    for info in env._entity_infos.values():
                        info.name = demangler.demangle_alfred_name(info.id)
                    parsed[key] = (env._logic, env._entity_infos)
                    if len(parsed) > GAMES_CACHED:
                        parsed.popitem(last=False)
                state = env.reset()
            elif op == "reset":
                state = env.reset()
            elif op == "step":
                state, _, _ = env.step(msg[1])
            elif op == "plan":
                if scratch is None and msg[1]:
                    scratch = fast_downward.load_lib()
                _write(out, ("ok", _plan(env, scratch if msg[1] else None)))
                continue
            else:
                raise ValueError(f"unknown op {op!r}")
            _write(out, ("ok", (state.feedback, bool(state["won"]), list(state["admissible_commands"]))))
        except Exception as exc:  # report to the parent, keep serving
            _write(out, ("error", f"{type(exc).__name__}: {exc}"))


def _plan(env: Any, scratch: Any) -> tuple[list[str], str]:  # pragma: no cover - runs in the worker process
    """The planner's commands from the env's current state, and which problem gave them.

    With a ``scratch`` library, first the goal-relevant sub-problem with one receptacle of the
    goal's type, then with all of them (:mod:`plyground.envs.alfworld.planning`); the whole problem
    only when neither has a plan.
    """
    from plyground.envs.alfworld import planning

    if scratch is not None:
        state = env._pddl_state
        kinds = dict(state.name2type)
        facts = [(f.name, tuple(a.name for a in f.arguments)) for f in state.facts if not f.name.startswith("not_")]
        goal = planning.goal_section(env._game_data["pddl_problem"])
        needs = planning.goal_needs(env._logic.domain, goal, kinds)
        for keep, source in ((1, "pruned"), (None, "pruned_all_goal_receptacles")):
            problem = planning.prune_problem(facts, kinds, needs, goal, max_goal_receptacles=keep)
            commands = planning.solve(scratch, env._logic, problem, env._entity_infos)
            if commands is not None:
                return commands, source
    return list(env._pddl_state.replan(env._entity_infos)), "full"


def _cache_translation() -> None:  # pragma: no cover - runs in the worker process
    """Memoise fast-downward's PDDL -> SAS translation in this process.

    TextWorld translates the problem twice on every ``load`` and again on every ``reset`` (0.3 s
    for a small scene, 3 s for a kitchen with 30 receptacles). The translation is a pure function
    of the domain and problem texts and its result is only read afterwards, so a reset, or the
    same game loaded again, reuses it.
    """
    import functools

    import fast_downward

    translate = fast_downward.pddl2sas
    if getattr(translate, "cache_info", None) is not None:
        return

    @functools.lru_cache(maxsize=2 * GAMES_CACHED)  # two translations per game
    def pddl2sas(domain: str, problem: str, verbose: bool = False, optimize: bool = False) -> Any:
        return translate(domain, problem, verbose=verbose, optimize=optimize)

    fast_downward.pddl2sas = pddl2sas


class Engine:
    """A handle on the worker: ``load(game_data)``, ``reset()``, ``step(cmd)``, ``plan()``."""

    def __init__(self) -> None:
        if not textworld_available():
            raise MissingComponentError("textworld", "pip install 'plyground[alfworld]'")
        self._proc: subprocess.Popen[bytes] | None = None
        self._game: dict[str, Any] | None = None
        self._history: list[str] = []  # commands since the game was loaded or reset
        self.last_plan_source = ""  # "pruned", "pruned_all_goal_receptacles" or "full"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else int(self._proc.pid)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from plyground.envs.alfworld.engine import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )

    def _call(self, *msg: Any, timeout: float | None = None) -> Any:
        if not self.alive():
            self.close()
            self._start()
            if self._game is not None and msg[0] != "load":
                # A restarted worker gets its game back, replayed to where it was.
                history, self._history = self._history, []
                self._send("load", self._game)
                if msg[0] != "reset":
                    for command in history:
                        self._send("step", command)
                    self._history = history
        return self._send(*msg, timeout=timeout)

    def _send(self, *msg: Any, timeout: float | None = None) -> Any:
        assert self._proc is not None and self._proc.stdin is not None and self._proc.stdout is not None
        _write(self._proc.stdin, msg)
        if timeout is not None and not select.select([self._proc.stdout], [], [], timeout)[0]:
            # The worker is stuck in the planner's C code, which cannot be interrupted: end it. The
            # next call starts a new worker and replays the game to where it was.
            self._proc.kill()
            self._proc.wait(5)
            self.close()
            raise TimeoutError(f"the engine did not answer {msg[0]!r} within {timeout} s")
        status, value = _read(self._proc.stdout)
        if status != "ok":
            raise RuntimeError(value)
        return value

    def load(self, game: dict[str, Any]) -> tuple[str, bool, list[str]]:
        self._game = game
        self._history = []
        return self._call("load", game)  # type: ignore[no-any-return]

    def reset(self) -> tuple[str, bool, list[str]]:
        self._history = []
        return self._call("reset")  # type: ignore[no-any-return]

    def step(self, command: str) -> tuple[str, bool, list[str]]:
        result = self._call("step", command)
        self._history.append(command)
        return result  # type: ignore[no-any-return]

    def plan(self, timeout: float | None = None, prune: bool = True) -> list[str]:
        """The planner's commands to the goal; ``TimeoutError`` after ``timeout`` seconds (the
        planner's search on a whole large scene can take minutes).

        ``prune=True`` plans on the goal-relevant sub-problem first and on the whole problem only
        when that has no plan; ``prune=False`` plans on the whole problem, as TextWorld's
        ``policy_commands`` do. :attr:`last_plan_source` says which problem gave the plan.
        """
        commands, self.last_plan_source = self._call("plan", prune, timeout=timeout)
        return commands  # type: ignore[no-any-return]

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin is not None and proc.stdout is not None:
                _write(proc.stdin, ("close",))
                _read(proc.stdout)
        except (EOFError, OSError):
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
