"""GRPO next to an inference server: rollouts from ``plyground-server`` replicas (the same routing
and weight-sync path as vLLM and SGLang), token-exact samples, weights pushed after each update."""

from __future__ import annotations

from pathlib import Path

import pytest

from plyground.inference.models import tiny_model
from plyground.inference.server import PlygroundServerBackend
from plyground.trainers import GRPOConfig, GRPOTrainer

GUESS_SMALL = {"n": 8}


def test_grpo_steps_with_rollouts_from_a_server(tmp_path: Path) -> None:
    model, tok = tiny_model()  # the server builds the same tiny model (seed 0)
    with PlygroundServerBackend("tiny", startup_timeout_s=120, request_timeout_s=120) as server:
        assert server.tokenizer.eos_token_id == tok.eos_token_id
        config = GRPOConfig(
            out_dir=str(tmp_path), env_id="GuessNumber-v0", env_kwargs=GUESS_SMALL, tasks_per_step=2, group_size=2,
            max_tokens=8, max_turns=2, total_steps=2, micro_batch_size=4, lr=1e-3, beta=0.0, device="cpu",
            entropy_coef=0.05,  # the tiny model scores 0 everywhere: without it the weights would not move
        )  # fmt: skip
        start = {k: v.clone() for k, v in model.state_dict().items()}
        trainer = GRPOTrainer(config, model, tok, rollout_backend=server)
        history = trainer.train()
        versions = [s["version"] for s in server.sync_log]
        trajs = trainer.last_trajectories
        moved = max((v - start[k]).abs().max().item() for k, v in model.state_dict().items())
    assert [h["step"] for h in history] == [1, 2]
    # Step 1 sampled on the server's initial weights, which equal the trainer's: ratio 1. The update
    # moved the weights, and step 2 sampled after the first push: ratio 1 again shows the server had
    # exactly the updated weights (about 0.93 without the push).
    assert moved > 1e-4
    assert history[0]["losses/ratio_mean"] == pytest.approx(1.0, abs=1e-3)
    assert history[1]["losses/ratio_mean"] == pytest.approx(1.0, abs=1e-3)
    assert versions == [1, 2] and all(s["push_s"] >= 0 for s in server.sync_log)
    assert all(t.tokens is not None and t.error is None for t in trajs)
