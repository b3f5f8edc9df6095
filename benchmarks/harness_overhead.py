"""Harness overhead and collector throughput, side by side in one run.

    .venv/bin/python benchmarks/harness_overhead.py [--episodes 200] [--tiny-episodes 16]

1. Overhead per env step: GuessNumber played by the bisection policy
   a. directly through ``env.step`` (the Gymnasium loop: the floor),
   b. through the rollout collector with a scripted text backend,
   c. the same with token bookkeeping (chat template + ledger + final check) on.
   Reported in microseconds per step and as a ratio to (a).
2. Collector throughput on the tiny random model: concurrency 1 vs 8 (episodes/s, generated
   tokens/s, and the speed-up), GuessNumber, 16 new tokens per turn.

Timings depend on the machine; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rich.console import Console
from rich.table import Table

import plyground
from plyground.envs.guess_number import BisectionPolicy, bisection_chat_policy
from plyground.inference.scripted import scripted_backend
from plyground.rollout import RolloutConfig, collect_sync, episode_specs
from plyground.types import SamplingParams


def direct_loop(episodes: int) -> tuple[float, int]:
    env = plyground.make("GuessNumber-v0")
    steps = 0
    start = time.perf_counter()
    policy = BisectionPolicy()
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        policy.reset()
        while True:
            obs, _, term, trunc, _ = env.step(policy.act(obs))
            steps += 1
            if term or trunc:
                break
    return time.perf_counter() - start, steps


def collector_loop(episodes: int, tokenizer: object | None, concurrency: int = 8) -> tuple[float, int]:
    backend = scripted_backend(bisection_chat_policy, tokenizer)
    start = time.perf_counter()
    trajs = collect_sync(
        lambda: plyground.make("GuessNumber-v0"), backend, episode_specs(episodes), RolloutConfig(concurrency=concurrency)
    )
    elapsed = time.perf_counter() - start
    assert all(t.success and t.error is None for t in trajs), "the scripted policy must solve every episode"
    return elapsed, sum(t.num_turns for t in trajs)


def tiny_throughput(backend: object, episodes: int, concurrency: int) -> dict[str, float]:
    config = RolloutConfig(
        sampling=SamplingParams(max_tokens=16, temperature=1.0, seed=0), concurrency=concurrency, max_turns=4
    )
    start = time.perf_counter()
    trajs = collect_sync(lambda: plyground.make("GuessNumber-v0"), backend, episode_specs(episodes), config)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    tokens = sum(len(t.completion.token_ids) for tr in trajs for t in tr.turns if t.completion)
    return {"episodes_per_s": episodes / elapsed, "tokens_per_s": tokens / elapsed, "wall_s": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--tiny-episodes", type=int, default=16)
    parser.add_argument("--out", default="benchmarks/results/harness_overhead.json")
    args = parser.parse_args()
    console = Console()

    from plyground.inference.hf import HFBackend

    tiny = HFBackend(model="tiny")
    collector_loop(8, tiny.tokenizer)  # warm-up: imports, template compilation

    raw_s, raw_steps = direct_loop(args.episodes)
    text_s, text_steps = collector_loop(args.episodes, None)
    tok_s, tok_steps = collector_loop(args.episodes, tiny.tokenizer)
    raw_us = raw_s / raw_steps * 1e6
    rows = [
        ("env.step loop (Gymnasium floor)", raw_us, 1.0),
        ("collector, scripted text backend", text_s / text_steps * 1e6, text_s / text_steps * 1e6 / raw_us),
        ("collector, + token ledger", tok_s / tok_steps * 1e6, tok_s / tok_steps * 1e6 / raw_us),
    ]
    table = Table(title=f"Overhead per env step, GuessNumber, {args.episodes} episodes")
    for col in ("path", "us / step", "ratio to env.step"):
        table.add_column(col, justify="right" if col != "path" else "left")
    for name, us, ratio in rows:
        table.add_row(name, f"{us:,.1f}", f"{ratio:,.1f}x")
    console.print(table)

    c1 = tiny_throughput(tiny, args.tiny_episodes, 1)
    c8 = tiny_throughput(tiny, args.tiny_episodes, 8)
    table = Table(title=f"Collector throughput, tiny model, {args.tiny_episodes} episodes x <=4 turns x 16 tokens")
    for col in ("concurrency", "episodes/s", "tokens/s", "speed-up"):
        table.add_column(col, justify="right")
    table.add_row("1", f"{c1['episodes_per_s']:.2f}", f"{c1['tokens_per_s']:.1f}", "1.0x")
    table.add_row("8", f"{c8['episodes_per_s']:.2f}", f"{c8['tokens_per_s']:.1f}", f"{c8['tokens_per_s'] / c1['tokens_per_s']:.1f}x")
    console.print(table)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "overhead_us_per_step": {name: us for name, us, _ in rows},
                "throughput": {"concurrency_1": c1, "concurrency_8": c8},
                "cpu_count": os.cpu_count(),
            },
            indent=2,
        )
    )
    console.print(f"[dim]wrote {args.out}[/dim]")


if __name__ == "__main__":
    main()
