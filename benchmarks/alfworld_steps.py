"""ALFWorld step latency with the expert policy (TextWorld PDDL engine in its worker process).

Plays the planner's plan on generated games of every task type and times ``reset`` (game
generation + engine load), ``step`` and the planner call. Writes
benchmarks/results/alfworld_steps.json and .md (``--no-prune``: alfworld_steps_full_problem.*).

    .venv/bin/python benchmarks/alfworld_steps.py [--games-per-type 3]

``--expert-games N`` instead plays the planner's plan on generated games 0..N-1 of each task type
(``--task-types``, default all six) and records the expert's win rate, plan lengths and planner
times per type in benchmarks/results/alfworld_expert.json (types already there are kept, so types
can be run one at a time) and docs/results/alfworld_expert.md.

    .venv/bin/python benchmarks/alfworld_steps.py --expert-games 50 --task-types pick_cool_then_place_in_recep

The expert plans on the goal-relevant sub-problem first (``AlfWorldEnv.expert_plan()``);
``--no-prune`` measures the planner on the whole problem instead (kept apart in the JSON).
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

from plyground.envs.alfworld import TASK_TYPES, AlfWorldEnv

RESULTS = Path(__file__).parent / "results"
DOCS_RESULTS = Path(__file__).parent.parent / "docs" / "results"


def expert_win_rates(games: int, task_types: list[str], plan_timeout: float, prune: bool = True) -> None:
    """The planner expert on generated games 0..games-1 of each type; saved after every type."""
    path = RESULTS / "alfworld_expert.json"
    # The expert as shipped (sub-problem first) and the whole-problem planner are kept apart.
    key = "task_types" if prune else "task_types_full_problem"
    rows: dict[str, Any] = {}
    env = AlfWorldEnv()
    try:
        for task_type in task_types:
            t0 = time.perf_counter()
            wins, lengths, plan_s, failed, timeouts, inadmissible = 0, [], [], [], [], 0
            sources: dict[str, int] = {}
            for seed in range(games):
                _, info = env.reset(seed=seed, options={"task_type": task_type})
                t = time.perf_counter()
                try:
                    plan = env.expert_plan(timeout=plan_timeout, prune=prune)
                    source = env.engine.last_plan_source
                except TimeoutError:
                    plan, source = [], "timeout"  # counted as a loss
                    timeouts.append(seed)
                plan_s.append(time.perf_counter() - t)
                sources[source] = sources.get(source, 0) + 1
                reward = 0.0
                for command in plan:
                    # The engine is the judge: a command it does not list would answer "Nothing happens."
                    inadmissible += command not in info["admissible_commands"]
                    _, reward, terminated, truncated, info = env.step(command)
                    if terminated or truncated:
                        break
                wins += reward == 1.0
                lengths.append(len(plan))
                if reward != 1.0:
                    failed.append(seed)
                print(f"{task_type} seed {seed}: plan {len(plan)} steps ({source}) in {plan_s[-1]:.2f} s, "
                      f"reward {reward}", flush=True)
            rows[task_type] = {"games": games, "wins": wins, "win_rate": round(wins / games, 3), "failed_seeds": failed,
                               "planner_timeouts": timeouts, "plan_timeout_s": plan_timeout, "prune": prune,
                               "plan_sources": sources, "inadmissible_commands": inadmissible,
                               "mean_plan_length": round(statistics.mean(lengths), 2),
                               "plan_s_mean": round(statistics.mean(plan_s), 2), "plan_s_max": round(max(plan_s), 2),
                               "wall_s": round(time.perf_counter() - t0, 1), "machine": platform.platform()}
            RESULTS.mkdir(exist_ok=True)
            # Read again just before writing: another run (of other types) may have saved meanwhile.
            saved: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"benchmark": "alfworld_expert"}
            saved[key] = {**saved.get(key, {}), task_type: rows[task_type]}
            path.write_text(json.dumps(saved, indent=2) + "\n")
            _write_expert_md(saved)
    finally:
        env.close()


NOTES_MARKER = "<!-- notes: kept when the tables are written again -->"


def _table(rows: dict[str, Any]) -> list[str]:
    lines = ["| task type | games | wins | win rate | plans: sub-problem / all goal receptacles / whole problem | "
             "planner timeouts | inadmissible commands | mean plan length | planner s mean | planner s max | wall s |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for task_type in TASK_TYPES:
        r = rows.get(task_type)
        if r is None:
            lines.append(f"| {task_type} | not run | | | | | | | | | |")
            continue
        src = r.get("plan_sources", {})
        sources = " / ".join(str(src.get(k, 0)) for k in ("pruned", "pruned_all_goal_receptacles", "full"))
        lines.append(f"| {task_type} | {r['games']} | {r['wins']} | {100 * r['win_rate']:.0f}% | {sources} | "
                     f"{len(r['planner_timeouts'])} (limit {r['plan_timeout_s']:.0f} s) | "
                     f"{r.get('inadmissible_commands', 'not counted')} | "
                     f"{r['mean_plan_length']} | {r['plan_s_mean']} | {r['plan_s_max']} | {r['wall_s']} |")
    for task_type, r in rows.items():
        if r["failed_seeds"]:
            timed_out = set(r["planner_timeouts"])
            lost = ", ".join(f"{seed}{' (planner timeout)' if seed in timed_out else ''}" for seed in r["failed_seeds"])
            lines += ["", f"Lost {task_type} games, by seed: {lost}."]
    return lines


def _write_expert_md(saved: dict[str, Any]) -> None:
    lines = ["# ALFWorld: the planner expert on generated games", "",
             "The expert plays the plan that `AlfWorldEnv.expert_plan()` gives at the start of each generated game, "
             "seeds 0..N-1 of each task type, in the real TextWorld PDDL engine, which checks every command and "
             "the win. The plan is fast-downward's (TextWorld's planner), first on the goal-relevant sub-problem "
             "(the goal's objects, the receptacles holding them, the tools the goal's actions need, one receptacle "
             "of the goal's type), then with every receptacle of the goal's type, and on the whole problem only when "
             "neither has a plan (`plyground/envs/alfworld/planning.py`). Reproduce one type with", "",
             "```bash",
             "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/alfworld_steps.py --expert-games 50 --task-types <task type>",
             "```", "",
             "(numbers also in `benchmarks/results/alfworld_expert.json`; the slow test "
             "`tests/envs/test_alfworld.py::test_expert_wins_95_percent_of_50_games` asserts >= 95%). "
             "\"Inadmissible commands\" counts plan commands that were not among the engine's admissible commands "
             "when played. Planner seconds are wall time on a 2-core machine shared with other work; a plan that "
             "takes longer than the limit counts as a loss.", "",
             "## The expert (sub-problem first)", ""]
    lines += _table(saved.get("task_types", {}))
    lines += ["", "## The planner on the whole problem (`--no-prune`)", "",
              "TextWorld's planner as is (`expert_plan(prune=False)`, the expert before the sub-problem was added):", "",
              "```bash",
              "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/alfworld_steps.py --expert-games 50 --no-prune "
              "--task-types <task type>",
              "```", ""]
    lines += _table(saved.get("task_types_full_problem", {}))
    path = DOCS_RESULTS / "alfworld_expert.md"
    notes = ""
    if path.exists() and NOTES_MARKER in path.read_text():
        notes = path.read_text().split(NOTES_MARKER, 1)[1]
    DOCS_RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n\n" + NOTES_MARKER + (notes or "\n"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--games-per-type", type=int, default=3)
    parser.add_argument("--expert-games", type=int, default=0, help="measure the expert's win rate instead")
    parser.add_argument("--plan-timeout", type=float, default=300.0, help="seconds; a timed-out plan is a loss")
    parser.add_argument("--no-prune", action="store_true",
                        help="plan on the whole problem (TextWorld's planner as is), not the goal-relevant part first")
    parser.add_argument("--task-types", nargs="+", default=list(TASK_TYPES), choices=TASK_TYPES)
    args = parser.parse_args()
    if args.expert_games:
        expert_win_rates(args.expert_games, args.task_types, args.plan_timeout, prune=not args.no_prune)
        return
    load_before = os.getloadavg()[0]
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
            plan = env.expert_plan(prune=not args.no_prune)
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
              "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
              "step_ms": ms(steps), "reset_ms": ms(resets), "plan_ms": ms(plans)}
    RESULTS.mkdir(exist_ok=True)
    stem = "alfworld_steps_full_problem" if args.no_prune else "alfworld_steps"
    result["prune"] = not args.no_prune
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# ALFWorld step latency (expert policy)", "",
             f"{games} generated games ({args.games_per_type} per task type), expert won {wins}; "
             f"engine worker start + first game {start_s:.2f} s. Machine: {result['machine']}, "
             f"{os.cpu_count()} CPUs shared with other work (1-min load average {result['load_average'][0]} "
             f"before, {result['load_average'][1]} after). Command: "
             f"`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/alfworld_steps.py --games-per-type {args.games_per_type}"
             f"{' --no-prune' if args.no_prune else ''}` (plan: "
             f"{'the whole problem' if args.no_prune else 'the goal-relevant sub-problem first'}).", "",
             "| what | mean ms | p50 ms | p95 ms | n |", "|---|---|---|---|---|"]
    for key in ("step_ms", "reset_ms", "plan_ms"):
        r = result[key]
        lines.append(f"| {key.removesuffix('_ms')} | {r['mean']} | {r['p50']} | {r['p95']} | {r['n']} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
