"""`plyground search` writes its files; the budget evaluation gives a table and a PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plyground.cli import EXIT_OK, EXIT_USAGE, main
from plyground.envs import make
from plyground.search import RandomProposer
from plyground.search.evaluate import budget_curve, format_table, plot_curve, run_search


def rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.mark.parametrize("algo", ["mcts", "bfs", "beam", "best-of-n"])
def test_search_cli_writes_its_files(tmp_path: Path, algo: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / algo
    code = main(["search", "Maze-v0", "--algo", algo, "--backend", "random", "--budget", "30",
                 "--episodes", "3", "--out", str(out), "--json"])
    assert code == EXIT_OK
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algo"] == algo and summary["episodes"] == 3 and summary["budget"] == 30
    assert json.loads(capsys.readouterr().out)["solved"] == summary["solved"]
    results = rows(out / "results.jsonl")
    assert len(results) == 3 and all(r["stats"]["proposer_calls"] <= 30 for r in results)
    sft = rows(out / "sft.jsonl")
    assert len(sft) == summary["solved"] == sum(r["success"] for r in results)
    for example in sft:
        assert example["messages"][0]["role"] == "system" and example["messages"][-1]["role"] == "assistant"
    for pair in rows(out / "pairs.jsonl"):
        assert set(pair) == {"prompt", "chosen", "rejected", "meta"}


def test_search_cli_guess_number_mcts(tmp_path: Path) -> None:
    code = main(["search", "GuessNumber-v0", "--algo", "mcts", "--backend", "random", "--budget", "40",
                 "--episodes", "2", "--rollout", "random", "--out", str(tmp_path)])
    assert code == EXIT_OK
    for name in ("results.jsonl", "pairs.jsonl", "sft.jsonl", "summary.json"):
        assert (tmp_path / name).exists()
    for r in rows(tmp_path / "results.jsonl"):
        assert all(1 <= int(t["action"]) <= 100 for t in r["trajectory"]["turns"])


def test_search_cli_rejects_an_unknown_env(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "Maze-v9", "--backend", "random"]) == EXIT_USAGE
    assert "Unknown environment" in capsys.readouterr().err


def test_budget_curve_table_and_plot(tmp_path: Path) -> None:
    points = budget_curve(
        lambda: make("Maze-v0"), ["mcts", "bfs", "beam", "best-of-n"], [4, 16], range(4), lambda s: RandomProposer(s)
    )
    assert len(points) == 8 and all(0.0 <= p.success_rate <= 1.0 for p in points)
    assert all(p.mean_proposer_calls <= p.budget for p in points)
    table = format_table(points)
    assert "| mcts |" in table and "| best-of-n |" in table
    png = tmp_path / "curve.png"
    plot_curve(points, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="unknown search algorithm"):
        run_search("dfs", make("Maze-v0"), RandomProposer(0), 4)


def test_search_cli_reports_the_tokens_the_model_produced(tmp_path: Path) -> None:
    code = main(["search", "GuessNumber-v0", "--algo", "bfs", "--backend", "hf", "--model", "tiny", "--budget", "3",
                 "--k", "2", "--max-tokens", "8", "--episodes", "2", "--out", str(tmp_path)])  # fmt: skip
    assert code == EXIT_OK
    summary = json.loads((tmp_path / "summary.json").read_text())
    per_search = [r["stats"]["tokens"] for r in rows(tmp_path / "results.jsonl")]
    assert min(per_search) > 0
    assert summary["mean_tokens"] == pytest.approx(sum(per_search) / len(per_search))


def test_search_cli_refuses_a_critic_without_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "Maze-v0", "--backend", "random", "--critic"]) == EXIT_USAGE
    assert "--critic" in capsys.readouterr().err
