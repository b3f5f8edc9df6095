"""Env steps per second for each LMRL-Gym env (and GuessNumber), played by its scripted policy.

    .venv/bin/python benchmarks/env_steps.py [--seconds 3] [--chess-depth 1] [--only Maze-v0 ...]

For each env the scripted or expert policy plays whole episodes (seeds 0, 1, 2, ...) until
``--seconds`` of play have passed (at least ``--min-episodes``; a long episode is not cut). Inside
the same loop ``policy.act`` and ``env.step`` are timed separately, so each row shows, side by
side, the bare ``env.step`` cost (policy time excluded), the policy's cost, and steps per second
of the two together; the ratio (policy + env) / env says how much the policy adds. ``reset`` is
timed apart and left out of both.

Policies: shortest path (Maze), shortest plan (Text-Nav), the entropy solver (Wordle), Stockfish
at a low depth (``--chess-depth``, default 1; the env's own opponent keeps the benchmark's
Elo-1200 setting, and its engine call is part of ``env.step``), the scripted questioners (Twenty
Questions, Guess My City, rule-based oracles), the scripted seller (Car Dealer, rule-based buyer)
and bisection (GuessNumber). Chess and Endgames are skipped when Stockfish is not installed.

Writes ``benchmarks/results/env_steps.json`` and ``benchmarks/results/env_steps.md``.
Timings depend on the machine and its load; compare rows of one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rich.console import Console
from rich.table import Table

import plyground
from plyground.envs import TextEnv


class Policy(Protocol):
    def reset(self) -> None: ...
    def act(self, observation: str) -> str: ...


@dataclass
class Row:
    env_id: str
    policy: str
    episodes: int
    steps: int
    success_rate: float
    mean_return: float
    env_us_per_step: float
    policy_us_per_step: float
    reset_us: float
    env_steps_per_s: float
    total_steps_per_s: float
    ratio: float


def _policies(chess_depth: int) -> dict[str, tuple[str, Callable[[TextEnv], Policy]]]:
    from plyground.envs.guess_number import BisectionPolicy
    from plyground.envs.lmrl.car_dealer import CarDealerSeller
    from plyground.envs.lmrl.guess_city import GuessMyCitySolver
    from plyground.envs.lmrl.maze import MazeExpert
    from plyground.envs.lmrl.text_nav import TextNavExpert
    from plyground.envs.lmrl.twenty_questions import TwentyQuestionsSolver
    from plyground.envs.lmrl.wordle import WordleSolver

    def stockfish(env: TextEnv) -> Policy:
        from plyground.envs.lmrl.chess import StockfishPolicy

        return StockfishPolicy(depth=chess_depth, seed=0)

    return {
        "Maze-v0": ("shortest path", lambda env: MazeExpert(env)),  # type: ignore[arg-type]
        "Maze-PO-v0": ("shortest path", lambda env: MazeExpert(env)),  # type: ignore[arg-type]
        "TextNav-v0": ("shortest plan", lambda env: TextNavExpert(env)),  # type: ignore[arg-type]
        "TextNav-PO-v0": ("shortest plan", lambda env: TextNavExpert(env)),  # type: ignore[arg-type]
        "Wordle-v0": ("entropy solver", lambda env: WordleSolver.for_env(env)),  # type: ignore[arg-type]
        "Wordle-Official-v0": ("entropy solver", lambda env: WordleSolver.for_env(env)),  # type: ignore[arg-type]
        "Chess-v0": (f"Stockfish depth {chess_depth}", stockfish),
        "Endgames-v0": (f"Stockfish depth {chess_depth}", stockfish),
        "TwentyQuestions-v0": ("scripted questioner", lambda env: TwentyQuestionsSolver()),
        "GuessMyCity-v0": ("scripted questioner", lambda env: GuessMyCitySolver()),
        "CarDealer-v0": ("scripted seller", lambda env: CarDealerSeller()),
        "GuessNumber-v0": ("bisection", lambda env: BisectionPolicy()),
    }


def measure(
    env_id: str, label: str, make_policy: Callable[[TextEnv], Policy], seconds: float, min_episodes: int
) -> Row:
    env = plyground.make(env_id)
    policy = make_policy(env)
    # Warm-up episode: imports, caches (the Wordle pattern table, the engine process).
    obs, _ = env.reset(seed=10_000)
    policy.reset()
    for _ in range(env.max_turns):
        *_, term, trunc, _ = env.step(policy.act(obs))
        if term or trunc:
            break
    clock = time.perf_counter
    env_s = policy_s = reset_s = 0.0
    steps = episodes = successes = 0
    returns = 0.0
    try:
        while episodes < min_episodes or env_s + policy_s < seconds:
            t0 = clock()
            obs, info = env.reset(seed=episodes)
            policy.reset()
            reset_s += clock() - t0
            while True:
                t0 = clock()
                action = policy.act(obs)
                t1 = clock()
                obs, reward, term, trunc, info = env.step(action)
                t2 = clock()
                policy_s += t1 - t0
                env_s += t2 - t1
                steps += 1
                returns += reward
                if term or trunc:
                    break
            episodes += 1
            successes += bool(info.get("success"))
    finally:
        close = getattr(policy, "close", None)
        if callable(close):
            close()
        env.close()
    return Row(
        env_id=env_id,
        policy=label,
        episodes=episodes,
        steps=steps,
        success_rate=successes / episodes,
        mean_return=returns / episodes,
        env_us_per_step=env_s / steps * 1e6,
        policy_us_per_step=policy_s / steps * 1e6,
        reset_us=reset_s / episodes * 1e6,
        env_steps_per_s=steps / env_s,
        total_steps_per_s=steps / (env_s + policy_s),
        ratio=(env_s + policy_s) / env_s,
    )


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def markdown(rows: list[Row], command: str, meta: dict[str, Any]) -> str:
    lines = [
        f"Env steps per second, each env played by its scripted policy ({meta['date']}, "
        f"{meta['cpu_count']} CPU cores, Python {meta['python']}, machine shared with other work).",
        "",
        "| env | policy | episodes | steps | success | env.step µs | policy µs | env steps/s | policy+env steps/s | (policy+env)/env |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.env_id} | {r.policy} | {r.episodes} | {r.steps} | {r.success_rate:.0%} | "
            f"{r.env_us_per_step:,.1f} | {r.policy_us_per_step:,.1f} | {_fmt_rate(r.env_steps_per_s)} | "
            f"{_fmt_rate(r.total_steps_per_s)} | {r.ratio:,.2f}x |"
        )
    lines += [
        "",
        "env.step µs: the bare `env.step` cost (policy time excluded; for Chess and Endgames it includes "
        "the Stockfish opponent at the benchmark's Elo 1200). policy µs: `policy.act`. Chess and Endgames "
        f"are played by Stockfish at depth {meta['chess_depth']} (a low depth, for speed, so a game can be drawn or "
        "run long; success there is over a handful of games). Each env plays whole episodes, seeds 0, 1, 2, ..., "
        f"for at least {meta['seconds_per_env']:g} s of policy + env time; `reset` is left out. Reproduce with:",
        "",
        f"    {command}",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="play time per env (policy + env.step)")
    parser.add_argument("--min-episodes", type=int, default=3)
    parser.add_argument(
        "--chess-depth", type=int, default=1, help="Stockfish depth of the Chess/Endgames policy"
    )
    parser.add_argument("--only", nargs="*", default=None, help="env ids to run (default: all)")
    parser.add_argument("--out", default="benchmarks/results/env_steps.json")
    args = parser.parse_args()
    console = Console(width=200)

    from plyground.envs.lmrl.engine import stockfish_available

    policies = _policies(args.chess_depth)
    ids = args.only or list(policies)
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    for env_id in ids:
        if env_id not in policies:
            raise SystemExit(f"no scripted policy for {env_id!r}; known: {', '.join(policies)}")
        if env_id in ("Chess-v0", "Endgames-v0") and not stockfish_available():
            skipped[env_id] = "Stockfish not installed (apt-get install stockfish)"
            continue
        label, make_policy = policies[env_id]
        console.print(f"[dim]{env_id} ...[/dim]")
        rows.append(measure(env_id, label, make_policy, args.seconds, args.min_episodes))

    table = Table(title=f"Env steps/s with scripted policies (>= {args.seconds:g} s of play each)")
    for col in (
        "env",
        "policy",
        "episodes",
        "steps",
        "success",
        "env.step µs",
        "policy µs",
        "env steps/s",
        "policy+env steps/s",
        "(policy+env)/env",
    ):
        table.add_column(col, justify="left" if col in ("env", "policy") else "right")
    for r in rows:
        table.add_row(
            r.env_id,
            r.policy,
            str(r.episodes),
            str(r.steps),
            f"{r.success_rate:.0%}",
            f"{r.env_us_per_step:,.1f}",
            f"{r.policy_us_per_step:,.1f}",
            _fmt_rate(r.env_steps_per_s),
            _fmt_rate(r.total_steps_per_s),
            f"{r.ratio:,.2f}x",
        )
    console.print(table)
    for env_id, why in skipped.items():
        console.print(f"[yellow]skipped {env_id}: {why}[/yellow]")

    argv = " ".join(sys.argv[1:])
    command = f".venv/bin/python benchmarks/env_steps.py{' ' + argv if argv else ''}"
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "seconds_per_env": args.seconds,
        "chess_depth": args.chess_depth,
        "command": command,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"meta": meta, "rows": [asdict(r) for r in rows], "skipped": skipped}, indent=2) + "\n"
    )
    md = out.with_suffix(".md")
    md.write_text(markdown(rows, command, meta))
    console.print(f"[dim]wrote {out} and {md}[/dim]")


if __name__ == "__main__":
    main()
