"""Agent Q trainer: the search covers the configured start states."""

from __future__ import annotations

from typing import Any

import pytest

import plyground.search
from plyground.inference.models import tiny_model
from plyground.search.tree import SearchResult
from plyground.trainers.agent_q import AgentQConfig, AgentQTrainer


def _trainer(tmp_path: Any, **kw: Any) -> AgentQTrainer:
    model, tok = tiny_model(seed=0)
    kw.setdefault("k", 2)
    cfg = AgentQConfig(env_id="Maze-v0", env_kwargs={"maze": "umaze", "max_steps": 4}, total_steps=1,
                       simulations=1, mixed_precision="no", out_dir=str(tmp_path), **kw)
    return AgentQTrainer(cfg, model=model, tokenizer=tok)


def test_reset_options_are_cycled_over_the_searched_episodes(tmp_path, monkeypatch) -> None:
    seen: list[Any] = []

    def fake_mcts(env, proposer, config, critic=None, seed=None, options=None, env_id=""):  # type: ignore[no-untyped-def]
        seen.append(options)
        return SearchResult(algo="mcts", env_id=env_id, seed=seed)

    monkeypatch.setattr(plyground.search, "mcts", fake_mcts)
    cells = [{"init_position": [1, 1]}, {"init_position": [1, 2]}]
    trainer = _trainer(tmp_path, episodes_per_iteration=5, reset_options=cells)
    pairs, metrics = trainer.search(0)
    assert pairs == [] and metrics["charts/pairs"] == 0.0
    assert seen == [cells[0], cells[1], cells[0], cells[1], cells[0]]
    # without options each episode is the env's own draw from its seed
    seen.clear()
    _trainer(tmp_path / "b", episodes_per_iteration=2).search(0)
    assert seen == [None, None]


def _spy_on_mcts(monkeypatch: pytest.MonkeyPatch) -> list[SearchResult]:
    """The real MCTS, with each search's result appended to the returned list."""
    results: list[SearchResult] = []
    real = plyground.search.mcts

    def spy(*args: Any, **kwargs: Any) -> SearchResult:
        results.append(real(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(plyground.search, "mcts", spy)
    return results


@pytest.mark.slow
def test_reset_options_reach_the_env(tmp_path, monkeypatch) -> None:
    """A real (one-simulation) search from a chosen U-maze cell starts at that cell."""
    trainer = _trainer(tmp_path, episodes_per_iteration=1, reset_options=[{"init_position": [1, 2]}], mcts_rollout="none")
    calls = _spy_on_mcts(monkeypatch)
    trainer.search(0)
    root = calls[0].root
    assert root is not None and "position 1, 2" in root.observation


def test_nll_coef_adds_the_chosen_per_token_nll_to_dpo(tmp_path) -> None:
    import math

    import torch

    from plyground.trainers.core.loop import StepTotals

    pairs = [{"prompt": [{"role": "user", "content": "where now?"}], "chosen": "move up", "rejected": "move left",
              "meta": {}} for _ in range(2)]
    losses = {}
    for coef in (0.0, 0.5):
        trainer = _trainer(tmp_path / str(coef), nll_coef=coef)
        trainer.load_iteration_pairs(pairs)
        batch = trainer._batch([0, 1])
        batch["ref"] = trainer.ref[[0, 1]]
        with torch.no_grad():
            loss, metrics = trainer.compute_loss(batch, StepTotals(tokens=0.0, sequences=2.0, micro_batches=1))
        losses[coef] = (float(loss), metrics)
        # the reference is the starting policy itself: DPO starts at log 2
        assert math.isclose(metrics["losses/dpo"], math.log(2), rel_tol=1e-4)
    plain, rpo = losses[0.0], losses[0.5]
    assert "losses/chosen_nll" not in plain[1] and rpo[1]["losses/chosen_nll"] > 0
    assert math.isclose(rpo[0], plain[0] + 0.5 * rpo[1]["losses/chosen_nll"], rel_tol=1e-4)


@pytest.mark.slow
def test_agent_q_iteration_script_end_to_end(tmp_path) -> None:
    """Must-show C's script, shortened: one seed on the rooms maze, a few simulations, 1 DPO epoch."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "multiturn"))
    import agent_q_iteration

    payload = agent_q_iteration.main([
        "--quick", "--out", str(tmp_path), "--seeds", "0", "--sft-steps", "3", "--max-steps", "3",
        "--simulations", "4", "--samples", "1", "--dpo-epochs", "1",
    ])
    run = payload["runs"][0]
    for when in ("before", "after"):
        assert run[when]["greedy"]["n"] == 35.0 and len(run[when]["greedy_by_cell"]) == 35
        assert run[when]["sampled"]["n"] == 35.0
    assert run["dpo_steps"] >= 1 and "greedy_gain_mean" in payload["summary"]
    assert (tmp_path / "agent_q_iteration.png").stat().st_size > 0


def test_pooling_statistics_of_the_experiment_script() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "multiturn"))
    import agent_q_iteration as script

    # Student's t, two-sided, against table values; the sign test by hand.
    assert script.t_two_sided_p(2.0, 10) == pytest.approx(0.0734, abs=5e-4)
    assert script.t_two_sided_p(2.228, 10) == pytest.approx(0.05, abs=5e-4)
    assert script.t_two_sided_p(0.0, 5) == pytest.approx(1.0, abs=1e-6)
    assert script.two_sided_binomial_p(0, 6) == pytest.approx(2 / 64)
    assert script.two_sided_binomial_p(2, 8) == pytest.approx(2 * (1 + 8 + 28) / 256)
    assert script.two_sided_binomial_p(3, 6) == 1.0


class _FixedReplies:
    """A backend that answers every chat with the same replies (no model: the test is about the tree)."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = replies

    def generate(self, chats: Any, params: Any) -> list[list[Any]]:
        from plyground.types import Completion

        return [[Completion(text=r, logprobs=[-0.1 * (i + 1)]) for i, r in enumerate(self.replies[: params.n])]
                for _ in chats]


@pytest.mark.parametrize(("parser", "expected"), [
    ("text", {"move up", "move up amove up", "move down"}),
    ("env", {"move up", "move down"}),
    ("auto", {"move up", "move down"}),  # Maze has parse(), so auto is env
])
def test_action_parser_env_merges_replies_that_make_the_same_move(tmp_path, monkeypatch, parser, expected) -> None:
    trees = _spy_on_mcts(monkeypatch)
    trainer = _trainer(tmp_path, episodes_per_iteration=1, reset_options=[{"init_position": [1, 1]}],
                       mcts_rollout="none", k=3, action_parser=parser)
    trainer.backend = _FixedReplies(["move up", "move up amove up", "move down"])  # type: ignore[assignment]
    trainer.search(0)
    root = trees[0].root
    assert set(root.children) == expected
    # the merged child keeps the likelier spelling as its reply (the one DPO would train on)
    assert root.children["move up"].reply == "move up"
    assert trainer.action_parser()("no move here") == "no move here"


def test_action_parser_auto_falls_back_to_text_without_an_env_parse(tmp_path) -> None:
    from plyground.rollout.agent import parse_action

    model, tok = tiny_model(seed=0)
    cfg = AgentQConfig(env_id="Arithmetic-v0", total_steps=1, k=2, simulations=1, mixed_precision="no",
                       out_dir=str(tmp_path))
    assert cfg.action_parser == "auto"
    assert AgentQTrainer(cfg, model=model, tokenizer=tok).action_parser() is parse_action


def test_action_parser_env_needs_an_env_parse(tmp_path) -> None:
    model, tok = tiny_model(seed=0)
    cfg = AgentQConfig(env_id="Arithmetic-v0", total_steps=1, k=2, simulations=1, mixed_precision="no",
                       out_dir=str(tmp_path), action_parser="env")
    with pytest.raises(ValueError, match="parse"):
        AgentQTrainer(cfg, model=model, tokenizer=tok).action_parser()


def _script() -> Any:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "multiturn"))
    import agent_q_iteration

    return agent_q_iteration


def test_script_grades_pairs_by_the_mazes_shortest_paths() -> None:
    import argparse

    script = _script()
    kwargs = script.env_kwargs_for(argparse.Namespace(maze="rooms", max_steps=12))
    best = script.optimal_moves(kwargs)
    assert len(best) == 35 and best[(1, 3)] == {"move down"} and best[(3, 3)] == {"move right"}
    assert all(len(moves) >= 1 for moves in best.values())

    def pair(cell: tuple[int, int], chosen: str, rejected: str) -> dict[str, Any]:
        obs = f"The goal is at position 3, 4. Your current position is at position {cell[0]}, {cell[1]}. There is a wall above you."
        return {"prompt": [{"role": "user", "content": obs}], "chosen": chosen, "rejected": rejected}

    graded = script.grade_pairs([
        pair((1, 3), "move down", "move up"),        # right
        pair((1, 3), "move left", "move down"),      # wrong
        pair((1, 3), "move up", "move left"),        # neither is a shortest-path move: tie
        pair((1, 3), "move down please", "garbage"),  # the reply is parsed as the env does
    ], best)
    assert graded == {"pairs": 4.0, "right": 2.0, "wrong": 1.0, "tie": 1.0, "states": 1.0}


def test_script_traps_bump_walls_away_from_the_goal_and_differ_by_seed() -> None:
    import argparse

    from plyground.envs.lmrl.maze import MOVES

    script = _script()
    kwargs = script.env_kwargs_for(argparse.Namespace(maze="rooms", max_steps=12))
    layout = kwargs["maze"]
    draws = [script.trap_moves(seed, kwargs, 3) for seed in range(5)]
    assert draws[0] == script.trap_moves(0, kwargs, 3)  # the same per seed
    assert len({tuple(sorted(d.items())) for d in draws}) > 1
    for traps in draws:
        assert len(traps) == 3
        for (r, c), move in traps.items():
            dr, dc = MOVES[move]
            assert not layout.is_open((r + dr, c + dc))  # a bump: the move leaves the agent in place
            assert abs(r - 3) + abs(c - 4) > 1  # never next to the goal (3, 4)
    assert script.trap_moves(0, kwargs, 0) == {}
    # the demonstrator plays the trap move at a trap and the expert's move elsewhere
    move = script.demonstrator(kwargs, {(1, 3): "move up"})
    obs = "The goal is at position 3, 4. Your current position is at position {}. There is a wall above you."
    assert move(obs.format("1, 3")) == "move up" and move(obs.format("1, 2")) == "move right"


def test_script_dpo_check_starts_at_log_2_and_tracks_the_margin() -> None:
    import math

    import torch

    script = _script()
    ref = torch.tensor([[-2.0, -1.0], [-3.0, -0.5]])
    same = script.dpo_check(ref, ref.clone(), beta=0.5)
    assert math.isclose(same["loss_after"], math.log(2), rel_tol=1e-6) and same["margin_after"] == 0.0
    assert same["chosen_more_likely_before"] == 0.0
    moved = script.dpo_check(ref, ref + torch.tensor([[1.0, -1.0], [1.0, -1.0]]), beta=0.5)
    assert math.isclose(moved["margin_after"], 1.0, rel_tol=1e-6) and moved["loss_after"] < math.log(2)
    assert moved["chosen_more_likely_after"] == 0.5  # pair 0 flips (-1 vs -2), pair 1 does not (-2 vs -1.5)


def test_script_flawed_demonstrator_plays_the_trap_move_with_its_probability() -> None:
    import argparse

    from plyground.envs.lmrl.maze import MOVES
    from plyground.types import Message

    script = _script()
    noisy_chat_policy = script.noisy_chat_policy  # the script's import of _common's
    kwargs = script.env_kwargs_for(argparse.Namespace(maze="rooms", max_steps=12))
    traps = {(1, 3): "move up"}
    old = noisy_chat_policy(script.demonstrator(kwargs, traps), list(MOVES), eps=0.5, salt=3)
    always = script.flawed_chat_policy(kwargs, traps, 1.0, eps=0.5, salt=3)
    half = script.flawed_chat_policy(kwargs, traps, 0.5, eps=0.0, salt=3)

    def chat(cell: str, i: int) -> list[Message]:
        return [Message("system", "maze"), Message("user", f"The goal is at position 3, 4. Your current position is at position {cell}. ({i})")]

    # trap_prob 1.0 is the plain demonstrator under the same noise, draw for draw
    assert all(old(chat(c, i)) == always(chat(c, i)) for c in ("1, 3", "1, 2", "4, 1") for i in range(200))
    moves = [half(chat("1, 3", i)) for i in range(400)]
    assert set(moves) == {"move up", "move down"}  # the trap move or the expert's, nothing else without eps
    assert 0.4 < moves.count("move up") / 400 < 0.6
    assert all(half(chat("1, 2", i)) == "move right" for i in range(50))  # not a trap: the expert
