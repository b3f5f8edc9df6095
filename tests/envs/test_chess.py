"""Chess and Endgames (LMRL-Gym) over a real Stockfish; skipped with the install command without one."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import plyground
from plyground.errors import MissingComponentError

try:
    import chess
    import chess.engine

    from plyground.envs.lmrl.chess import (
        ENDGAME_SETUPS,
        ChessEnv,
        ChessState,
        EndgamesEnv,
        StockfishPolicy,
        board_from_observation,
        material,
        parse_move,
        random_endgame,
    )
    from plyground.envs.lmrl.engine import Stockfish, Strength, elo_to_skill, find_stockfish, weakened_pick

    find_stockfish()
except MissingComponentError as exc:
    pytest.skip(str(exc), allow_module_level=True)

MALFORMED = ("", "garbage!!", "x" * 10_000, "Ünïcödé 漢字 🙂 \u200b\n\t", "Ke9", "Qh5", "0000", "--")
STALEMATE_IN_ONE = "k7/8/8/2Q5/8/8/8/7K w - - 0 1"  # Qc7 stalemates
MATE_IN_ONE = "k7/8/1K6/8/8/8/8/6Q1 w - - 0 1"  # Qg8#
MATED_IN_ONE = "r6k/8/8/8/8/8/1P3PPP/6K1 w - - 0 1"  # after b3, Ra1#


def _play(env: ChessEnv, policy: StockfishPolicy, seed: int, options: dict | None = None) -> tuple[dict, int]:
    obs, info = env.reset(seed=seed, options=options)
    policy.reset()
    while True:
        obs, _, terminated, truncated, info = env.step(policy.act(obs))
        if terminated or truncated:
            return info, env.turn


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    with Stockfish() as shared:
        yield shared


@pytest.fixture(scope="module")
def policy(engine: Stockfish):  # type: ignore[no-untyped-def]
    with StockfishPolicy(depth=8, engine=engine) as player:
        yield player


# -- parsing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "uci"),
    [
        ("e4", "e2e4"),
        ("e2e4", "e2e4"),
        ("1. e4", "e2e4"),
        ("I play Nf3.", "g1f3"),
        ("g1f3", "g1f3"),
        ("N f 3", "g1f3"),
        ('{"move": "d4"}', "d2d4"),
        ("e4?! no wait, d4!", "d2d4"),
        ("Nf3+", "g1f3"),
    ],
)
def test_parse_move_reads_san_and_uci_leniently(reply: str, uci: str) -> None:
    move, problem = parse_move(chess.Board(), reply)
    assert move == chess.Move.from_uci(uci), problem


def test_parse_move_castling_and_promotion() -> None:
    board = chess.Board("4k3/P7/8/8/8/8/8/R3K2R w KQ - 0 1")
    for reply, uci in [("O-O", "e1g1"), ("0-0-0", "e1c1"), ("a8=Q", "a7a8q"), ("a7a8q", "a7a8q"), ("a8Q+", "a7a8q")]:
        assert parse_move(board, reply)[0] == chess.Move.from_uci(uci), reply


@pytest.mark.parametrize("reply", MALFORMED)
def test_parse_move_refuses_with_a_reason(reply: str) -> None:
    move, problem = parse_move(chess.Board(), reply)
    assert move is None and problem


# -- the env ---------------------------------------------------------------------------------------
def test_san_and_uci_moves_are_played(engine: Stockfish) -> None:
    env = ChessEnv(engine=engine)
    obs, info = env.reset(seed=0)
    assert obs.splitlines()[-1] == chess.STARTING_FEN
    assert sorted(info["admissible_actions"]) == sorted(chess.Board().san(m) for m in chess.Board().legal_moves)
    obs, reward, terminated, truncated, info = env.step("e4")
    assert (reward, terminated, truncated, info["valid_action"], info["move"]) == (0.0, False, False, True, "e4")
    assert info["opponent_move"] and env.board.turn == chess.WHITE and len(env.board.move_stack) == 2
    assert board_from_observation(obs) == chess.Board(info["fen"])
    obs, reward, *_, info = env.step("g1f3")
    assert (reward, info["valid_action"], info["move"]) == (0.0, True, "Nf3")
    assert env.board.fen() == obs.splitlines()[-1]


@pytest.mark.parametrize("reply", MALFORMED)
def test_illegal_and_malformed_moves_cost_one_and_keep_the_board(engine: Stockfish, reply: str) -> None:
    env = ChessEnv(engine=engine)
    obs, _ = env.reset(seed=0)
    obs2, reward, terminated, truncated, info = env.step(reply)
    assert (reward, terminated, truncated, info["valid_action"], env.turn) == (-1.0, False, False, False, 1)
    assert obs2.splitlines()[-1] == obs.splitlines()[-1] and "Illegal move" in obs2
    assert len(obs2) < 500  # a 10 kB reply is not echoed back whole


def test_illegal_move_can_end_the_episode(engine: Stockfish) -> None:
    env = ChessEnv(engine=engine, illegal_ends_episode=True, illegal_reward=-2.0)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("Ke2")
    assert (reward, terminated, info["result"], env.reward_range) == (-2.0, True, "0-1", (-2.0, 1.0))


def test_the_episode_is_truncated_after_max_moves(engine: Stockfish) -> None:
    env = ChessEnv(engine=engine, max_moves=2)
    env.reset(seed=0)
    ends = [env.step("nonsense")[2:4] for _ in range(3)]
    assert ends == [(False, False), (False, False), (False, True)]
    assert ChessEnv(engine=engine).max_turns == 401  # the benchmark's -401 floor


def test_win_draw_and_loss(engine: Stockfish) -> None:
    env = ChessEnv(engine=engine, opponent_skill=20, opponent_depth=6)
    env.reset(options={"fen": MATE_IN_ONE})
    _, reward, terminated, _, info = env.step("Qg8#")
    assert (reward, terminated, info["success"], info["result"], info["termination"]) == (1.0, True, True, "1-0", "checkmate")
    env.reset(options={"fen": STALEMATE_IN_ONE})
    _, reward, terminated, _, info = env.step("Qc7")
    assert (reward, terminated, info["success"], info["result"], info["termination"]) == (0.0, True, False, "1/2-1/2", "stalemate")
    assert info["admissible_actions"] == []
    env.reset(options={"fen": MATED_IN_ONE})
    obs, reward, terminated, _, info = env.step("b3")
    assert (reward, terminated, info["success"], info["result"], info["opponent_move"]) == (-1.0, True, False, "0-1", "Ra1#")
    assert "you lose" in obs


def test_the_opponent_moves_first_when_black_is_to_move(engine: Stockfish) -> None:
    env = ChessEnv(engine=engine, start_fen="rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq - 0 1")
    obs, info = env.reset(seed=3)
    assert info["opponent_move"] and env.board.turn == chess.WHITE and "Black played" in obs


def test_seeded_opponent_is_reproducible_and_weak(engine: Stockfish) -> None:
    env = ChessEnv(engine=engine)
    replies = []
    for seed in (0, 0, 1, 2, 3):
        env.reset(seed=seed)
        replies.append(env.step("e4")[4]["opponent_move"])
    assert replies[0] == replies[1]
    assert len(set(replies[1:])) > 1  # level 0 varies its reply with the seed


def test_random_and_native_opponents_play_legal_moves(engine: Stockfish) -> None:
    for kwargs in ({"random_opponent": True}, {"opponent_skill": 0, "native_weakening": True, "opponent_movetime": 0.02}):
        env = ChessEnv(engine=engine, **kwargs)  # type: ignore[arg-type]
        env.reset(seed=0)
        for move in ("e4", "d4", "Nc3"):
            *_, info = env.step(move)
            if info["valid_action"] is False:  # the opponent may have blocked the move
                continue
            assert info["opponent_move"]


def test_snapshot_restore_reproduces(engine: Stockfish) -> None:
    env = ChessEnv(engine=engine)
    env.reset(seed=5)
    for move in ("e4", "Nf3", "nonsense"):
        env.step(move)
    state = env.snapshot()
    assert isinstance(state, ChessState)
    fen = env.board.fen()
    first = [env.step(m) for m in ("d4", "Bc4", "O-O")]
    env.reset(seed=99)
    env.step("a4")
    for _ in range(2):
        obs = env.restore(state)
        assert env.board.fen() == fen == obs.splitlines()[-1] and env.turn == 3
        again = [env.step(m) for m in ("d4", "Bc4", "O-O")]
        assert [s[:4] for s in again] == [s[:4] for s in first]
    assert state.board.fen() == fen  # later play does not touch the snapshot


def test_restore_after_the_end_and_the_replay_snapshot(engine: Stockfish) -> None:
    env = ChessEnv(engine=engine)
    env.reset(options={"fen": MATE_IN_ONE})
    env.step("Qg8#")
    state = env.snapshot()
    env.reset(seed=1)
    env.restore(state)
    assert env.done
    env.reset(seed=2)
    env.step("e4")
    replay = plyground.envs.EnvSnapshot(env._episode_rng_state, None, ["e4"])
    opponent_move = env.board.peek()
    env.reset(seed=7)
    env.restore(replay)
    assert env.board.peek() == opponent_move


# -- the engine ------------------------------------------------------------------------------------
def test_close_stops_the_engine() -> None:
    env = plyground.make("Chess-v0")
    assert env.engine.pid is None  # started lazily
    env.reset(seed=0)
    env.step("e4")
    pid = env.engine.pid
    assert pid is not None and _alive(pid)
    env.step("d4")
    assert env.engine.pid == pid  # reused
    env.close()
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid) and env.engine.pid is None


def test_a_dead_engine_is_restarted() -> None:
    env = ChessEnv()
    try:
        env.reset(seed=0)
        env.step("e4")
        pid = env.engine.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
        *_, info = env.step("d4")
        assert info["valid_action"] and info["opponent_move"]
        assert env.engine.pid not in (None, pid)
    finally:
        env.close()


def test_a_policy_drops_its_engine_when_it_is_garbage_collected() -> None:
    import gc

    policy = StockfishPolicy(depth=2)
    policy.act(chess.STARTING_FEN)
    pid = policy.engine.pid
    assert pid is not None and _alive(pid)
    del policy
    gc.collect()
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_weakened_lines_are_cached_and_reproducible_across_processes() -> None:
    def game(env: ChessEnv) -> list[str]:
        _, info = env.reset(seed=4)
        replies = []
        for _ in range(12):
            *_, terminated, truncated, info = env.step(info["admissible_actions"][0])
            replies.append(info["opponent_move"])
            if terminated or truncated:
                break
        return replies

    fresh = ChessEnv()
    warm = ChessEnv(engine=Stockfish(cache_size=0))  # no cache, and a hash full of other games
    try:
        warm.engine.top_moves(chess.Board(), 4, chess.engine.Limit(depth=12))
        for seed in range(3):
            warm.reset(seed=seed)
            warm.step("d4")
        assert game(fresh) == game(warm)
        lines = fresh.engine.top_moves(chess.Board(), 4, chess.engine.Limit(depth=2))
        fresh.engine.close()
        assert fresh.engine.top_moves(chess.Board(), 4, chess.engine.Limit(depth=2)) == lines
        assert not fresh.engine.running  # answered from the cache
    finally:
        fresh.close()
        warm.engine.close()


def test_missing_stockfish_names_the_install_command() -> None:
    with pytest.raises(MissingComponentError, match="apt-get install stockfish"):
        find_stockfish("/nonexistent/stockfish")
    with pytest.raises(MissingComponentError, match="apt-get install stockfish"):
        ChessEnv(engine_path="/nonexistent/stockfish")


def test_strength_settings() -> None:
    assert elo_to_skill(1200) == 0.0 and 18 < elo_to_skill(2850) <= 19 and 5 < elo_to_skill(2000) < 10
    assert Strength(elo=1200).level == 0 and Strength().full and Strength(skill_level=20).full
    assert Strength(depth=3).limit().depth == 3 and Strength().limit().time == 0.1
    for bad in ({"skill_level": 21}, {"depth": 0}, {"movetime": 0}, {"elo": 4000}):
        with pytest.raises(ValueError):
            Strength(**bad)  # type: ignore[arg-type]
    assert ChessEnv(opponent_skill=5).strength.level == 5  # a skill level replaces the default Elo
    rng = np.random.default_rng(0)
    picks = {weakened_pick([50, 40, 30, 20], 0, rng) for _ in range(200)}
    assert picks == {0, 1, 2, 3}  # level 0 plays any of its four lines
    assert {weakened_pick([300, 0, -50, -400], 19, rng) for _ in range(200)} == {0}


# -- endgames --------------------------------------------------------------------------------------
@pytest.mark.parametrize("setup", ENDGAME_SETUPS)
def test_random_endgames_are_legal_and_of_the_setup(setup: str) -> None:
    rng = np.random.default_rng(0)
    fens = {random_endgame(setup, rng) for _ in range(50)}
    assert len(fens) > 45
    for fen in fens:
        board = chess.Board(fen)
        assert board.is_valid() and board.turn == chess.WHITE and not board.is_check() and not board.is_game_over()
        assert material(board) == setup


def test_endgames_env_draws_every_setup(engine: Stockfish) -> None:
    env = EndgamesEnv(engine=engine)
    seen = set()
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        assert material(board_from_observation(obs)) == info["setup"] in ENDGAME_SETUPS
        seen.add(info["setup"])
    assert seen == set(ENDGAME_SETUPS)
    assert env.reset(seed=0) == env.reset(seed=0)
    assert env.reset(options={"setup": "kQK"})[1]["setup"] == "kQK"
    with pytest.raises(ValueError):
        EndgamesEnv(engine=engine, setups=("kQ",))


def test_endgames_from_a_positions_file(engine: Stockfish, tmp_path: Path) -> None:
    fens = [random_endgame("kQK", np.random.default_rng(s)) for s in range(3)]
    path = tmp_path / "test_positions.jsonl"  # the benchmark's form: one JSON string a line
    path.write_text("\n".join(json.dumps(f) for f in fens) + "\n\n", encoding="utf-8")
    env = EndgamesEnv(engine=engine, positions=path)
    starts = {env.reset(seed=s)[0].splitlines()[-1] for s in range(20)}
    assert starts == set(fens)
    with pytest.raises(ValueError):
        EndgamesEnv(engine=engine, positions=["8/8/8/8/8/8/8/8 w - - 0 1"])


# -- the scripted policy ---------------------------------------------------------------------------
def test_policy_reads_the_fen_and_answers_in_san_or_uci(engine: Stockfish) -> None:
    board = chess.Board(MATE_IN_ONE)
    assert StockfishPolicy(depth=4, engine=engine).act(f"Some text.\n{MATE_IN_ONE}") == "Qg8#"
    assert StockfishPolicy(depth=4, engine=engine, notation="uci").act(board.fen()) == "g1g8"
    with pytest.raises(ValueError, match="no FEN"):
        StockfishPolicy(engine=engine).act("no board here")


def test_policy_keeps_the_game_history(engine: Stockfish) -> None:
    env = ChessEnv(engine=engine)
    with StockfishPolicy(depth=2, engine=engine) as player:
        obs, _ = env.reset(seed=0)
        player.reset()
        obs = env.step(player.act(obs))[0]
        obs = env.step("nonsense")[0]  # refused: the board did not change
        obs = env.step(player.act(obs))[0]
        player.act(obs)
        assert player._game is not None and player._game.move_stack == env.board.move_stack
        player.act(chess.STARTING_FEN)  # an unrelated board: starts again from the FEN
        assert player._game is not None and player._game.move_stack == []


def test_full_strength_beats_the_weakest_opponent_in_endgames(engine: Stockfish, policy: StockfishPolicy) -> None:
    env = EndgamesEnv(engine=engine, opponent_skill=0)
    results = [_play(env, policy, seed, {"setup": setup})[0] for seed in range(3) for setup in ("kQK", "kRK")]
    assert sum(info["success"] for info in results) >= 5, [info.get("termination") for info in results]


def test_full_strength_beats_the_benchmark_opponent_in_full_games(engine: Stockfish) -> None:
    with StockfishPolicy(depth=5, engine=engine) as fast:
        env = ChessEnv(engine=engine)  # the registered opponent: Elo 1200
        results = [_play(env, fast, seed)[0] for seed in range(2)]
    assert sum(info["success"] for info in results) >= 1


@pytest.mark.slow
def test_full_strength_wins_most_games_long(engine: Stockfish) -> None:
    # The policy's default depth, 12: at depth 8 a few KR-K games run into Stockfish's 50-move
    # horizon (it then sees every move as a draw) and end drawn.
    with StockfishPolicy(engine=engine) as strong:
        endgames = EndgamesEnv(engine=engine, opponent_skill=0)
        wins = sum(_play(endgames, strong, seed)[0]["success"] for seed in range(40))
        assert wins >= 38
        games = ChessEnv(engine=engine, opponent_skill=0)
        wins = sum(_play(games, strong, seed)[0]["success"] for seed in range(10))
        assert wins >= 9
