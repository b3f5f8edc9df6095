"""A CLI training run killed with SIGKILL and resumed ends with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ARGS = [
    "train", "sft", "--model", "tiny", "--config", "configs/sft_guessnumber_tiny.yaml",
    "--set", "total_steps=6", "--set", "save_every=1", "--set", "expert_episodes=8",
    "--set", "env_kwargs={n: 32}", "--set", "batch_size=4", "--set", "warmup_steps=1", "--json",
]
ROOT = Path(__file__).resolve().parents[2]


def _run(out: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "plyground.cli", *ARGS, "--out", str(out), *extra],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _weights(out: Path) -> dict[str, torch.Tensor]:
    latest = (out / "checkpoints" / "latest").read_text().strip()
    state = torch.load(out / "checkpoints" / latest / "trainer.pt", weights_only=False)
    assert state["step"] == 6
    return state["model"]  # type: ignore[no-any-return]


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = _run(tmp_path / "straight")
    killed = _run(tmp_path / "killed")
    pointer = tmp_path / "killed" / "checkpoints" / "latest"
    deadline = time.time() + 300
    while time.time() < deadline:
        if pointer.exists() and pointer.read_text().strip() >= "step_000003":
            break
        assert killed.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert straight.wait(timeout=300) == 0
    assert _run(tmp_path / "killed", "--resume").wait(timeout=300) == 0
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [line for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines() if line]
    assert len(steps) == 6  # lines written after the last checkpoint were dropped on resume
