"""WebShop step latency in text mode (HTTP to the shop server) and browser mode (headless Chromium
through Playwright), both played by the scripted shopper on the same generated goals.

Times ``reset`` (new session + first page), ``step`` (split into ``search[...]`` and ``click[...]``)
and the policy apart, per mode, over the first ``--goals`` goals of the 1,000-product catalogue;
server (and browser) start-up is timed separately and left out. Writes
benchmarks/results/webshop_steps.json and .md.

    .venv/bin/python benchmarks/webshop_steps.py [--goals 20] [--modes text browser]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from plyground.envs.webshop import ScriptedShopper, WebShopBrowserEnv, WebShopEnv, default_catalogue

RESULTS = Path(__file__).parent / "results"


def ms(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    if not xs:
        return {"mean": float("nan"), "p50": float("nan"), "p95": float("nan"), "n": 0}
    return {"mean": round(1000 * statistics.mean(xs), 2), "p50": round(1000 * xs[len(xs) // 2], 2),
            "p95": round(1000 * xs[int(0.95 * (len(xs) - 1))], 2), "n": len(xs)}


def run_mode(mode: str, goals: int) -> dict[str, Any]:
    catalogue = default_catalogue(1000, 0)
    env = WebShopBrowserEnv(catalogue=catalogue) if mode == "browser" else WebShopEnv(catalogue=catalogue)
    shopper = ScriptedShopper(max_turns=env.max_turns)
    t = time.perf_counter()
    env.reset(seed=0, options={"goal_index": goals})  # starts the server (and Chromium); not counted
    start_s = time.perf_counter() - t
    resets: list[float] = []
    searches: list[float] = []
    clicks: list[float] = []
    policy: list[float] = []
    rewards: list[float] = []
    try:
        for index in range(goals):
            shopper.reset()
            t = time.perf_counter()
            obs, info = env.reset(seed=index, options={"goal_index": index})
            resets.append(time.perf_counter() - t)
            while True:
                t = time.perf_counter()
                action = shopper.act(obs, info)
                policy.append(time.perf_counter() - t)
                t = time.perf_counter()
                obs, reward, terminated, truncated, info = env.step(action)
                (searches if action.startswith("search[") else clicks).append(time.perf_counter() - t)
                if terminated or truncated:
                    rewards.append(reward)
                    break
    finally:
        env.close()
    return {"mode": mode, "episodes": goals, "mean_reward": round(statistics.mean(rewards), 4),
            "start_s": round(start_s, 2), "step_ms": ms(searches + clicks), "search_ms": ms(searches),
            "click_ms": ms(clicks), "reset_ms": ms(resets), "policy_ms": ms(policy)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--goals", type=int, default=20)
    parser.add_argument("--modes", nargs="+", default=["text", "browser"], choices=["text", "browser"])
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = [run_mode(mode, args.goals) for mode in args.modes]
    text_step = next((r["step_ms"]["mean"] for r in rows if r["mode"] == "text"), None)
    for r in rows:
        r["step_vs_text"] = round(r["step_ms"]["mean"] / text_step, 1) if text_step else None
    result = {"benchmark": "webshop_steps", "machine": platform.platform(), "cpus": os.cpu_count(),
              "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)], "goals": args.goals, "catalogue": "generated, 1,000 products, seed 0", "modes": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "webshop_steps.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# WebShop step latency (scripted shopper)", "",
             f"Goals 0..{args.goals - 1} of the generated 1,000-product catalogue, each mode; machine: "
             f"{result['machine']}, {result['cpus']} CPUs shared with other work (1-min load average "
             f"{result['load_average'][0]} before, {result['load_average'][1]} after). Command: "
             f"`.venv/bin/python benchmarks/webshop_steps.py --goals {args.goals}`.", "",
             "| mode | step mean ms | step p50 | step p95 | vs text | search mean | click mean | reset mean | "
             "steps | mean reward | first reset s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s = r["step_ms"]
        lines.append(f"| {r['mode']} | {s['mean']} | {s['p50']} | {s['p95']} | {r['step_vs_text']}x | {r['search_ms']['mean']} | "
                     f"{r['click_ms']['mean']} | {r['reset_ms']['mean']} | {s['n']} | {r['mean_reward']} | "
                     f"{r['start_s']} |")
    (RESULTS / "webshop_steps.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
