"""ALFWorld step latency with the expert policy (TextWorld PDDL engine in its worker process).

Plays the planner's plan on generated games of every task type and times ``reset`` (game
generation + engine load), ``step`` and the planner call. Writes
benchmarks/results/alfworld_steps.json and .md.

    .venv/bin/python benchmarks/alfworld_steps.py [--games-per-type 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from plyground.envs.alfworld import TASK_TYPES, AlfWorldEnv

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--games-per-type", type=int, default=3)
    args = parser.parse_args()
    t0 = time.perf_counter()
    env = AlfWorldEnv()
    env.reset(seed=10_000, options={"task_type": TASK_TYPES[0]})  # starts the worker
    start_s = time.perf_counter() - t0
    steps, resets, plans, wins, games = [], [], [], 0, 0
    for task_type in TASK_TYPES:
        for seed in range(args.games_per_type):
            t = time.perf_counter()
            env.reset(seed=seed, options={"task_type": task_type})
            resets.append(time.perf_counter() - t)
            t = time.perf_counter()
            plan = env.expert_plan()
            plans.append(time.perf_counter() - t)
            reward = 0.0
            for command in plan:
                t = time.perf_counter()
                _, reward, terminated, truncated, _ = env.step(command)
                steps.append(time.perf_counter() - t)
                if terminated or truncated:
                    break
            wins += reward == 1.0
            games += 1
    env.close()

    def ms(xs: list[float]) -> dict[str, float]:
        xs = sorted(xs)
        return {"mean": round(1000 * statistics.mean(xs), 2), "p50": round(1000 * xs[len(xs) // 2], 2),
                "p95": round(1000 * xs[int(0.95 * (len(xs) - 1))], 2), "n": len(xs)}

    result = {"benchmark": "alfworld_steps", "machine": platform.platform(), "processor": platform.processor(),
              "games": games, "expert_wins": wins, "engine_start_s": round(start_s, 2),
              "step_ms": ms(steps), "reset_ms": ms(resets), "plan_ms": ms(plans)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "alfworld_steps.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# ALFWorld step latency (expert policy)", "",
             f"{games} generated games ({args.games_per_type} per task type), expert won {wins}; "
             f"engine worker start + first game {start_s:.2f} s. Machine: {result['machine']}.", "",
             "| what | mean ms | p50 ms | p95 ms | n |", "|---|---|---|---|---|"]
    for key in ("step_ms", "reset_ms", "plan_ms"):
        r = result[key]
        lines.append(f"| {key.removesuffix('_ms')} | {r['mean']} | {r['p50']} | {r['p95']} | {r['n']} |")
    (RESULTS / "alfworld_steps.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
