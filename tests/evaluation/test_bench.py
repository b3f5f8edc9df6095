"""`plyground bench`: rollout throughput per concurrency level."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plyground.cli import EXIT_OK, EXIT_USAGE, main
from plyground.envs.guess_number import bisection_chat_policy
from plyground.evaluation.bench import measure_throughput
from plyground.inference.scripted import ScriptedBackend

POLICY = "plyground.envs.guess_number:bisection_chat_policy"


def test_points_count_what_was_played() -> None:
    backend = ScriptedBackend(bisection_chat_policy)
    seen = []
    points = measure_throughput("GuessNumber-v0", backend, [1, 3], episodes=5, progress=seen.append)
    assert [p.concurrency for p in points] == [1, 3] and seen == points
    first, second = points
    # The same seeded episodes at every level: bisection takes the same turns.
    assert first.turns == second.turns >= 5 and first.episodes == second.episodes == 5
    assert first.errors == 0 and first.speedup == 1.0 and second.speedup > 0
    assert first.turns_per_s == pytest.approx(first.turns / first.wall_s, rel=0.01)
    assert first.tokens == 0  # a text-only backend returns no token ids
    with pytest.raises(ValueError, match=">= 1"):
        measure_throughput("GuessNumber-v0", backend, [0])


def test_bench_cli_writes_points(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    code = main(["bench", "GuessNumber-v0", "--backend", "scripted", "--model", POLICY, "--episodes", "3",
                 "--concurrency", "1", "2", "--out", str(out), "--json"])  # fmt: skip
    assert code == EXIT_OK
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert saved["backend"] == "scripted" and saved["points"] == printed
    assert [p["concurrency"] for p in printed] == [1, 2] and all(p["tokens"] > 0 for p in printed)


def test_bench_cli_rejects_an_unknown_env(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "GuessNumbr-v0", "--backend", "scripted", "--model", POLICY]) == EXIT_USAGE
    assert "Unknown environment" in capsys.readouterr().err
