"""GPU check: rollout throughput through plyground against the bare OpenAI client on the same
server and requests, one GRPO step with rollouts from that server and a weight push, and the sync
time. Run by ``benchmarks/gpu_check.sh`` (one GPU, under 8 minutes).

The server is vLLM when it is installed (``--server auto``/``vllm``), else plyground's own
OpenAI-compatible server on the GPU (``plyground-server``): both sit behind the same router and
weight-sync code (:class:`plyground.inference.vllm.ServerBackend`). Requests are the first-turn
chats of ``--env`` episodes; plyground plays those episodes with the rollout collector (token
tracking, env steps, verification included); the bare client sends the collector's token-id requests
in the collector's waves (``run_bare``).
The overhead ratio is bare tokens/s over plyground tokens/s (1.0 = no overhead).

``--model`` is a model folder; ``--random-init`` builds random weights from the folder's
config.json instead of loading them (for a machine the real weights cannot reach: throughput
depends on the architecture, not the values). Results go to ``OUT/gpu_check.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import plyground
from plyground.rollout.agent import build_chat
from plyground.rollout.collector import EpisodeSpec, RolloutConfig, collect_sync
from plyground.types import SamplingParams


def prepare_model(source: str, random_init: bool, dtype: torch.dtype, workdir: Path) -> str:
    """A model folder the server can load: ``source`` itself, or random weights saved from its config."""
    if not random_init:
        return source
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(source)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    target = workdir / "model"
    model.save_pretrained(str(target))
    for item in Path(source).iterdir():
        if item.is_file() and item.name not in {"config.json"} and not item.name.endswith(".safetensors"):
            shutil.copy(item, target / item.name)
    return str(target)


def start_server(kind: str, model: str, dtype: str) -> Any:
    if kind == "auto":
        kind = "vllm" if importlib.util.find_spec("vllm") is not None else "plyground-server"
    if kind == "vllm":
        from plyground.inference.vllm import VLLMBackend

        return VLLMBackend(model, weight_sync="reload", dtype=dtype, gpu_memory_utilization=0.3,
                           max_model_len=4096, max_concurrency=256)  # fmt: skip
    from plyground.inference.server import PlygroundServerBackend

    return PlygroundServerBackend(model, device="cuda" if torch.cuda.is_available() else "cpu", dtype=dtype,
                                  max_batch_size=64, max_concurrency=256, startup_timeout_s=600)  # fmt: skip


def first_turn_chats(env_id: str, seeds: list[int]) -> list[Any]:
    env = plyground.make(env_id)
    chats = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        chats.append(build_chat(env.instructions, [], obs, []))
    env.close()
    return chats


def run_plyground(backend: Any, env_id: str, seeds: list[int], params: SamplingParams, concurrency: int) -> dict[str, float]:
    specs = [EpisodeSpec(seed=s, episode=i) for i, s in enumerate(seeds)]
    config = RolloutConfig(sampling=params, concurrency=concurrency, max_turns=1, track_tokens=True,
                           max_batch_size=concurrency)  # fmt: skip
    started = time.perf_counter()
    trajs = collect_sync(lambda: plyground.make(env_id), backend, specs, config)
    wall = time.perf_counter() - started
    tokens = sum(len(t.turns[0].completion.token_ids) for t in trajs if t.turns and t.turns[0].completion)
    errors = sum(t.error is not None for t in trajs)
    return {"wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall, "errors": errors}


def prompt_ids(tokenizer: Any, chats: list[Any]) -> list[list[int]]:
    """The token ids plyground's collector sends for these chats (its own renderer)."""
    from plyground.rollout.tokens import _encode, render_text

    return [_encode(tokenizer, render_text(tokenizer, chat, add_generation_prompt=True)) for chat in chats]


def run_bare(base_url: str, model: str, prompts: list[list[int]], params: SamplingParams, concurrency: int) -> dict[str, float]:
    """The same requests as the collector, from the bare OpenAI client: one ``/v1/completions``
    request per token-id prompt, sent in waves of ``concurrency`` that are awaited together (the
    collector's batching), so the two differ only in what plyground does around the requests."""
    import openai

    async def main() -> tuple[int, float]:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=600)

        async def one(ids: list[int]) -> int:
            r = await client.completions.create(
                model=model, prompt=ids, max_tokens=params.max_tokens, temperature=params.temperature,
            )  # fmt: skip
            return int(r.usage.completion_tokens) if r.usage else 0

        started = time.perf_counter()
        counts: list[int] = []
        for start in range(0, len(prompts), concurrency):
            counts += await asyncio.gather(*(one(ids) for ids in prompts[start : start + concurrency]))
        wall = time.perf_counter() - started
        await client.close()
        return sum(counts), wall

    tokens, wall = asyncio.run(main())
    return {"wall_s": wall, "tokens": tokens, "tokens_per_s": tokens / wall, "errors": 0}


def grpo_step(model_dir: str, server: Any, env_id: str, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    from plyground.inference.models import load_model
    from plyground.trainers import GRPOConfig, GRPOTrainer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tok = load_model(model_dir, device=device, dtype=torch.float32)
    config = GRPOConfig(
        out_dir=str(out_dir), env_id=env_id, tasks_per_step=args.grpo_tasks, group_size=args.grpo_group,
        max_tokens=args.grpo_max_tokens, total_steps=2, micro_batch_size=args.grpo_tasks * args.grpo_group,
        lr=1e-6, beta=0.0, device=device, concurrency=args.grpo_tasks * args.grpo_group, mixed_precision="auto",
    )  # fmt: skip
    trainer = GRPOTrainer(config, model, tok, rollout_backend=server)
    history = trainer.train()
    return {"history": history, "syncs": list(server.sync_log)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder (config.json, tokenizer, weights)")
    parser.add_argument("--random-init", action="store_true", help="random weights from the folder's config")
    parser.add_argument("--server", choices=["auto", "vllm", "plyground-server"], default="auto")
    parser.add_argument("--env", default="Arithmetic-v0")
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--grpo-tasks", type=int, default=4)
    parser.add_argument("--grpo-group", type=int, default=8)
    parser.add_argument("--grpo-max-tokens", type=int, default=48)
    parser.add_argument("--skip-grpo", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/gpu_check")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="plyground-gpu-check-"))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)"
    report: dict[str, Any] = {
        "gpu": gpu, "torch": torch.__version__, "python": platform.python_version(),
        "vllm": _version("vllm"), "sglang": _version("sglang"), "args": vars(args),
    }  # fmt: skip
    print(f"GPU: {gpu}; torch {torch.__version__}; vllm {report['vllm']}", flush=True)
    dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    started = time.perf_counter()
    model_dir = prepare_model(args.model, args.random_init, getattr(torch, dtype), work)
    report["model_prepare_s"] = time.perf_counter() - started
    started = time.perf_counter()
    server = start_server(args.server, model_dir, dtype)
    report["server"] = server.name
    report["server_start_s"] = time.perf_counter() - started
    print(f"server {server.name} up in {report['server_start_s']:.1f} s", flush=True)
    try:
        seeds = list(range(args.requests))
        prompts = prompt_ids(server.tokenizer, first_turn_chats(args.env, seeds))
        params = SamplingParams(max_tokens=args.max_tokens, temperature=1.0)
        base_url = f"{server.replicas[0].server.root_url}/v1"
        # Warm-ups: the server's first batches, and plyground's one-time costs (env construction,
        # the verifier's worker pool) stay out of the measured runs.
        run_bare(base_url, server.request_model, prompts[:16], params, args.concurrency)
        run_plyground(server, args.env, seeds[: min(16, len(seeds))], params, args.concurrency)
        runs: dict[str, list[dict[str, float]]] = {"bare": [], "plyground": []}
        for i in range(args.repeats):
            runs["bare"].append(run_bare(base_url, server.request_model, prompts, params, args.concurrency))
            runs["plyground"].append(run_plyground(server, args.env, seeds, params, args.concurrency))
            print(f"repeat {i}: bare {runs['bare'][-1]['tokens_per_s']:.0f} tok/s, "
                  f"plyground {runs['plyground'][-1]['tokens_per_s']:.0f} tok/s", flush=True)  # fmt: skip
        bare = statistics.median(r["tokens_per_s"] for r in runs["bare"])
        ply = statistics.median(r["tokens_per_s"] for r in runs["plyground"])
        report["rollout"] = {"runs": runs, "bare_tokens_per_s": bare, "plyground_tokens_per_s": ply,
                             "overhead_ratio": bare / ply}  # fmt: skip
        if not args.skip_grpo:
            grpo = grpo_step(model_dir, server, args.env, args, work / "grpo")
            syncs = grpo["syncs"]
            report["grpo"] = {
                "step_s": [h["charts/step_s"] for h in grpo["history"]],
                "rollout_s": [h["charts/rollout_s"] for h in grpo["history"]],
                "sync_save_s": [s["save_s"] for s in syncs],
                "sync_push_s": [s["push_s"] for s in syncs],
                "sequences_per_step": args.grpo_tasks * args.grpo_group,
                "max_tokens": args.grpo_max_tokens,
                "ratio_mean": [h.get("losses/ratio_mean") for h in grpo["history"]],
            }
            print(f"GRPO steps {report['grpo']['step_s']} s; syncs {report['grpo']['sync_save_s']} save, "
                  f"{report['grpo']['sync_push_s']} push", flush=True)  # fmt: skip
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "gpu_check.md").write_text(render(report))
    print(render(report))
    return 0


def render(report: dict[str, Any]) -> str:
    a = report["args"]
    lines = [
        f"# GPU check on {report['gpu']}",
        "",
        f"torch {report['torch']}, python {report['python']}, server `{report.get('server')}` "
        f"(vllm: {report['vllm'] or 'not installed'}), model `{Path(a['model']).name}`"
        + (" with random weights" if a["random_init"] else ""),
        "",
    ]
    roll = report.get("rollout")
    if roll:
        lines += [
            f"Rollouts: {a['requests']} first-turn {a['env']} chats, {a['max_tokens']} max new tokens, "
            f"temperature 1, concurrency {a['concurrency']}, median of {a['repeats']}.",
            "",
            "| client | tokens/s |",
            "|---|---:|",
            f"| bare OpenAI client | {roll['bare_tokens_per_s']:.0f} |",
            f"| plyground collector | {roll['plyground_tokens_per_s']:.0f} |",
            f"| overhead ratio (bare / plyground) | {roll['overhead_ratio']:.3f} |",
            "",
        ]
    grpo = report.get("grpo")
    if grpo:
        steps = ", ".join(f"{s:.2f}" for s in grpo["step_s"])
        rollouts = ", ".join(f"{s:.2f}" for s in grpo["rollout_s"])
        saves = ", ".join(f"{s:.2f}" for s in grpo["sync_save_s"])
        pushes = ", ".join(f"{s:.2f}" for s in grpo["sync_push_s"])
        lines += [
            f"GRPO: {grpo['sequences_per_step']} sequences per step, {grpo['max_tokens']} max new tokens, "
            "rollouts from the server, full weights pushed after each update.",
            "",
            "| | seconds |",
            "|---|---:|",
            f"| GRPO step (rollout + update), steps 1..n | {steps} |",
            f"| of which rollout | {rollouts} |",
            f"| weight sync: save | {saves} |",
            f"| weight sync: server load | {pushes} |",
            "",
        ]
    lines.append("Reproduce: `bash benchmarks/gpu_check.sh` (see the script for the model options).")
    return "\n".join(lines) + "\n"


def _version(name: str) -> str | None:
    if importlib.util.find_spec(name) is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
