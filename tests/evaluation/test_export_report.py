"""Results as data (records, datasets, Parquet) and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import plyground
from plyground.cli import EXIT_OK, main
from plyground.envs.guess_number import bisection_chat_policy
from plyground.evaluation import EvalConfig, evaluate
from plyground.evaluation.export import episode_records, to_dataset, to_parquet, turn_records
from plyground.inference.scripted import ScriptedBackend, scripted_backend
from plyground.rollout import collect_sync, episode_specs
from plyground.types import Trajectory


@pytest.fixture(scope="module")
def trajs(tiny_backend) -> list[Trajectory]:  # type: ignore[no-untyped-def]
    backend = scripted_backend(bisection_chat_policy, tiny_backend.tokenizer)
    return collect_sync(lambda: plyground.make("GuessNumber-v0"), backend, episode_specs(3, samples=2))


def test_episode_records_schema(trajs: list[Trajectory]) -> None:
    rows = episode_records(trajs)
    assert len(rows) == 6
    row = rows[0]
    assert set(row) >= {"env_id", "success", "total_reward", "num_turns", "observations", "actions",
                        "token_ids", "loss_mask", "logprobs", "metadata"}
    assert row["num_turns"] == len(row["actions"]) == len(row["rewards"]) == len(row["observations"])
    assert len(row["token_ids"]) == len(row["loss_mask"]) == len(row["logprobs"]) > 0
    assert json.loads(row["metadata"])["episode"] == row["episode"]
    assert sum(len(r["actions"]) for r in rows) == len(turn_records(trajs))


def test_dataset_and_parquet_round_trip(trajs: list[Trajectory], tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    pq = pytest.importorskip("pyarrow.parquet")
    ds = to_dataset(trajs)
    assert ds.num_rows == 6 and ds[0]["env_id"] == "GuessNumber-v0"
    assert to_parquet(trajs, str(tmp_path / "t.parquet")) == 6
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.num_rows == 6 and table.column("success").to_pylist() == [t.success for t in trajs]
    assert to_dataset(trajs, per_turn=True).num_rows == sum(t.num_turns for t in trajs)


def test_html_report(tmp_path: Path) -> None:
    for env_id in ("GuessNumber-v0", "Arithmetic-v0"):
        evaluate(EvalConfig(env_id, episodes=3, out_dir=str(tmp_path / env_id)),
                 ScriptedBackend(bisection_chat_policy), progress=False)
    (tmp_path / "GuessNumber-v0" / "budget_curve.json").write_text(json.dumps({"mcts": [[1, 0.2], [4, 0.6]]}))
    out = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "GuessNumber-v0"), str(tmp_path / "Arithmetic-v0"), "-o", str(out)]) == EXIT_OK
    text = out.read_text()
    assert text.count("data:image/png;base64,") == 3
    assert "GuessNumber-v0" in text and "Arithmetic-v0" in text and "100.0%" in text


def test_report_of_a_non_run_folder_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 2
    assert "has no summary.json" in capsys.readouterr().err
