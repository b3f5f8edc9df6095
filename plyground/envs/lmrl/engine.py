"""A small Stockfish wrapper over python-chess's UCI client, for the Chess and Endgames envs.

:class:`Stockfish` starts the engine lazily on the first call, reuses the process across episodes
and restarts it once if it died; every call carries a time limit, and ``close()`` (or a finalizer,
should the owner be dropped unclosed) stops the process. :class:`Strength` says how strong a move
is wanted: a skill level 0-20, or an Elo rating that maps onto one as Stockfish maps it, and the
search limit (depth, nodes or time).

Reproducible weakening: Stockfish weakens itself (``Skill Level`` < 20, ``UCI_LimitStrength``) with
a generator seeded from the clock, so two equally seeded episodes would differ. By default the
wrapper does the weakening itself with the caller's generator: it asks the engine for its four
best lines at depth ``1 + level`` (as Stockfish does at that skill level), shrinks each line's gap
to the best by the weakness and adds a seeded random bonus, and plays the highest. The engine's
own weakening is available with ``Strength(native=True)``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from plyground.errors import EnvError, MissingComponentError

try:
    import chess
    import chess.engine
except ImportError as exc:  # the optional extra is missing: say how to install it
    raise MissingComponentError("python-chess", "pip install 'plyground[chess]'") from exc

INSTALL_HINT = "apt-get install stockfish"
DEFAULT_PATHS = ("/usr/games/stockfish", "/usr/bin/stockfish", "/usr/local/bin/stockfish")
MAX_SKILL = 20
# Stockfish 15's bounds for UCI_Elo; a rating below the minimum plays as skill level 0.
ELO_MIN, ELO_MAX = 1350, 2850
# The lines the weakened engine chooses among, and the most a random bonus can add (one pawn).
SKILL_LINES = 4
PAWN_CP = 100
# Centipawns standing for a forced mate in the weakening arithmetic.
MATE_CP = 100_000


def find_stockfish(path: str | os.PathLike[str] | None = None) -> str:
    """The Stockfish binary: ``path`` if given, else ``$STOCKFISH_PATH``, ``stockfish`` on the
    ``PATH``, or a usual Debian location; ``MissingComponentError`` naming the install command
    otherwise."""
    candidates = [os.fspath(path)] if path is not None else []
    if path is None:
        if os.environ.get("STOCKFISH_PATH"):
            candidates.append(os.environ["STOCKFISH_PATH"])
        found = shutil.which("stockfish")
        if found:
            candidates.append(found)
        candidates.extend(DEFAULT_PATHS)
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise MissingComponentError("Stockfish", INSTALL_HINT)


def stockfish_available() -> bool:
    try:
        find_stockfish()
    except MissingComponentError:
        return False
    return True


def elo_to_skill(elo: float) -> float:
    """The skill level Stockfish 15 plays at for ``UCI_Elo = elo`` (0 below its minimum, 1350).

    Stockfish fits the level as ``((elo - 1346.6) / 143.4) ** (1 / 0.806)``, clamped to 0..19.
    """
    if elo <= 1346.6:
        return 0.0
    return min(19.0, ((elo - 1346.6) / 143.4) ** (1 / 0.806))


@dataclass(frozen=True)
class Strength:
    """How strongly the engine plays.

    ``skill_level`` 0-20 (20: full strength) or ``elo`` (mapped with :func:`elo_to_skill`; Elo
    wins when both are set). ``depth``, ``nodes`` and ``movetime`` (seconds) limit the search of a
    full-strength move; with none of them it is ``movetime = 0.1`` (the benchmark's 100 ms). A
    weakened move searches to depth ``1 + level``, where Stockfish makes its weakened pick.
    ``native``: let Stockfish weaken itself (clock-seeded, so not reproducible) instead of the
    seeded pick described in the module docstring.
    """

    skill_level: float | None = None
    elo: float | None = None
    depth: int | None = None
    nodes: int | None = None
    movetime: float | None = None
    native: bool = False

    def __post_init__(self) -> None:
        if self.skill_level is not None and not 0 <= self.skill_level <= MAX_SKILL:
            raise ValueError(f"skill_level must be in 0..{MAX_SKILL}, got {self.skill_level}")
        if self.elo is not None and not 0 < self.elo <= ELO_MAX:
            raise ValueError(f"elo must be in 1..{ELO_MAX}, got {self.elo}")
        for name in ("depth", "nodes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.movetime is not None and self.movetime <= 0:
            raise ValueError(f"movetime must be > 0, got {self.movetime}")

    @property
    def level(self) -> float:
        if self.elo is not None:
            return elo_to_skill(self.elo)
        return float(MAX_SKILL if self.skill_level is None else self.skill_level)

    @property
    def full(self) -> bool:
        return self.level >= MAX_SKILL

    def limit(self) -> chess.engine.Limit:
        """The search limit of a full-strength (or natively weakened) move."""
        if self.depth is None and self.nodes is None and self.movetime is None:
            return chess.engine.Limit(time=0.1)
        return chess.engine.Limit(depth=self.depth, nodes=self.nodes, time=self.movetime)

    def describe(self) -> str:
        if self.elo is not None:
            return f"Stockfish at Elo {self.elo:g} (skill level {self.level:.1f})"
        return f"Stockfish at skill level {self.level:g}"


def _cp(score: chess.engine.PovScore, turn: chess.Color) -> int:
    return int(score.pov(turn).score(mate_score=MATE_CP) or 0)


def weakened_pick(scores: list[int], level: float, rng: np.random.Generator) -> int:
    """Which of ``scores`` (centipawns, best first) a player of skill ``level`` plays.

    Each line's gap to the best shrinks by ``weakness / 128`` (weakness = 120 - 2 * level), and it
    gets a random bonus up to ``delta * weakness / 128``, where ``delta`` is the spread of the
    lines capped at a pawn; the highest total wins. Level 0 picks nearly uniformly among the lines.
    """
    top = scores[0]
    delta = min(top - scores[-1], PAWN_CP)
    weakness = 120.0 - 2.0 * level
    best, best_total = 0, -math.inf
    for i, score in enumerate(scores):
        bonus = delta * int(rng.integers(max(1, int(weakness))))
        total = score + (weakness * (top - score) + bonus) / 128.0
        if total >= best_total:
            best, best_total = i, total
    return best


class Stockfish:
    """One Stockfish process, started on first use, reused, restarted if it died, and closed.

    ``timeout`` (seconds) bounds every exchange with the engine beyond the search's own limit; a
    hung engine is killed and restarted once, then ``EnvError``. ``hash_mb`` and ``threads`` are
    UCI options; one thread keeps depth- and node-limited searches reproducible. Every search
    starts a fresh game (``ucinewgame``) so that its result depends only on the position and its
    move history, not on what the engine searched before; the lines of a weakened move (a search
    bounded by depth) are kept in an LRU cache of ``cache_size`` positions.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        threads: int = 1,
        hash_mb: int = 16,
        timeout: float = 10.0,
        cache_size: int = 4096,
    ) -> None:
        self.path = find_stockfish(path)
        self.threads = int(threads)
        self.hash_mb = int(hash_mb)
        self.timeout = float(timeout)
        self._engine: chess.engine.SimpleEngine | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._native: tuple[Any, ...] | None = None  # the strength options last sent
        self._lock = threading.Lock()
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[tuple[Any, ...], list[tuple[chess.Move, int]]] = OrderedDict()

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._engine is not None

    @property
    def pid(self) -> int | None:
        """The engine's process id while it runs (for tools and tests), else None."""
        if self._engine is None:
            return None
        return int(self._engine.transport.get_pid())

    def _start(self) -> chess.engine.SimpleEngine:
        if self._engine is not None:
            return self._engine
        try:
            engine = chess.engine.SimpleEngine.popen_uci(self.path, timeout=self.timeout)
        except (OSError, chess.engine.EngineError, TimeoutError) as exc:
            raise EnvError(f"Stockfish at {self.path} failed to start: {exc}") from exc
        self._engine = engine
        self._finalizer = weakref.finalize(self, _close_engine, engine)
        self._native = None
        try:
            engine.configure({"Threads": self.threads, "Hash": self.hash_mb})
        except (chess.engine.EngineError, TimeoutError) as exc:
            self.close()
            raise EnvError(f"Stockfish refused its options: {exc}") from exc
        return engine

    def close(self) -> None:
        """Stop the engine process (it starts again on the next call)."""
        engine, self._engine = self._engine, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if engine is not None:
            _close_engine(engine)

    def __enter__(self) -> Stockfish:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[[chess.engine.SimpleEngine], Any]) -> Any:
        """Run ``fn`` on the engine; on a dead or hung engine restart once and retry."""
        with self._lock:
            for attempt in (1, 2):
                engine = self._start()
                try:
                    return fn(engine)
                except (chess.engine.EngineTerminatedError, chess.engine.EngineError, TimeoutError) as exc:
                    self.close()
                    if attempt == 2:
                        raise EnvError(f"Stockfish failed twice: {type(exc).__name__}: {exc}") from exc
            raise AssertionError("unreachable")

    # -- searches --------------------------------------------------------------------------------
    def _strength_options(self, engine: chess.engine.SimpleEngine, strength: Strength) -> None:
        if strength.native and not strength.full:
            if strength.elo is not None:
                wanted: tuple[Any, ...] = (True, max(ELO_MIN, int(strength.elo)), MAX_SKILL)
            else:
                wanted = (False, ELO_MIN, int(strength.level))
        else:
            wanted = (False, ELO_MIN, MAX_SKILL)
        if wanted != self._native:
            engine.configure({"UCI_LimitStrength": wanted[0], "UCI_Elo": wanted[1], "Skill Level": wanted[2]})
            self._native = wanted

    def best_move(
        self, board: chess.Board, strength: Strength | None = None, rng: np.random.Generator | None = None
    ) -> chess.Move:
        """The engine's move in ``board`` at ``strength`` (full strength by default).

        A weakened, non-native move draws from ``rng`` (a fresh unseeded generator if None).
        """
        strength = strength or Strength()
        if board.is_game_over():
            raise ValueError(f"no move in a finished game: {board.fen()}")
        if strength.full or strength.native:

            def play(engine: chess.engine.SimpleEngine) -> chess.Move:
                self._strength_options(engine, strength)
                result = engine.play(board, strength.limit(), game=object())
                if result.move is None:
                    raise chess.engine.EngineError(f"no move returned for {board.fen()}")
                return result.move

            return self._call(play)  # type: ignore[no-any-return]
        lines = self.top_moves(board, SKILL_LINES, chess.engine.Limit(depth=1 + int(strength.level)))
        scores = [score for _, score in lines]
        pick = weakened_pick(scores, strength.level, rng if rng is not None else np.random.default_rng())
        return lines[pick][0]

    def top_moves(
        self, board: chess.Board, n: int, limit: chess.engine.Limit
    ) -> list[tuple[chess.Move, int]]:
        """The engine's ``n`` best moves with their scores (centipawns for the side to move; a
        mate counts ``100000``), best first."""

        # A search bounded by depth or nodes on one thread depends only on the position and its
        # history, so it is cached: replays and tree search revisit the same positions.
        cacheable = self.cache_size > 0 and limit.time is None and self.threads == 1
        key = (board.root().fen(), tuple(board.move_stack), n, limit.depth, limit.nodes)
        if cacheable:
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return list(self._cache[key])

        def analyse(engine: chess.engine.SimpleEngine) -> list[tuple[chess.Move, int]]:
            self._strength_options(engine, Strength())
            infos = engine.analyse(board, limit, multipv=n, game=object())
            lines = [(info["pv"][0], _cp(info["score"], board.turn)) for info in infos if info.get("pv")]
            if not lines:
                raise chess.engine.EngineError(f"no lines returned for {board.fen()}")
            return lines

        lines: list[tuple[chess.Move, int]] = self._call(analyse)
        if cacheable:
            with self._lock:
                self._cache[key] = list(lines)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return lines

    def evaluate(self, board: chess.Board, limit: chess.engine.Limit | None = None) -> chess.engine.PovScore:
        """The engine's score of ``board`` (from the side to move's point of view)."""

        def analyse(engine: chess.engine.SimpleEngine) -> chess.engine.PovScore:
            self._strength_options(engine, Strength())
            info = engine.analyse(board, limit or chess.engine.Limit(depth=12), game=object())
            return info["score"]

        return self._call(analyse)  # type: ignore[no-any-return]


def _close_engine(engine: chess.engine.SimpleEngine) -> None:
    """Ask the engine to quit; kill it if it does not answer in time."""
    with contextlib.suppress(Exception):  # already dead or hung: close() below kills the process
        engine.quit()
    with contextlib.suppress(Exception):  # nothing more can be done with a process that will not die
        engine.close()
