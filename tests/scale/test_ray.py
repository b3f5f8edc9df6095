"""Ray workers in local mode: eval through rollout workers, env actors, and a short GRPO run.

One module-scoped Ray session (init takes ~5 s); skipped where Ray is not installed. The GRPO run
is marked ``slow`` (worker processes import torch): ``pytest -m slow tests/scale``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import plyground  # noqa: E402
from plyground.envs.guess_number import bisection_chat_policy  # noqa: E402
from plyground.rollout import RolloutConfig, collect_sync, episode_specs  # noqa: E402
from plyground.scale import EnvActor, RayGRPOTrainer, RolloutPool, backend_from_spec, init_ray  # noqa: E402

SCRIPTED = {"name": "scripted", "policy": "plyground.envs.guess_number:bisection_chat_policy"}
GUESS_SMALL = {"n": 8}


@pytest.fixture(scope="module")
def ray_session():  # type: ignore[no-untyped-def]
    os.environ["RAY_AUTH_MODE"] = "disabled"
    root = str(Path(__file__).resolve().parents[2])
    init_ray(num_cpus=2, runtime_env={"env_vars": {"PYTHONPATH": root, "HF_HUB_OFFLINE": "1"}})
    yield ray
    ray.shutdown()


def test_backend_spec_in_process() -> None:
    backend = backend_from_spec(SCRIPTED)
    assert backend.policy is bisection_chat_policy
    with pytest.raises(Exception, match="backend"):
        backend_from_spec({"name": "no-such-backend"})


def test_ray_eval_matches_in_process(ray_session) -> None:  # type: ignore[no-untyped-def]
    pool = RolloutPool("GuessNumber-v0", SCRIPTED, num_workers=2, worker_cpus=0.5)
    try:
        config = RolloutConfig(concurrency=2)
        trajs = pool.collect(episode_specs(6, samples=2), config)
        assert [(t.metadata["episode"], t.metadata["sample"]) for t in trajs] == [(e, s) for e in range(6) for s in range(2)]
        assert len({i["pid"] for i in pool.info()}) == 2  # really two worker processes
        local = collect_sync(lambda: plyground.make("GuessNumber-v0"), backend_from_spec(SCRIPTED), episode_specs(6, samples=2), config)
        local_by = {(t.metadata["episode"], t.metadata["sample"]): t for t in local}
        for t in trajs:
            other = local_by[(t.metadata["episode"], t.metadata["sample"])]
            assert [x.action for x in t.turns] == [x.action for x in other.turns]
        summary = pool.evaluate(4, samples=1)
        assert summary.episodes == 4 and summary.success_rate == 1.0  # bisection always wins
    finally:
        pool.close()


def test_env_actor_remote_reset_step_snapshot_restore(ray_session) -> None:  # type: ignore[no-untyped-def]
    actor = EnvActor(num_cpus=0.1).remote("GuessNumber-v0", GUESS_SMALL)
    obs, _ = ray.get(actor.reset.remote(seed=3))
    assert obs and ray.get(actor.instructions.remote())
    snap = ray.get(actor.snapshot.remote())
    first = ray.get(actor.step.remote("4"))
    ray.get(actor.restore.remote(snap))
    again = ray.get(actor.step.remote("4"))
    assert first[:3] == again[:3]  # restoring rewinds the env
    ray.get(actor.close.remote())
    ray.kill(actor)


@pytest.mark.slow  # ~40-80 s: each worker process imports torch and transformers; run with -m slow
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_short_grpo_run_with_ray_rollouts(ray_session, tmp_path: Path, lora: bool) -> None:  # type: ignore[no-untyped-def]
    from plyground.inference.models import tiny_model
    from plyground.trainers import GRPOConfig

    model, tok = tiny_model()
    pool = RolloutPool("GuessNumber-v0", {"name": "hf", "model": "tiny"}, num_workers=1, env_kwargs=GUESS_SMALL, worker_cpus=0.5)
    try:
        config = GRPOConfig(
            out_dir=str(tmp_path), env_id="GuessNumber-v0", env_kwargs=GUESS_SMALL, tasks_per_step=2, group_size=2,
            max_tokens=8, max_turns=2, total_steps=2, micro_batch_size=4, lr=1e-2 if lora else 1e-3, beta=0.0,
            entropy_coef=0.05, lora=lora,  # the entropy bonus moves the tiny model, which scores 0 everywhere
        )  # fmt: skip
        trainer = RayGRPOTrainer(config, model, tok, pool=pool)
        history = trainer.train()
        assert [h["step"] for h in history] == [1, 2]
        # The workers sampled with the trainer's weights (pushed before each rollout batch, merged
        # for LoRA): the trainer's log-probabilities of the sampled tokens match the workers', before
        # the first update and after it.
        assert history[0]["losses/ratio_mean"] == pytest.approx(1.0, abs=1e-3)
        assert history[1]["losses/ratio_mean"] == pytest.approx(1.0, abs=1e-3)
        assert pool.info()[0]["version"] == 1  # weights after the first update reached the worker
        assert all(t.tokens is not None for t in trainer.last_trajectories)
    finally:
        pool.close()


def test_cli_eval_on_ray_workers_writes_the_usual_files(ray_session, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`plyground eval --ray ADDRESS`: the same folder (trajectories, summary, resume) as in-process."""
    import json

    from plyground.cli import main

    policy = "plyground.envs.guess_number:bisection_chat_policy"
    out = tmp_path / "ray"
    argv = ["eval", "GuessNumber-v0", "--backend", "scripted", "--model", policy, "--episodes", "6",
            "--concurrency", "2", "--no-progress", "--json", "--ray", "local", "--ray-workers", "2"]  # fmt: skip
    assert main([*argv, "--out", str(out)]) == 0
    assert main([*argv[:-4], "--out", str(tmp_path / "local")]) == 0  # same run in-process
    ray_lines = (out / "trajectories.jsonl").read_text().splitlines()
    local_lines = (tmp_path / "local" / "trajectories.jsonl").read_text().splitlines()
    assert len(ray_lines) == len(local_lines) == 6
    actions = lambda lines: sorted(  # noqa: E731
        (t["metadata"]["episode"], [turn["action"] for turn in t["turns"]]) for t in map(json.loads, lines)
    )
    assert actions(ray_lines) == actions(local_lines)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 6 and summary["success_rate"] == 1.0 and summary["backend"] == "ray[scripted]"
    # Resuming a finished folder plays nothing more.
    assert main([*argv, "--out", str(out)]) == 0
    assert len((out / "trajectories.jsonl").read_text().splitlines()) == 6


def test_cli_train_ray_refuses_algorithms_without_a_ray_path(tmp_path: Path) -> None:
    from plyground.cli import main

    assert main(["train", "sft", "--model", "tiny", "--out", str(tmp_path), "--ray", "local"]) == 2


@pytest.mark.slow  # worker processes import torch and load the model
def test_cli_train_grpo_with_ray_rollouts(ray_session, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json

    from plyground.cli import main

    argv = ["train", "grpo", "--env", "GuessNumber-v0", "--model", "tiny", "--out", str(tmp_path), "--json",
            "--set", "env_kwargs={n: 8}", "--set", "tasks_per_step=2", "--set", "group_size=2", "--set", "max_tokens=8",
            "--set", "max_turns=2", "--set", "total_steps=2", "--set", "micro_batch_size=4", "--set", "beta=0.0",
            "--ray", "local", "--ray-workers", "1"]  # fmt: skip
    assert main(argv) == 0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["losses/ratio_mean"] == pytest.approx(1.0, abs=1e-3)  # workers had the trainer's weights
