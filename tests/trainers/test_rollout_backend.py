"""``rollout_backend`` / ``rollout_backend_args`` on GRPO-family configs: the trainer launches the
server backend the config names, brings it to its own weights before the first rollout (a fresh
server, a resumed run), pushes again before each later rollout batch, and closes it at the end.

The fast tests put ``plyground-server`` in the registry as a factory that attaches to plyground's
server app running in a thread (no subprocess), over a tiny model with *other* weights than the
trainer's (seed 1 vs 0): a rollout sampled before the first push would show a PPO ratio far from 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from plyground.errors import UnknownNameError
from plyground.inference import base
from plyground.inference.models import tiny_model
from plyground.trainers import TRAINERS, GRPOConfig, GRPOTrainer, PPOConfig, PPOTrainer
from plyground.trainers.grpo import merged_lora_state_dict, rollout_backend_spec

GUESS_SMALL = {"n": 8}
# The tiny random model scores 0 on every episode, so GRPO's advantages are all 0; the entropy bonus
# gives every step a gradient, so the weights do change and a stale server would show in the ratio.
SMALL = dict(env_id="GuessNumber-v0", env_kwargs=GUESS_SMALL, tasks_per_step=2, group_size=2, max_tokens=8,
             max_turns=2, micro_batch_size=4, lr=1e-3, beta=0.0, entropy_coef=0.1, device="cpu")  # fmt: skip


@dataclasses.dataclass
class InProcessServer:
    """The served model and every backend the registry factory made (with the kwargs it got)."""

    served: Any
    made: list[tuple[Any, dict[str, Any]]]


@contextlib.contextmanager
def in_process_plyground_server(monkeypatch: pytest.MonkeyPatch, seed: int = 1) -> Iterator[InProcessServer]:
    """``make_backend("plyground-server", ...)`` attaches to a server app in a thread instead of
    launching ``python -m plyground.inference.server``; everything else is the real path."""
    from live_servers import serve_in_thread

    from plyground.inference.hf import HFBackend
    from plyground.inference.router import ManagedServer, Replica, Router
    from plyground.inference.server import PlygroundServerBackend, create_app

    model, tok = tiny_model(seed=seed)
    served = HFBackend(model=model, tokenizer=tok)
    made: list[tuple[Any, dict[str, Any]]] = []
    with serve_in_thread(create_app(served, model_name="tiny")) as url:
        port = int(url.removesuffix("/v1").rsplit(":", 1)[1])

        def factory(model: str, **kwargs: Any) -> PlygroundServerBackend:
            backend = PlygroundServerBackend(
                model, start=False, tokenizer=kwargs.get("tokenizer"), request_timeout_s=60, max_attempts=1
            )
            server = ManagedServer([], port=port, name="test-replica")
            backend.replicas = [Replica(0, server, backend._make_client(server))]
            backend.router = Router(backend.replicas, request_timeout_s=60, max_attempts=1)
            made.append((backend, {"model": model, **kwargs}))
            return backend

        monkeypatch.setitem(base._BACKENDS, "plyground-server", factory)
        yield InProcessServer(served, made)
    served.close()


# -- config ---------------------------------------------------------------------------------------------
GRPO_FAMILY = sorted(name for name, (cfg, _) in TRAINERS.items() if issubclass(cfg, GRPOConfig))


def test_the_grpo_family_has_the_fields() -> None:
    assert {"grpo", "ppo", "guide", "scaf-grpo", "mrt"} <= set(GRPO_FAMILY)
    for name in GRPO_FAMILY:
        fields = {f.name: f for f in dataclasses.fields(TRAINERS[name][0])}
        assert fields["rollout_backend"].default == "hf"
        assert fields["rollout_backend_args"].metadata["help"]


@pytest.mark.parametrize("algo", ["grpo", "ppo", "guide", "scaf-grpo", "mrt"])
def test_an_unknown_rollout_backend_is_refused_with_the_registered_names(algo: str) -> None:
    config_cls = TRAINERS[algo][0]
    with pytest.raises(UnknownNameError, match=r"rollout backend 'vlm'.*Did you mean 'vllm'.*plyground-server"):
        config_cls(rollout_backend="vlm")


def test_rollout_backend_settings_that_cannot_train_are_refused() -> None:
    with pytest.raises(ValueError, match=r"openai cannot train.*no new weights"):
        GRPOConfig(rollout_backend="openai", rollout_backend_args={"base_url": "http://127.0.0.1:8000/v1"})
    with pytest.raises(ValueError, match=r"hf samples from the trained model itself.*max_batch_size.*device"):
        GRPOConfig(rollout_backend_args={"device": "cuda"})
    with pytest.raises(ValueError, match="rollout_backend_args must be a mapping"):
        GRPOConfig(rollout_backend="vllm", rollout_backend_args=["num_replicas", 2])  # type: ignore[arg-type]
    GRPOConfig(rollout_backend_args={"max_batch_size": 4})  # hf: only how many sequences decode together


def test_hf_rollout_backend_args_reach_the_shared_backend(tmp_path: Path) -> None:
    model, tok = tiny_model()
    trainer = GRPOTrainer(GRPOConfig(out_dir=str(tmp_path), rollout_backend_args={"max_batch_size": 3}, **SMALL), model, tok)
    assert trainer.backend.model is trainer.base_model and trainer.backend.max_batch_size == 3


def test_ray_spec_comes_from_the_config() -> None:
    assert rollout_backend_spec(GRPOConfig(model="tiny")) == {"name": "hf", "model": "tiny"}
    config = GRPOConfig(model="tiny", rollout_backend="plyground-server", rollout_backend_args={"num_replicas": 2})
    assert rollout_backend_spec(config) == {"name": "plyground-server", "model": "tiny", "num_replicas": 2}
    config = GRPOConfig(model="/m", rollout_backend="vllm", rollout_backend_args={"model": "Qwen/Qwen2.5-0.5B"})
    assert rollout_backend_spec(config) == {"name": "vllm", "model": "Qwen/Qwen2.5-0.5B"}
    with pytest.raises(ValueError, match="a name only plyground knows"):
        rollout_backend_spec(GRPOConfig(model="tiny", rollout_backend="vllm"))
    # Workers attached to the same running servers would each push the same weights to them.
    attached = GRPOConfig(model="m", rollout_backend="vllm", rollout_backend_args={"base_urls": ["http://h:8000"]})
    with pytest.raises(ValueError, match="Run without --ray"):
        rollout_backend_spec(attached)


# -- training against a server the trainer launched ------------------------------------------------------
def test_grpo_launches_the_configured_server_pushes_its_weights_first_and_closes_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with in_process_plyground_server(monkeypatch) as srv:
        config = GRPOConfig(
            out_dir=str(tmp_path), total_steps=2, rollout_backend="plyground-server",
            rollout_backend_args={"startup_timeout_s": 60}, **SMALL,
        )  # fmt: skip
        trainer = GRPOTrainer(config)
        assert srv.made == []  # nothing launched until the first rollout
        after_step1: dict[str, torch.Tensor] = {}
        trainer.on_update.append(
            lambda t: after_step1.update({k: v.clone() for k, v in t.base_model.state_dict().items()}) if t.step == 1 else None
        )
        history = trainer.train()
        (backend, kwargs), = srv.made
        served_state = {k: v.clone() for k, v in srv.served.model.state_dict().items()}
    assert kwargs["model"] == "tiny" and kwargs["startup_timeout_s"] == 60
    assert kwargs["tokenizer"] is trainer.tokenizer  # token ids come back in the trainer's vocabulary
    # Pushed before each rollout: version 0 (the trainer's initial weights, not the server's seed-1
    # ones) before step 1, version 1 before step 2. The run is over, so nothing after step 2.
    assert [s["version"] for s in backend.sync_log] == [0, 1]
    assert [h["rollout/policy_version"] for h in history] == [0.0, 1.0]
    requests = [h["rollout/server_requests"] for h in history]
    assert 0 < requests[0] < requests[1]  # every episode of both steps was sampled by the server
    # Sampler and trainer agree: the server had exactly the trainer's weights at both rollouts.
    assert history[0]["losses/ratio_mean"] == pytest.approx(1.0, abs=1e-3)
    assert history[1]["losses/ratio_mean"] == pytest.approx(1.0, abs=1e-3)
    # ... and the server now holds exactly the weights the trainer had after step 1.
    assert served_state.keys() == after_step1.keys()
    assert all(torch.equal(served_state[k], v) for k, v in after_step1.items())
    assert backend.router is None and trainer._backend is None  # closed at the end of the run


def test_a_resumed_run_pushes_the_checkpoint_before_its_first_rollout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with in_process_plyground_server(monkeypatch) as srv:
        config = GRPOConfig(out_dir=str(tmp_path), total_steps=2, rollout_backend="plyground-server", **SMALL)
        first = GRPOTrainer(config)
        first.train(max_steps=1)
        (backend, _), = srv.made
        assert backend.router is not None  # stopped early: kept for the next call ...
        first.close()
        assert backend.router is None  # ... until closed
        with GRPOTrainer(config) as second:
            assert second.resume() and second.step == 1
            history = second.train()
        resumed, _ = srv.made[1]
    assert [s["version"] for s in resumed.sync_log] == [1]
    assert history[0]["step"] == 2 and history[0]["rollout/policy_version"] == 1.0
    assert history[0]["losses/ratio_mean"] == pytest.approx(1.0, abs=1e-3)


def test_ppo_rolls_out_from_the_configured_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with in_process_plyground_server(monkeypatch) as srv:
        config = PPOConfig(
            out_dir=str(tmp_path), total_steps=3, num_iterations=2, rollout_backend="plyground-server",
            **{**SMALL, "group_size": 1},
        )  # fmt: skip
        history = PPOTrainer(config).train()
        (backend, _), = srv.made
    # Two rollout batches (steps 1 and 3; step 2 reuses the first), each after a push of the
    # current weights: no push is wasted on step 2, which samples nothing.
    assert [s["version"] for s in backend.sync_log] == [0, 2]
    assert [h.get("rollout/policy_version") for h in history] == [0.0, None, 2.0]
    assert history[0]["losses/clipfrac"] == pytest.approx(0.0)  # first iteration: ratio 1 everywhere


def test_a_passed_backend_is_pushed_after_every_update_and_left_open(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with in_process_plyground_server(monkeypatch, seed=0) as srv:
        backend = base.make_backend("plyground-server", model="tiny")
        srv.made.clear()
        config = GRPOConfig(out_dir=str(tmp_path), total_steps=2, **SMALL)
        trainer = GRPOTrainer(config, *tiny_model(), rollout_backend=backend)
        history = trainer.train()
        assert backend.router is not None  # the caller's to close
        backend.close()
    assert srv.made == [] and [s["version"] for s in backend.sync_log] == [1, 2]
    assert history[1]["losses/ratio_mean"] == pytest.approx(1.0, abs=1e-3)


def test_lora_training_pushes_the_merged_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    with in_process_plyground_server(monkeypatch) as srv:
        config = GRPOConfig(out_dir=str(tmp_path), total_steps=2, rollout_backend="plyground-server", lora=True,
                            **{**SMALL, "lr": 1e-2})  # fmt: skip
        history = GRPOTrainer(config).train()
        (backend, _), = srv.made
    # The server's plain model takes the merged weights (adapter names would be refused) and then
    # samples what the adapted policy computes.
    assert [s["version"] for s in backend.sync_log] == [0, 1]
    assert all(h["losses/ratio_mean"] == pytest.approx(1.0, abs=1e-3) for h in history)


# -- vLLM / SGLang: a folder for plyground-only model names; a backend that cannot take weights ----------
class _RecordingBackend:
    name = "recording"

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.pushes: list[tuple[Any, int]] = []
        self.closed = False

    def update_weights(self, weights: Any, version: int) -> None:
        self.pushes.append((weights, version))

    def close(self) -> None:
        self.closed = True


def test_vllm_gets_a_folder_of_the_trainers_weights_for_a_plyground_model_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import plyground.trainers.grpo as grpo

    made: list[_RecordingBackend] = []

    def fake_make_backend(name: str, **kwargs: Any) -> _RecordingBackend:
        assert name == "vllm"
        made.append(_RecordingBackend(**kwargs))
        return made[-1]

    monkeypatch.setattr(grpo, "make_backend", fake_make_backend)
    config = GRPOConfig(out_dir=str(tmp_path), total_steps=1, rollout_backend="vllm",
                        rollout_backend_args={"gpu_memory_utilization": 0.3}, **SMALL)  # fmt: skip
    trainer = GRPOTrainer(config)
    backend = trainer.backend
    # The server starts from a folder of the current weights: no push of the same weights on top.
    assert backend is made[0] and backend.pushes == []
    folder = Path(backend.kwargs["model"])
    assert (folder / "config.json").exists() and (folder / "tokenizer_config.json").exists()
    assert backend.kwargs["gpu_memory_utilization"] == 0.3 and backend.kwargs["tokenizer"] is trainer.tokenizer
    trainer.close()
    assert backend.closed and not folder.exists()


def test_a_configured_backend_without_update_weights_is_closed_and_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    closed: list[bool] = []

    class NoWeights:
        name = "no-weights"

        def __init__(self, **kwargs: Any) -> None:
            pass

        def close(self) -> None:
            closed.append(True)

    monkeypatch.setitem(base._BACKENDS, "no-weights", NoWeights)
    trainer = GRPOTrainer(GRPOConfig(out_dir=str(tmp_path), rollout_backend="no-weights", **SMALL))
    with pytest.raises(TypeError, match="no update_weights"):
        trainer.backend  # noqa: B018 - the launch happens on first use
    assert closed == [True]


# -- LoRA: the merged weights are what the adapted model computes ----------------------------------------
def test_merged_lora_weights_reproduce_the_adapted_model() -> None:
    pytest.importorskip("peft")
    from plyground.trainers.core.loop import TrainConfig, apply_lora

    model, _ = tiny_model()
    peft_model = apply_lora(model, TrainConfig(lora=True))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # B starts at zero: make the adapters do something
    merged = merged_lora_state_dict(peft_model)
    assert not any("lora_" in k or "base_layer" in k for k in merged)
    plain, _ = tiny_model(seed=5)
    missing, unexpected = plain.load_state_dict(merged, strict=False)
    assert unexpected == [] and missing == ["lm_head.weight"]  # tied to the embeddings, saved once
    ids = torch.tensor([[1, 5, 9, 200, 31]])
    with torch.no_grad():
        want = peft_model(input_ids=ids).logits
        got = plain(input_ids=ids).logits
        base_logits = tiny_model()[0](input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(base_logits, want, atol=1e-2)  # the adapters mattered


# -- from the command line --------------------------------------------------------------------------------
CLI_SMALL = ["--env", "GuessNumber-v0", "--model", "tiny", "--json", "--set", "env_kwargs={n: 8}",
             "--set", "tasks_per_step=2", "--set", "group_size=2", "--set", "max_tokens=8", "--set", "max_turns=2",
             "--set", "micro_batch_size=4", "--set", "lr=1e-3", "--set", "beta=0.0", "--set", "entropy_coef=0.1",
             "--set", "device=cpu"]  # fmt: skip


def _metrics(out_dir: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def test_cli_train_rolls_out_from_the_configured_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from plyground.cli import main

    with in_process_plyground_server(monkeypatch) as srv:
        argv = ["train", "grpo", *CLI_SMALL, "--out", str(tmp_path), "--set", "total_steps=2",
                "--set", "rollout_backend=plyground-server", "--set", "rollout_backend_args={max_batch_size: 8}"]  # fmt: skip
        assert main(argv) == 0
        (backend, kwargs), = srv.made
    assert kwargs["max_batch_size"] == 8 and [s["version"] for s in backend.sync_log] == [0, 1]
    records = _metrics(tmp_path)
    assert [r["rollout/policy_version"] for r in records] == [0.0, 1.0]
    assert all(r["rollout/server_requests"] > 0 for r in records)
    assert all(r["losses/ratio_mean"] == pytest.approx(1.0, abs=1e-3) for r in records)
    assert backend.router is None  # cmd_train closed what the trainer launched


def test_cli_train_refuses_an_unknown_rollout_backend(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from plyground.cli import EXIT_USAGE, main

    argv = ["train", "mrt", "--model", "tiny", "--out", str(tmp_path), "--set", "rollout_backend=sglng"]
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Unknown rollout backend 'sglng'" in err and "Did you mean 'sglang'" in err and "plyground-server" in err


def _child_pids() -> set[int]:
    import os

    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):
            pids |= {int(p) for p in (task / "children").read_text().split()}
    return pids


@pytest.mark.slow  # two real server launches (a subprocess each, which imports torch): ~40 s on 2 CPUs
def test_cli_train_and_resume_against_a_launched_plyground_server(tmp_path: Path) -> None:
    """``plyground train grpo --set rollout_backend=plyground-server``: the trainer launches
    ``python -m plyground.inference.server`` and closes it at the end. The resumed run's fresh
    server starts on the tiny model's initial weights; a PPO ratio of 1 on its first step shows the
    checkpoint's weights were pushed before that rollout."""
    import sys

    from plyground.cli import main

    if not Path("/proc/self/task").exists():
        pytest.skip("counts child processes through /proc")
    before = _child_pids()
    common = ["train", "grpo", *CLI_SMALL, "--out", str(tmp_path), "--set", "rollout_backend=plyground-server",
              "--set", "rollout_backend_args={startup_timeout_s: 180, request_timeout_s: 120}"]  # fmt: skip
    assert main([*common, "--set", "total_steps=1"]) == 0
    assert _child_pids() <= before, "the server outlived the run"
    assert main([*common, "--set", "total_steps=2", "--resume"]) == 0
    assert _child_pids() <= before, "the server outlived the run"
    records = _metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2]
    assert [r["rollout/policy_version"] for r in records] == [0.0, 1.0]
    assert all(r["rollout/server_requests"] > 0 for r in records)
    assert all(r["losses/ratio_mean"] == pytest.approx(1.0, abs=1e-3) for r in records), records
    assert sys.modules.get("vllm") is None  # nothing but plyground's own server was involved


@pytest.mark.slow  # Ray, a worker that imports torch, and a server subprocess launched by the worker
def test_cli_train_on_ray_workers_that_launch_plyground_servers(tmp_path: Path) -> None:
    """``--ray`` builds the workers' backend from the config: each worker launches a server; the
    trainer's weights reach it as a state dict (saved, then loaded by the server) before each batch."""
    import os

    ray = pytest.importorskip("ray")
    from plyground.cli import main
    from plyground.scale import init_ray

    os.environ["RAY_AUTH_MODE"] = "disabled"
    root = str(Path(__file__).resolve().parents[2])
    init_ray(num_cpus=2, runtime_env={"env_vars": {"PYTHONPATH": root, "HF_HUB_OFFLINE": "1"}})
    try:
        argv = ["train", "grpo", *CLI_SMALL, "--out", str(tmp_path), "--set", "total_steps=2",
                "--set", "rollout_backend=plyground-server",
                "--set", "rollout_backend_args={startup_timeout_s: 180, request_timeout_s: 120}",
                "--ray", "local", "--ray-workers", "1"]  # fmt: skip
        assert main(argv) == 0
    finally:
        ray.shutdown()
    records = _metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2]
    assert "rollout/policy_version" not in records[0]  # the trainer launched no server of its own
    assert all(r["losses/ratio_mean"] == pytest.approx(1.0, abs=1e-3) for r in records), records


def test_a_backend_set_on_a_server_configured_trainer_is_used_as_given(tmp_path: Path) -> None:
    """Replacing ``trainer.backend`` (tests, scripted policies) takes the new backend as holding the
    current weights: one without update_weights is not pushed to, one with it gets later pushes."""
    from plyground.inference.scripted import ScriptedBackend

    config = GRPOConfig(out_dir=str(tmp_path), total_steps=1, rollout_backend="plyground-server", **SMALL)
    trainer = GRPOTrainer(config)
    scripted = ScriptedBackend(lambda chat: "<action>1</action>")
    trainer.backend = scripted
    assert trainer.backend is scripted  # no push attempted (it has no update_weights)
    recording = _RecordingBackend()
    trainer.backend = recording
    assert trainer.backend is recording and recording.pushes == []
    trainer.step = 1  # as after an update
    assert trainer.backend is recording and recording.pushes == [(trainer.base_model, 1)]
    trainer.close()
