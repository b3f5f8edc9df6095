"""Decode throughput of the ``hf`` backend against transformers' own ``model.generate``, same process.

    .venv/bin/python benchmarks/hf_decode.py [--model tiny|default|FOLDER] [--batch 1 8] [--max-tokens 64]
        [--repeats 3] [--before REV] [--device cpu|cuda] [--dtype D] [--sync-every N ...]
        [--out benchmarks/results/hf_decode.json]

For each batch size and mode (greedy; sampled at temperature 1, seeded), it times on the same
left-padded chat prompts:

- ``generate``: ``model.generate`` (KV cache, ``do_sample`` as the mode says, no top-k/top-p),
- ``hf``: ``HFBackend.generate_ids`` of this checkout (host looks every ``sync_every`` tokens),
- ``hf@REV``: the same class as it was at git revision ``REV`` (``--before``; the loop that synced
  with the host every token and seeded one generator per call), loaded from ``git show``,
- ``hf/sync=N``: this checkout's backend reading tokens back to the host every N tokens
  (``--sync-every``; on a GPU each read-back stalls the launch queue, which is what it trades off).

Useful tokens/s counts each sequence's tokens up to and including its EOS (``generate`` pads
finished rows until the batch ends; padding is not counted), per second of process CPU time (one
thread, ``torch.set_num_threads(1)``: the work done, which a loaded machine changes much less) and
per second of wall time. Runs alternate between the tools and the median of ``--repeats`` is
reported, with the ratio to ``generate``: timings depend on the machine, the ratios are what to
compare. On a GPU (``--device cuda``) the CPU-time column is meaningless; read the wall column.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from plyground.inference.hf import HFBackend
from plyground.types import Message, SamplingParams

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "What is two plus two?",
    "Name three colours.",
    "Write one sentence about the sea.",
    "Hi",
    "List the planets of the solar system in order from the sun, please.",
    "What is the capital of France, and why is it famous?",
    "Count from one to five.",
    "Explain in one line what a prime number is.",
]


def load_backend_class_at(rev: str) -> type:
    """``HFBackend`` as it was at ``rev``, imported from ``git show`` into a private module."""
    source = subprocess.run(
        ["git", "show", f"{rev}:plyground/inference/hf.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="hf-before-")) / "hf_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("hf_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["hf_before"] = module
    spec.loader.exec_module(module)
    return module.HFBackend  # type: ignore[no-any-return]


def useful(rows: list[list[int]], eos: set[int]) -> int:
    total = 0
    for row in rows:
        ends = [k for k, t in enumerate(row) if t in eos]
        total += ends[0] + 1 if ends else len(row)
    return total


def run_generate(backend: HFBackend, prompts: list[list[int]], max_tokens: int, sampled: bool) -> int:
    width = max(len(p) for p in prompts)
    pad = backend.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=backend.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=backend.device)
    extra: dict[str, Any] = (
        {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0} if sampled else {"do_sample": False}
    )
    if sampled:
        torch.manual_seed(0)
    with torch.no_grad():
        out = backend.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_tokens,
            eos_token_id=sorted(backend.eos_token_ids),
            pad_token_id=pad,
            **extra,
        )
    return useful(out[:, width:].tolist(), backend.eos_token_ids)


def run_backend(backend: Any, prompts: list[list[int]], max_tokens: int, sampled: bool) -> int:
    params = SamplingParams(
        max_tokens=max_tokens, temperature=1.0 if sampled else 0.0, seed=0 if sampled else None
    )
    results = backend.generate_ids(prompts, params)
    return sum(len(c.token_ids) for r in results for c in r)


def rate(counts: list[int], seconds: list[float]) -> float:
    """Median tokens per second over the repeats."""
    return statistics.median(c / t for c, t in zip(counts, seconds, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", default=None, help="git revision of hf.py to compare with")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="e.g. bfloat16 (default: the model's own)")
    parser.add_argument("--sync-every", type=int, nargs="*", default=[],
                        help="also time the backend with these host read-back intervals")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)

    backend = HFBackend(args.model, device=args.device, dtype=args.dtype, max_batch_size=max(args.batch))
    tools: dict[str, Any] = {"hf": backend}
    for every in args.sync_every:
        tools[f"hf/sync={every}"] = HFBackend(
            backend.model, backend.tokenizer, max_batch_size=max(args.batch), sync_every=every
        )
    if args.before:
        before_cls = load_backend_class_at(args.before)
        tools[f"hf@{args.before}"] = before_cls(
            backend.model, backend.tokenizer, max_batch_size=max(args.batch)
        )
    prompts_all = [backend.render([Message("user", q)]) for q in QUESTIONS]

    # Warm-up: first calls allocate caches and load kernels.
    run_generate(backend, prompts_all[:2], 4, False)
    for tool in tools.values():
        run_backend(tool, prompts_all[:2], 4, False)

    results: list[dict[str, Any]] = []
    for batch in args.batch:
        prompts = (prompts_all * ((batch + len(prompts_all) - 1) // len(prompts_all)))[:batch]
        for sampled in (False, True):
            names = ["generate", *tools]
            wall: dict[str, list[float]] = {name: [] for name in names}
            cpu: dict[str, list[float]] = {name: [] for name in names}
            counts: dict[str, list[int]] = {name: [] for name in names}
            for _ in range(args.repeats):
                for name in names:
                    start, start_cpu = time.perf_counter(), time.process_time()
                    if name == "generate":
                        n = run_generate(backend, prompts, args.max_tokens, sampled)
                    else:
                        n = run_backend(tools[name], prompts, args.max_tokens, sampled)
                    wall[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - start_cpu)
                    counts[name].append(n)
            for name in names:
                # CPU time (one thread) is what the work costs; wall time also counts waiting for
                # a core, which on a shared machine is noise.
                per_cpu, per_wall = rate(counts[name], cpu[name]), rate(counts[name], wall[name])
                row = {
                    "model": args.model,
                    "device": str(backend.device),
                    "batch": batch,
                    "mode": "sampled" if sampled else "greedy",
                    "tool": name,
                    "tokens_per_cpu_s": round(per_cpu, 1),
                    "ratio_to_generate_cpu": round(per_cpu / rate(counts["generate"], cpu["generate"]), 3),
                    "tokens_per_wall_s": round(per_wall, 1),
                    "ratio_to_generate_wall": round(per_wall / rate(counts["generate"], wall["generate"]), 3),
                    "tokens": counts[name][0],
                }
                results.append(row)
                print(
                    f"{args.model:8s} batch {batch:2d} {row['mode']:8s} {name:12s} "
                    f"cpu {per_cpu:8.1f} tok/s {row['ratio_to_generate_cpu']:5.2f}x   "
                    f"wall {per_wall:8.1f} tok/s {row['ratio_to_generate_wall']:5.2f}x   "
                    f"({counts[name][0]} tokens)",
                    flush=True,
                )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
