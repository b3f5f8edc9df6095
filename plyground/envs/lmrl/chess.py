"""Chess and Endgames, as in LMRL-Gym: play white against Stockfish from a FEN board.

:class:`ChessEnv` plays full games from the initial position (or a given FEN);
:class:`EndgamesEnv` starts from theoretical endgames (king and queen and/or rooks against a lone
king), generated at random as the benchmark does or read from a file of FENs.
:class:`StockfishPolicy` is the scripted player (for baselines and behaviour-cloning data): it
reads the FEN from the observation and answers with Stockfish's move in SAN.
"""

from __future__ import annotations

import json
import os
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plyground.envs.core import EnvSnapshot, TextEnv
from plyground.envs.lmrl.engine import Stockfish, Strength
from plyground.errors import MissingComponentError

try:
    import chess
except ImportError as exc:  # the optional extra is missing: say how to install it
    raise MissingComponentError("python-chess", "pip install 'plyground[chess]'") from exc

# The benchmark's opponent: Stockfish at Elo 1200 (which Stockfish 15 plays as skill level 0).
BENCHMARK_ELO = 1200
MAX_MOVES = 400
# The benchmark's endgame setups, in its notation: lower case black, upper case white.
ENDGAME_SETUPS = ("kQK", "kRK", "kQRK", "kRRK")

# A move as a token: castling, UCI (e2e4, e7e8q) or SAN (e4, Nf3, exd5, e8=Q, Raxd1), with check
# marks and annotations allowed after it.
_MOVE_TOKEN = re.compile(
    r"(?<![A-Za-z0-9])("
    r"O-O-O|O-O|0-0-0|0-0"
    r"|[a-h][1-8][a-h][1-8][qrbnQRBN]?"
    r"|[KQRBN][a-h]?[1-8]?x?[a-h][1-8]"
    r"|[a-h](?:x[a-h])?[1-8](?:=?[QRBNqrbn])?"
    r")[+#]?[!?]*(?![A-Za-z0-9])"
)
_FEN = re.compile(
    r"(?:[pnbrqkPNBRQK1-8]+/){7}[pnbrqkPNBRQK1-8]+ [wb] (?:-|[KQkqA-Ha-h]+) (?:-|[a-h][1-8])(?: \d+ \d+)?"
)
_SHOWN_MAX = 40


def parse_move(board: chess.Board, text: str) -> tuple[chess.Move | None, str]:
    """The move ``text`` names in ``board`` (SAN or UCI), or None and what was wrong with it.

    A reply spelled one character at a time is read as one move (the benchmark writes moves
    spaced out, ``"N f 3"``); otherwise the last move-like token is the move (``"I play Nf3."``,
    ``"1. e4"``).
    """
    pieces = text.split()
    if 1 < len(pieces) <= 8 and all(len(piece) == 1 for piece in pieces):
        move = _legal(board, "".join(pieces))
        if move is not None:
            return move, ""
    last = deque(_MOVE_TOKEN.finditer(text), maxlen=1)
    if not last:
        return None, "the reply contains no move in SAN (e.g. Nf3) or UCI (e.g. g1f3)"
    token = last[0].group(1)
    move = _legal(board, token)
    if move is None:
        return None, f"{token!r} is not a legal move in this position"
    return move, ""


def _legal(board: chess.Board, token: str) -> chess.Move | None:
    if token.startswith("0-0"):
        token = token.replace("0", "O")
    try:
        move = board.parse_san(token)
    except ValueError:
        move = None
    if move is not None and move != chess.Move.null():
        return move
    if re.fullmatch(r"[a-h][1-8][a-h][1-8][qrbnQRBN]?", token):
        uci = chess.Move.from_uci(token.lower())
        if uci in board.legal_moves:
            return uci
    return None


def board_from_observation(observation: str) -> chess.Board:
    """The board of the last FEN in ``observation``; ``ValueError`` when there is none."""
    found = deque(_FEN.finditer(observation), maxlen=1)
    if not found:
        raise ValueError("the observation contains no FEN")
    return chess.Board(found[0].group(0))


def random_endgame(setup: str, rng: np.random.Generator, max_tries: int = 10_000) -> str:
    """A random legal position of ``setup`` with white to move and neither king in check.

    ``setup`` lists the pieces as the benchmark writes them (``"kQK"``: black king, white queen,
    white king). Pieces go on distinct squares uniformly at random, redrawn until the position is
    valid, as the benchmark generates its endgames. Returns the FEN.
    """
    pieces = [chess.Piece.from_symbol(symbol) for symbol in setup]
    if sorted(p.symbol() for p in pieces if p.piece_type == chess.KING) != ["K", "k"]:
        raise ValueError(f"an endgame setup needs exactly one king of each colour, got {setup!r}")
    board = chess.Board.empty()
    for _ in range(max_tries):
        board.clear()
        squares = rng.choice(64, size=len(pieces), replace=False)
        for square, piece in zip(squares, pieces, strict=True):
            board.set_piece_at(int(square), piece)
        if board.is_valid() and not board.is_check() and not board.is_game_over():
            return board.fen()
    raise ValueError(f"no legal position of {setup!r} found in {max_tries} tries")


def material(board: chess.Board) -> str:
    """The pieces on ``board`` in setup notation, black first, then white, strongest first."""
    order = "kqrbnp"
    black = sorted(
        (p.symbol() for p in board.piece_map().values() if p.color == chess.BLACK), key=order.index
    )
    white = sorted(
        (p.symbol() for p in board.piece_map().values() if p.color == chess.WHITE),
        key=lambda s: order.index(s.lower()) if s != "K" else len(order),
    )
    return "".join(black) + "".join(white)


def load_positions(source: str | os.PathLike[str] | Iterable[str]) -> tuple[str, ...]:
    """Start positions: a path or an iterable of lines, each a FEN, a JSON string holding one (the
    benchmark's ``test_positions.jsonl``), or a JSON object with a ``"fen"`` field. Blank lines
    are skipped; an invalid position raises ``ValueError`` naming it."""
    if isinstance(source, str | os.PathLike):
        with open(source, encoding="utf-8") as f:
            lines: Iterable[str] = f.read().splitlines()
    else:
        lines = source
    fens = []
    for line in lines:
        text = str(line).strip()
        if not text:
            continue
        if text[0] in '"{':
            value = json.loads(text)
            text = value["fen"] if isinstance(value, dict) else str(value)
        board = chess.Board(text.strip())
        if not board.is_valid():
            raise ValueError(f"not a legal position: {text!r}")
        fens.append(board.fen())
    if not fens:
        raise ValueError("no positions found")
    return tuple(fens)


@dataclass(frozen=True)
class ChessState:
    """``ChessEnv.snapshot()``: the board with its move stack, plus what the base class tracks."""

    board: chess.Board
    start_fen: str
    turn: int
    done: bool
    last_observation: str
    actions: tuple[str, ...]
    options: dict[str, Any] | None
    episode_rng_state: dict[str, Any]
    rng_state: dict[str, Any]


class ChessEnv(TextEnv):
    """
    ## Description
    LMRL-Gym's Chess: the agent plays white against Stockfish (the benchmark's opponent plays at
    Elo 1200) from the initial position or a given FEN. The board is fully observed, as FEN, every
    turn. The task tests long-horizon strategy and credit assignment: only the game's end is
    rewarded.

    ## Action Space
    Free text. A move in SAN (``"Nf3"``, ``"exd5"``, ``"O-O"``, ``"e8=Q"``) or UCI (``"g1f3"``).
    A reply spelled one character at a time is read as one move (the benchmark's spaced form
    ``"N f 3"``); otherwise the last move-like token in the reply is the move (``"I play Nf3."``). A
    reply with no move, or with a move that is not legal here, is an illegal move: the board stays
    as it was, the observation says what was wrong, and the turn counts.

    ## Observation Space
    Text: a line saying what happened (your move and the opponent's reply, an illegal move, or the
    end of the game), then the board as FEN on the last line, alone (white to move while the game
    goes on). The first observation is the starting position.

    ## Starting State
    The initial position, or ``start_fen``, or ``reset(options={"fen": ...})``. When the start
    position has black to move, the opponent moves first.

    ## Rewards
    As in LMRL-Gym: 1 for the move that checkmates, -1 when the opponent checkmates, -1 for an
    illegal move (``illegal_reward``), 0 for every other move; a draw (stalemate, insufficient
    material, fivefold repetition, the 75-move rule) ends the game with 0.

    ## Episode End
    Terminated at checkmate or a draw by the rules (python-chess's ``Board.outcome()``, which needs
    no claim). Truncated at step ``max_moves + 1`` (401), as the benchmark ends the episode when
    more than ``max_moves`` moves have been made; its lowest score, -401, is that many illegal
    moves. With ``illegal_ends_episode=True`` an illegal move also ends it.

    ## Information
    ``success`` (the agent won), ``valid_action``, ``move`` and ``opponent_move`` (SAN or None),
    ``fen``, ``admissible_actions`` (the legal moves in SAN while the game goes on), and
    ``result`` (``"1-0"``, ``"0-1"``, ``"1/2-1/2"``) and ``termination`` when the game ends.

    ## Arguments
    ``opponent_elo`` (default 1200, the benchmark's) or ``opponent_skill`` (0-20; 20 is full
    strength), ``opponent_depth`` / ``opponent_nodes`` / ``opponent_movetime`` (the search limit
    of a full-strength opponent; default 100 ms as the benchmark), ``native_weakening`` (default
    False: weaken Stockfish reproducibly with the env's ``np_random`` rather than with its
    clock-seeded generator, see ``engine.py``), ``random_opponent`` (uniform legal moves, as the
    benchmark's option), ``start_fen``, ``max_moves`` (400), ``illegal_reward`` (-1.0),
    ``illegal_ends_episode`` (False, as the benchmark), ``engine_path`` and ``engine`` (a shared
    :class:`Stockfish`, not closed by this env), ``render_mode`` (``"ansi"``).

    ## Version History
    - v0: first version. Differences from upstream: observations carry a line of commentary above
      the FEN (upstream: the FEN alone), replies are parsed leniently, UCI is accepted besides SAN,
      a null move is an illegal move like any other (upstream ends the episode on one), and the
      opponent's weakening is seeded (upstream: Stockfish's own, which is not reproducible).
    """

    reward_range = (-1.0, 1.0)

    def __init__(
        self,
        opponent_elo: float | None = BENCHMARK_ELO,
        opponent_skill: float | None = None,
        opponent_depth: int | None = None,
        opponent_nodes: int | None = None,
        opponent_movetime: float | None = None,
        native_weakening: bool = False,
        random_opponent: bool = False,
        start_fen: str | None = None,
        max_moves: int = MAX_MOVES,
        illegal_reward: float = -1.0,
        illegal_ends_episode: bool = False,
        engine_path: str | os.PathLike[str] | None = None,
        engine: Stockfish | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        if max_moves < 1:
            raise ValueError(f"max_moves must be >= 1, got {max_moves}")
        if opponent_skill is not None and opponent_elo == BENCHMARK_ELO:
            opponent_elo = None  # a skill level given alone replaces the default rating
        self.strength = Strength(
            skill_level=opponent_skill,
            elo=opponent_elo,
            depth=opponent_depth,
            nodes=opponent_nodes,
            movetime=opponent_movetime,
            native=native_weakening,
        )
        self.random_opponent = bool(random_opponent)
        # A weakened move searches to a few plies: a small hash makes the per-move reset cheaper.
        hash_mb = 16 if self.strength.full or self.strength.native else 1
        self.engine = engine if engine is not None else Stockfish(engine_path, hash_mb=hash_mb)
        self._owns_engine = engine is None
        self.start_fen = chess.Board(start_fen).fen() if start_fen else chess.STARTING_FEN
        self.max_moves = int(max_moves)
        self.max_turns = self.max_moves + 1
        self.illegal_reward = float(illegal_reward)
        self.illegal_ends_episode = bool(illegal_ends_episode)
        self.reward_range = (min(-1.0, self.illegal_reward), 1.0)
        self.board = chess.Board(self.start_fen)
        self._start = self.start_fen
        opponent = "a random player" if self.random_opponent else self.strength.describe()
        self.instructions = (
            f"You are playing chess as white against {opponent}. {self._task()} Each turn you see "
            "what happened, then the board in FEN (Forsyth-Edwards Notation) on the last line. "
            "Reply with one legal move in SAN (standard algebraic notation, e.g. e4, Nf3, exd5, "
            "O-O, e8=Q) or UCI (e.g. e2e4); if your reply has more text, its last move is taken. "
            f"You get 1 point for checkmating, -1 if you are checkmated, {self.illegal_reward:g} "
            "for an illegal move (the board stays as it was and it is still your move), and 0 for "
            f"any other move or a draw. The game ends after {self.max_moves} of your moves."
        )

    def _task(self) -> str:
        return "Win the game by checkmate."

    # -- dynamics ------------------------------------------------------------------------------
    def _start_position(self, rng: np.random.Generator, options: dict[str, Any]) -> str:
        return str(options.get("fen") or self.start_fen)

    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        start = self._start_position(rng, options)
        board = chess.Board(start)
        if not board.is_valid() or board.is_game_over():
            raise ValueError(f"not a playable start position: {start!r}")
        self.board, self._start = board, board.fen()
        lines = [f"New game: you play white. {self._task()}"]
        info: dict[str, Any] = {"move": None, "opponent_move": None}
        if board.turn == chess.BLACK:
            reply = self._opponent_move(rng)
            info["opponent_move"] = reply
            lines.append(f"Black played {reply}.")
        return self._observe(lines), self._info(info)

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        move, problem = parse_move(self.board, action)
        if move is None:
            shown = action.strip()[:_SHOWN_MAX] + ("..." if len(action.strip()) > _SHOWN_MAX else "")
            info = self._info({"move": None, "opponent_move": None, "valid_action": False})
            ends = self.illegal_ends_episode
            line = f"Illegal move {shown!r}: {problem}." + ("" if ends else " It is still your move.")
            if ends:
                info["result"], info["termination"] = "0-1", "illegal move"
            return self._observe([line]), self.illegal_reward, ends, info
        san = self.board.san(move)
        self.board.push(move)
        over = self._game_over([f"You played {san}."], {"move": san, "opponent_move": None})
        if over is not None:
            return over
        reply = self._opponent_move(self.np_random)
        over = self._game_over(
            [f"You played {san}. Black played {reply}."], {"move": san, "opponent_move": reply}
        )
        if over is not None:
            return over
        lines = [f"You played {san}. Black played {reply}."]
        return self._observe(lines), 0.0, False, self._info({"move": san, "opponent_move": reply})

    def _opponent_move(self, rng: np.random.Generator) -> str:
        legal = list(self.board.legal_moves)
        if self.random_opponent:
            move = legal[int(rng.integers(len(legal)))]
        else:
            move = self.engine.best_move(self.board, self.strength, rng)
        san = self.board.san(move)
        self.board.push(move)
        return san

    def _game_over(
        self, lines: list[str], info: dict[str, Any]
    ) -> tuple[str, float, bool, dict[str, Any]] | None:
        outcome = self.board.outcome()
        if outcome is None:
            return None
        won = outcome.winner == chess.WHITE
        lost = outcome.winner == chess.BLACK
        reason = outcome.termination.name.lower().replace("_", " ")
        if won:
            lines.append("Checkmate: you win.")
        elif lost:
            lines.append("Checkmate: you lose.")
        else:
            lines.append(f"The game is drawn ({reason}).")
        info = self._info({**info, "success": won, "result": outcome.result(), "termination": reason})
        return self._observe(lines), 1.0 if won else -1.0 if lost else 0.0, True, info

    def _observe(self, lines: list[str]) -> str:
        return "\n".join([*lines, self.board.fen()])

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        over = self.board.is_game_over()
        info["fen"] = self.board.fen()
        info["admissible_actions"] = [] if over else [self.board.san(m) for m in self.board.legal_moves]
        return info

    # -- native snapshot: the board and its move stack ----------------------------------------
    def snapshot(self) -> ChessState:
        return ChessState(
            board=self.board.copy(),
            start_fen=self._start,
            **self._episode_fields(),
        )

    def restore(self, state: Any) -> str:
        if isinstance(state, EnvSnapshot):
            return super().restore(state)
        if not isinstance(state, ChessState):
            raise TypeError(f"{type(self).__name__}.restore expects a ChessState, got {type(state).__name__}")
        self.board = state.board.copy()
        self._start = state.start_fen
        self._restore_episode_fields(state)
        return state.last_observation

    def close(self) -> None:
        """Stop the engine process (unless it was passed in and is shared)."""
        if self._owns_engine:
            self.engine.close()
        super().close()


class EndgamesEnv(ChessEnv):
    """
    ## Description
    LMRL-Gym's Endgames: Chess from theoretical endgames, where white has a king and a queen
    and/or rooks against the lone black king (the benchmark's setups ``kQK``, ``kRK``, ``kQRK``,
    ``kRRK``). Winning needs a precise plan to mate, and no opening knowledge.

    ## Action Space
    As ``ChessEnv``: a move in SAN or UCI, parsed leniently.

    ## Observation Space
    As ``ChessEnv``: a line of what happened, then the board as FEN on the last line.

    ## Starting State
    With ``positions`` (a path to a file of FENs, one a line, or JSON strings as in the
    benchmark's ``test_positions.jsonl``; or a sequence of FENs): one of them, uniformly with the
    env's ``np_random``. Otherwise a setup drawn uniformly from ``setups``, then its pieces put on
    distinct random squares until the position is legal with white to move and neither king in
    check (as the benchmark generates them). ``reset(options={"fen": ...})`` or
    ``options={"setup": "kQK"}`` choose.

    ## Rewards
    As ``ChessEnv``: 1 for mating, -1 for being mated or an illegal move, 0 otherwise and for a
    draw (stalemate, bare kings after a capture, repetition, the 75-move rule).

    ## Episode End
    As ``ChessEnv``: at mate or a draw; truncated at step ``max_moves + 1`` (401).

    ## Information
    As ``ChessEnv``, plus ``setup``: the material at the start (``"kQK"``).

    ## Arguments
    ``setups`` (default ``("kQK", "kRK", "kQRK", "kRRK")``), ``positions`` (default None), and
    every argument of ``ChessEnv`` but ``start_fen``.

    ## Version History
    - v0: first version; differences from upstream as ``ChessEnv``. The benchmark's evaluation
      set (645 positions not trivially solvable, hosted outside GitHub) is not shipped: pass it
      as ``positions``.
    """

    def __init__(
        self,
        setups: Sequence[str] = ENDGAME_SETUPS,
        positions: str | os.PathLike[str] | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if "start_fen" in kwargs:
            raise TypeError(
                "EndgamesEnv draws its start positions: pass positions=[fen] instead of start_fen"
            )
        self.setups = tuple(setups)
        if not self.setups:
            raise ValueError("setups is empty")
        rng = np.random.default_rng(0)
        for setup in self.setups:
            random_endgame(setup, rng)  # fails early on an impossible setup
        self.positions = load_positions(positions) if positions is not None else None
        self.setup = ""
        super().__init__(**kwargs)

    def _task(self) -> str:
        return "This is an endgame: you have more pieces than black's lone king; win by checkmate."

    def _start_position(self, rng: np.random.Generator, options: dict[str, Any]) -> str:
        if options.get("fen"):
            fen = str(options["fen"])
        elif options.get("setup"):
            fen = random_endgame(str(options["setup"]), rng)
        elif self.positions is not None:
            fen = self.positions[int(rng.integers(len(self.positions)))]
        else:
            fen = random_endgame(self.setups[int(rng.integers(len(self.setups)))], rng)
        self.setup = material(chess.Board(fen))
        return fen

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        info = super()._info(info)
        info["setup"] = self.setup
        return info


class StockfishPolicy:
    """Scripted chess player: Stockfish's move for the FEN in the observation, in SAN.

    ``skill_level`` (0-20, default full strength) or ``elo``; ``depth`` (default 12), ``nodes`` or
    ``movetime`` (seconds) limit the search. A weakened move is drawn with a generator seeded by
    ``seed``. ``engine``: a shared :class:`Stockfish` (not closed by ``close()``); otherwise the
    policy starts its own on the first move. ``notation``: ``"san"`` or ``"uci"``.

    The FEN alone hides the move history, which Stockfish needs to steer away from repetitions:
    so the policy keeps the game it has seen since ``reset()``, and when a new observation's
    board follows from its last board by its own move and one reply (or by nothing, after an
    illegal move) it searches that game with its history; otherwise it starts again from the FEN.
    """

    def __init__(
        self,
        skill_level: float | None = None,
        depth: int | None = 12,
        *,
        elo: float | None = None,
        nodes: int | None = None,
        movetime: float | None = None,
        seed: int | None = None,
        engine: Stockfish | None = None,
        engine_path: str | os.PathLike[str] | None = None,
        notation: str = "san",
    ) -> None:
        if notation not in ("san", "uci"):
            raise ValueError(f"notation must be 'san' or 'uci', got {notation!r}")
        self.strength = Strength(
            skill_level=skill_level, elo=elo, depth=depth, nodes=nodes, movetime=movetime
        )
        self.engine = engine if engine is not None else Stockfish(engine_path)
        self._owns_engine = engine is None
        self.notation = notation
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._game: chess.Board | None = None
        self._last: chess.Move | None = None

    def reset(self) -> None:
        """Forget the game so far (call at the start of every episode)."""
        self._game, self._last = None, None

    def act(self, observation: str) -> str:
        board = self._follow(board_from_observation(observation))
        if board.is_game_over():
            self.reset()
            return "resign"  # nothing to play; any reply is as good
        move = self.engine.best_move(board, self.strength, self.rng)
        self._game, self._last = board, move
        return board.san(move) if self.notation == "san" else move.uci()

    def _follow(self, seen: chess.Board) -> chess.Board:
        """``seen`` with the history that led to it, where the game so far explains it."""
        game, fen = self._game, seen.fen()
        if game is None or self._last is None:
            return seen
        if game.fen() == fen:  # the last move was refused
            return game
        after = game.copy()
        after.push(self._last)
        if after.fen() == fen:  # the game ended on our move, or black has no reply yet
            return after
        for reply in after.legal_moves:
            after.push(reply)
            if after.fen() == fen:
                return after
            after.pop()
        return seen

    def close(self) -> None:
        if self._owns_engine:
            self.engine.close()

    def __enter__(self) -> StockfishPolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
