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
    cfg = AgentQConfig(env_id="Maze-v0", env_kwargs={"maze": "umaze", "max_steps": 4}, total_steps=1, k=2,
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


@pytest.mark.slow
def test_reset_options_reach_the_env(tmp_path, monkeypatch) -> None:
    """A real (one-simulation) search from a chosen U-maze cell starts at that cell."""
    trainer = _trainer(tmp_path, episodes_per_iteration=1, reset_options=[{"init_position": [1, 2]}], mcts_rollout="none")
    calls: list[Any] = []
    real = plyground.search.mcts

    def spy(*args: Any, **kwargs: Any) -> SearchResult:
        result = real(*args, **kwargs)
        calls.append(result)
        return result

    monkeypatch.setattr(plyground.search, "mcts", spy)
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
