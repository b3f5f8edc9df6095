"""examples/search/budget_curves.py: the script that writes docs/results/search_budget_*."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "search"))

import budget_curves

from plyground.envs import make
from plyground.envs.guess_number import GuessNumberEnv


def test_script_writes_table_json_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert budget_curves.main(["maze", "--seeds", "2", "--budgets", "2", "8", "--out", str(tmp_path)]) == 0
    md = (tmp_path / "search_budget_maze.md").read_text()
    assert "| MCTS |" in md and "| best-of-N |" in md
    assert f"examples/search/budget_curves.py maze --seeds 2 --budgets 2 8 --out {tmp_path}" in md
    points = json.loads((tmp_path / "search_budget_maze.json").read_text())["random"]
    assert len(points) == 8 and all(p["episodes"] == 2 and p["mean_proposer_calls"] <= p["budget"] for p in points)
    assert (tmp_path / "search_budget_maze.png").read_bytes()[:4] == b"\x89PNG"


def test_experts_play_their_games() -> None:
    from plyground.search import NoisyExpertProposer
    from plyground.search.evaluate import run_search

    # With p = 1 the noisy expert is the expert: binary search finds any number in 7 guesses.
    result = run_search("bfs", GuessNumberEnv(), NoisyExpertProposer(budget_curves.bisection_expert, 1.0), 8, 3)
    assert result.success and result.stats.proposer_calls <= 7
    env = make("WebShop-v0")
    try:
        shop = run_search(
            "bfs", env, NoisyExpertProposer(budget_curves.shopper_expert, 1.0, rewrite=budget_curves.fill_search), 15, 0,
            options={"goal_index": 1},
        )  # fmt: skip
        # The scripted shopper buys the right product with the size asked for (reward 1); keyed by
        # observation alone, choosing the size looks like a no-op and would be pruned.
        assert shop.success and shop.trajectory is not None
        actions = [t.action for t in shop.trajectory.turns]
        assert actions[0].startswith("search[") and "click[15 feet]" in actions and actions[-1] == "click[buy now]"
    finally:
        env.close()
