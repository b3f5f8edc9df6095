"""Search overhead per node, excluding model time, for each search algorithm.

    .venv/bin/python benchmarks/search_overhead.py [--seeds 20] [--budget 200]

Every algorithm searches Maze-v0 (double-T maze, random starts) with two model-free proposers:

- ``random``: ``RandomProposer`` (uniform moves; no chats are built): the tree bookkeeping and
  env snapshot/restore/step alone;
- ``scripted``: ``Proposer`` over a ``ScriptedBackend`` that answers a random move: adds what a
  real policy call costs the search besides the model (building each node's chat from its path,
  parsing, deduping). The backend's own time is measured (``model_s``) and subtracted.

Reported per algorithm: microseconds of search time (wall minus model) per node expanded, per
node created (child stepped) and per env step, and the floor: one ``restore`` + ``step`` +
``snapshot`` of the env, measured directly (``-floor``: the search's own cost per env step
beyond the env's). Searches stop at the first success (the default configs of
``plyground.search.evaluate``). Writes benchmarks/results/search_overhead.json.
Timings depend on the machine; compare the rows with each other and with the floor.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from plyground.envs import make
from plyground.inference.scripted import ScriptedBackend
from plyground.search import Proposer, RandomProposer
from plyground.search.evaluate import default_config, run_search
from plyground.search.mcts import MCTSConfig
from plyground.types import Chat, SamplingParams

MOVES = ["move up", "move down", "move left", "move right"]
ALGOS: dict[str, tuple[str, dict[str, Any]]] = {
    "mcts": ("mcts", {}),
    "mcts+rollouts": ("mcts", {"rollout": "policy", "rollout_depth": 10, "dedupe": False}),
    "bfs": ("bfs", {}),
    "beam": ("beam", {}),
    "best-of-n": ("best-of-n", {}),
}


def env_floor(n: int = 5000) -> float:
    """Microseconds for restore + step + snapshot on Maze-v0."""
    env = make("Maze-v0")
    env.reset(seed=0)
    state = env.snapshot()
    rng = random.Random(0)
    start = time.perf_counter()
    for _ in range(n):
        env.restore(state)
        env.step(rng.choice(MOVES))
        env.snapshot()
    return (time.perf_counter() - start) / n * 1e6


def make_proposer(kind: str, seed: int) -> Any:
    if kind == "random":
        return RandomProposer(seed)
    rng = random.Random(seed)

    def policy(chat: Chat) -> str:
        return rng.choice(MOVES)

    return Proposer(ScriptedBackend(policy), SamplingParams(max_tokens=8, temperature=1.0))


def run(algo_label: str, kind: str, seeds: int, budget: int) -> dict[str, Any]:
    algo, overrides = ALGOS[algo_label]
    totals = {"search_s": 0.0, "model_s": 0.0, "expanded": 0, "created": 0, "steps": 0, "solved": 0, "calls": 0, "sims": 0}
    for seed in range(seeds):
        config = default_config(algo, budget, seed)
        if overrides:
            assert isinstance(config, MCTSConfig)
            config = MCTSConfig(**{**config.__dict__, **overrides})
        result = run_search(algo, lambda: make("Maze-v0"), make_proposer(kind, seed), budget, seed, config=config)
        s = result.stats
        totals["search_s"] += s.wall_s - s.model_s
        totals["model_s"] += s.model_s
        totals["expanded"] += s.nodes_expanded
        totals["created"] += s.nodes_created
        totals["steps"] += s.env_steps
        totals["solved"] += result.success
        totals["calls"] += s.proposer_calls
        totals["sims"] += s.simulations
    us = totals["search_s"] * 1e6
    return {
        "algo": algo_label,
        "proposer": kind,
        "searches": seeds,
        "solved": totals["solved"],
        "proposer_calls": totals["calls"],
        "nodes_expanded": totals["expanded"],
        "nodes_created": totals["created"],
        "env_steps": totals["steps"],
        "model_s_excluded": round(totals["model_s"], 4),
        "us_per_node_expanded": round(us / max(totals["expanded"], 1), 1),
        "us_per_node_created": round(us / max(totals["created"], 1), 1),
        "us_per_env_step": round(us / max(totals["steps"], 1), 1),
        "simulations": totals["sims"],
        "us_per_simulation": round(us / totals["sims"], 1) if totals["sims"] else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--budget", type=int, default=200, help="proposer calls per search")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "search_overhead.json"))
    args = parser.parse_args()
    floor = env_floor()
    rows = [run(label, kind, args.seeds, args.budget) for kind in ("random", "scripted") for label in ALGOS]
    table = Table(title=f"search overhead on Maze-v0 (model time excluded); env floor {floor:.1f} us/step")
    for col in ("algo", "proposer", "solved", "calls", "expanded", "steps", "us/expand", "us/node", "us/step", "-floor"):
        table.add_column(col, justify="left" if col in ("algo", "proposer") else "right", no_wrap=True)
    for r in rows:
        table.add_row(
            r["algo"], r["proposer"], f"{r['solved']}/{r['searches']}", str(r["proposer_calls"]),
            str(r["nodes_expanded"]), str(r["env_steps"]), f"{r['us_per_node_expanded']:.1f}",
            f"{r['us_per_node_created']:.1f}", f"{r['us_per_env_step']:.1f}",
            f"{r['us_per_env_step'] - floor:.1f}",
        )
    Console(width=120).print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "search_overhead",
        "env": "Maze-v0",
        "budget": args.budget,
        "seeds": args.seeds,
        "env_floor_us_per_restore_step_snapshot": round(floor, 2),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "rows": rows,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
