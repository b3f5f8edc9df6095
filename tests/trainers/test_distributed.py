"""Data-parallel training: two CPU processes started by torchrun average their gradients.

Each process takes its own half of every batch; after the step both hold the same weights, and
those equal a single process training on the whole batch (the examples have equal lengths, so the
mean of the two halves' token means is the mean over all tokens).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

WORKER = Path(__file__).with_name("dp_worker.py")
BFS_WORKER = Path(__file__).with_name("dp_bfs_worker.py")
ARCHER_WORKER = Path(__file__).with_name("dp_archer_worker.py")


def torch_cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())
ROOT = Path(__file__).resolve().parents[2]


def _run(out: Path, nproc: int, batch_size: int, *extra: str) -> list[dict[str, object]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    if nproc == 1:
        env.pop("WORLD_SIZE", None)
        cmd = [sys.executable, str(WORKER), str(out), str(batch_size), *extra]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone",
               str(WORKER), str(out), str(batch_size), *extra]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads((out / f"result_{r}.json").read_text()) for r in range(nproc)]


def test_two_processes_train_like_one_on_the_whole_batch(tmp_path: Path) -> None:
    parallel = _run(tmp_path / "dp", 2, 2)
    single = _run(tmp_path / "single", 1, 4)
    assert [r["world_size"] for r in parallel] == [2, 2]
    assert parallel[0]["digest"] == parallel[1]["digest"]  # both processes hold the same weights
    assert parallel[0]["norm_weight"] == pytest.approx(single[0]["norm_weight"], abs=1e-5)
    # Only the main process wrote metrics and checkpoints, one line per step.
    lines = (tmp_path / "dp" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    step = tmp_path / "dp" / "checkpoints" / "step_000003"
    assert sorted(p.name for p in step.iterdir()) == ["rank_0.pt", "rank_1.pt", "trainer.pt"]


@pytest.mark.slow  # four more launches of two processes each
def test_data_parallel_run_resumes_exactly(tmp_path: Path) -> None:
    straight = _run(tmp_path / "straight", 2, 2)
    resumed = _run(tmp_path / "resumed", 2, 2, "1")
    assert resumed[0]["digest"] == resumed[1]["digest"] == straight[0]["digest"]


@pytest.mark.slow  # one launch of two processes
@pytest.mark.skipif(torch_cuda_available(), reason="checks the refusal on CPU-only machines")
def test_fsdp_on_cpu_is_refused_not_run_unsharded(tmp_path: Path) -> None:
    # accelerate (1.15) turns ACCELERATE_USE_FSDP into FSDP only on accelerators: on CPU processes it
    # returned the model unwrapped, and with FSDP assumed on, no gradients were averaged (measured:
    # the two ranks ended with different weights). The trainer must refuse instead.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_FSDP": "true",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(WORKER), str(tmp_path / "fsdp"), "2"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "FSDP was asked for (ACCELERATE_USE_FSDP) but there is no CUDA GPU" in done.stdout + done.stderr
    assert not (tmp_path / "fsdp" / "result_0.json").exists()


def _run_two(worker: Path, out: Path) -> list[dict[str, Any]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", str(worker), str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads((out / f"result_{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow  # one launch of two processes, each searching and training
def test_bfs_prover_processes_search_their_own_problems_and_resume_them(tmp_path: Path) -> None:
    ranks = _run_two(BFS_WORKER, tmp_path)
    assert ranks[0]["digest"] == ranks[1]["digest"]  # gradients were averaged
    assert ranks[0]["round_seeds"] == ranks[1]["round_seeds"]
    for round_index, seeds in enumerate(ranks[0]["round_seeds"]):
        mine = [[s for r, s in rank["searched"] if r == round_index] for rank in ranks]
        assert mine == [seeds[0::2], seeds[1::2]]  # disjoint halves that cover the round
    for rank in ranks:  # each process resumed its own searches, not the main process's
        assert rank["resumed_searched"] == rank["searched"]


@pytest.mark.slow  # one launch of two processes
def test_archer_processes_keep_their_own_buffers_and_one_critic(tmp_path: Path) -> None:
    ranks = _run_two(ARCHER_WORKER, tmp_path)
    for key in ("model", "critic", "target"):  # actor and critic gradients were both averaged
        assert ranks[0][key] == ranks[1][key], key
    assert ranks[0]["buffer"] != ranks[1]["buffer"]  # each process's own episodes
    for rank in ranks:
        assert rank["resumed_buffer"] == rank["buffer"]
        assert rank["resumed_critic"] == rank["critic"]


@pytest.mark.slow  # one launch of two processes
def test_agent_q_processes_search_their_own_episodes(tmp_path: Path) -> None:
    ranks = _run_two(Path(__file__).with_name("dp_agent_q_worker.py"), tmp_path)
    assert ranks[0]["digest"] == ranks[1]["digest"]
    first, second = (set(rank["searched"]) for rank in ranks)
    assert first and second and not first & second  # two iterations x 4 episodes, split between them
    assert len(first | second) == 8
    for rank, seeds in zip(ranks, (first, second), strict=True):
        # The last iteration's pairs are this process's own episodes, and a resume brings them back.
        assert {p["prompt"][0]["content"].split(":")[0] for p in rank["pairs"]} <= {f"episode {s}" for s in seeds}
        assert rank["pairs"] and rank["resumed_pairs"] == rank["pairs"]
