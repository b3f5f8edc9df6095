"""The front door: `plyground envs | eval | serve | search | train`, resume, and failures with clear messages."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from plyground.cli import EXIT_BACKEND, EXIT_OK, EXIT_USAGE, main
from plyground.envs.guess_number import bisection_chat_policy
from plyground.errors import BackendError
from plyground.evaluation import EvalConfig, ResumeMismatchError, evaluate
from plyground.inference.scripted import ScriptedBackend
from plyground.types import Chat, read_trajectories


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_envs_table_lists_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envs"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "GuessNumber-v0" in out and "Arithmetic-v0" in out and "single-turn" in out


def test_envs_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["envs", "--json"]) == EXIT_OK
    specs = {s["id"]: s for s in json.loads(capsys.readouterr().out)}
    assert specs["GuessNumber-v0"]["max_turns"] == 10
    assert specs["Arithmetic-v0"]["reward_range"] == [0.0, 1.0]


def test_unknown_env_fails_before_loading_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    assert main(["eval", "GuessNumbr-v0", "--model", "default"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Unknown environment 'GuessNumbr-v0'" in err and "Did you mean 'GuessNumber-v0'" in err
    assert time.perf_counter() - start < 5


def test_backend_that_is_down_exits_3_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    code = main(
        ["eval", "GuessNumber-v0", "--backend", "openai", "--model", "m", "--base-url", url,
         "--timeout", "2", "--episodes", "2", "--out", str(tmp_path), "--no-progress"]
    )
    assert code == EXIT_BACKEND
    err = capsys.readouterr().err
    assert "backend error" in err and "cannot connect" in err and url in err


def test_eval_tiny_writes_files_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["eval", "GuessNumber-v0", "--model", "tiny", "--max-tokens", "8", "--max-turns", "2",
            "--concurrency", "3", "--out", str(tmp_path), "--no-progress", "--json"]
    assert main([*args, "--episodes", "3", "--samples", "2"]) == EXIT_OK
    first = lines(tmp_path / "trajectories.jsonl")
    assert len(first) == 6
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["episodes"] == 3 and summary["samples"] == 2 and "pass@2" in summary["pass_at_k"]
    assert summary["completion_tokens"] > 0
    # Asking for more episodes plays only the missing ones.
    assert main([*args, "--episodes", "5", "--samples", "2"]) == EXIT_OK
    second = lines(tmp_path / "trajectories.jsonl")
    assert len(second) == 10 and second[:6] == first
    keys = {(t["metadata"]["episode"], t["metadata"]["sample"]) for t in second}
    assert len(keys) == 10
    # Different settings in the same folder are refused, not mixed.
    assert main([*args, "--episodes", "5", "--temperature", "0.1"]) == EXIT_USAGE
    assert "different settings" in capsys.readouterr().err


def test_killed_run_loses_nothing_and_resumes(tmp_path: Path) -> None:
    calls = {"n": 0}

    def dies_midway(chat: Chat) -> str:
        calls["n"] += 1
        if calls["n"] > 25:
            raise BackendError("server went away")
        return bisection_chat_policy(chat)

    config = EvalConfig("GuessNumber-v0", episodes=10, concurrency=2, out_dir=str(tmp_path))
    with pytest.raises(BackendError):
        evaluate(config, ScriptedBackend(dies_midway), progress=False)
    kept = read_trajectories(str(tmp_path / "trajectories.jsonl"))
    assert 0 < len(kept) < 10 and all(t.success for t in kept)
    assert json.loads((tmp_path / "summary.json").read_text())["trajectories"] == len(kept)
    # A torn last line (the writer killed mid-write) is dropped, not fatal.
    with open(tmp_path / "trajectories.jsonl", "a") as fh:
        fh.write('{"env_id": "GuessNumber-v0", "tur')
    summary = evaluate(config, ScriptedBackend(bisection_chat_policy), progress=False)
    assert summary.trajectories == 10 and summary.success_rate == 1.0
    assert len(read_trajectories(str(tmp_path / "trajectories.jsonl"))) == 10


def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    evaluate(EvalConfig("GuessNumber-v0", episodes=1, out_dir=str(tmp_path)), ScriptedBackend(bisection_chat_policy), progress=False)
    with pytest.raises(ResumeMismatchError, match="seed"):
        evaluate(EvalConfig("GuessNumber-v0", episodes=1, seed=5, out_dir=str(tmp_path)), ScriptedBackend(bisection_chat_policy), progress=False)


@pytest.fixture(scope="module")
def served_tiny():  # type: ignore[no-untyped-def]
    """`plyground serve` as a user runs it: a subprocess on 127.0.0.1 with the tiny model."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "plyground.cli", "serve", "--model", "tiny", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"plyground serve exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError("plyground serve did not come up in 120 s")
    yield f"{url}/v1"
    proc.terminate()
    proc.wait(timeout=20)


def test_eval_through_openai_backend_against_plyground_serve(served_tiny: str, tmp_path: Path) -> None:
    code = main(
        ["eval", "Arithmetic-v0", "GuessNumber-v0", "--backend", "openai", "--model", "tiny",
         "--base-url", served_tiny, "--episodes", "3", "--max-tokens", "8", "--max-turns", "2",
         "--out", str(tmp_path), "--no-progress"]
    )
    assert code == EXIT_OK
    for env_id in ("Arithmetic-v0", "GuessNumber-v0"):
        trajs = read_trajectories(str(tmp_path / env_id / "trajectories.jsonl"))
        assert len(trajs) == 3 and all(t.error is None for t in trajs)
        completions = [t.completion for tr in trajs for t in tr.turns if t.completion]
        assert completions and all(c.logprobs for c in completions)
        summary = json.loads((tmp_path / env_id / "summary.json").read_text())
        assert summary["backend"] == "openai" and summary["trajectories"] == 3


def test_unknown_training_algorithm_suggests_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "grp", "--env", "Arithmetic-v0", "--model", "tiny"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Unknown training algorithm 'grp'" in err and "Did you mean 'grpo'" in err


def test_device_goes_to_the_server_that_takes_one(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from plyground.cli import cli_backend_spec

    args = argparse.Namespace(backend="plyground-server", model="tiny", device="cpu")
    assert cli_backend_spec(args) == {"name": "plyground-server", "model": "tiny", "device": "cpu"}
    # vLLM picks its own GPUs: a --device there is refused, not silently dropped.
    assert main(["eval", "GuessNumber-v0", "--backend", "vllm", "--model", "m", "--device", "cuda:1"]) == EXIT_USAGE
    assert "CUDA_VISIBLE_DEVICES" in capsys.readouterr().err
