"""Must-show A: ArCHer vs turn-level REINFORCE on Maze (U maze), equal env steps, several seeds.

Both trainers start from the same warm-started small policy (a 2-layer, 64-wide Llama with the
SmolLM2 tokenizer, SFT on a noisy maze expert that plays a random move half of the time), sample
``--episodes`` episodes per optimizer step with the same sampler, and take one actor step per
rollout batch. ArCHer's first rollout batch trains only its critic (warm-up), so it is charged
those env steps without an actor update. The curves are the rollout batches' own statistics (the
episodes each step trained on), against cumulative env steps (turns played).

Run from the repository root (about 4 minutes on an H200 with ``--jobs 6``; on the shared 2-core
CPU box a single step took 20-80 s, so three seeds take hours)::

    OMP_NUM_THREADS=1 .venv/bin/python examples/multiturn/archer_vs_reinforce.py

Writes ``docs/results/archer_vs_reinforce.{json,png}`` (``--quick`` writes under the out folder
instead, for tests).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RESULTS,
    Deadline,
    EpisodeLog,
    OutOfTime,
    noisy_chat_policy,
    set_threads,
    small_policy,
    warm_start,
)

ENV_ID = "Maze-v0"


def maze_warm_policy(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """The shared starting policy (cached under the out folder: SFT is the slow part)."""
    import torch

    from plyground.envs.lmrl.maze import MOVES, U_MAZE, MazeExpert

    env_kwargs = {"maze": "umaze", "max_steps": args.max_steps}
    model, tok = small_policy(seed=0)
    cache = Path(args.out) / f"warm_eps{args.eps}_steps{args.sft_steps}_ms{args.max_steps}.pt"
    if cache.exists():
        model.load_state_dict(torch.load(cache))
        return model, tok, env_kwargs
    expert = MazeExpert(layout=U_MAZE)
    policy = noisy_chat_policy(expert.act, list(MOVES), eps=args.eps)
    warm_start(model, tok, ENV_ID, env_kwargs, policy, episodes=48, steps=args.sft_steps, lr=3e-3,
               out_dir=str(Path(args.out) / "sft"))
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model, tok, env_kwargs


def run_one(method: str, seed: int, model: Any, tok: Any, env_kwargs: dict[str, Any], args: argparse.Namespace) -> list[dict[str, float]]:
    from plyground.trainers.archer import ArCHerConfig, ArCHerTrainer
    from plyground.trainers.baselines import ReinforceConfig, ReinforceTrainer

    common = dict(
        env_id=ENV_ID, env_kwargs=env_kwargs, tasks_per_step=args.episodes, group_size=1, max_tokens=5,
        temperature=1.0, total_steps=args.steps, lr=args.lr, micro_batch_size=min(args.episodes, 8), seed=seed,
        gamma=args.gamma, mixed_precision="no", out_dir=str(Path(args.out) / f"{method}_lr{args.lr:g}_seed{seed}"),
    )
    log = EpisodeLog(horizon=args.max_steps + 1)
    hooks = [log, Deadline(args.deadline)]
    trainer: Any
    if method == "archer":
        cfg = ArCHerConfig(
            **common, warmup_iters=1, critic_steps=args.critic_steps, center_advantages=bool(args.center), critic_batch=32, critic_lr=1e-3, tau=0.1,
            critic={"dim": 32, "layers": 1, "heads": 4, "head_hidden": 64, "max_length": 64},
        )
        trainer = ArCHerTrainer(cfg, model=copy.deepcopy(model), tokenizer=tok, on_update=hooks)
    else:
        cfg = ReinforceConfig(**common)
        trainer = ReinforceTrainer(cfg, model=copy.deepcopy(model), tokenizer=tok, on_update=hooks)
    start = time.time()
    try:
        trainer.train()
    except OutOfTime as stop:
        print(f"{method} seed {seed}: {stop}", flush=True)
    print(f"{method} seed {seed}: {time.time() - start:.0f} s; last turns {[round(r['turns_mean'], 2) for r in log.rows[-5:]]}", flush=True)
    return log.rows


def _worker(method: str, seed: int, arg_dict: dict[str, Any]) -> list[dict[str, float]]:
    set_threads()
    args = argparse.Namespace(**arg_dict)
    model, tok, env_kwargs = maze_warm_policy(args)
    return run_one(method, seed, model, tok, env_kwargs, args)


def summarise(runs: dict[str, dict[int, list[dict[str, float]]]], last: int) -> dict[str, Any]:
    """Per method, over seeds, at a common budget of env steps (the smallest any run reached, so a
    run cut short by the time budget is compared at equal env steps): the start (first batch), the
    mean of the last ``last`` batches within the budget, and the mean over all batches within it
    (area under the curve: lower = fewer turns sooner)."""
    common = min(rows[-1]["env_steps"] for by_seed in runs.values() for rows in by_seed.values())
    out: dict[str, Any] = {"common_env_steps": common}
    for method, by_seed in runs.items():
        within = {s: [r for r in rows if r["env_steps"] <= common] for s, rows in by_seed.items()}
        first = [rows[0] for rows in by_seed.values()]
        tail = [r for rows in within.values() for r in rows[-last:]]
        every = [r for rows in within.values() for r in rows]
        out[method] = {
            "start_turns_mean": _mean(r["turns_mean"] for r in first),
            "start_success_rate": _mean(r["success_rate"] for r in first),
            "last_turns_mean": _mean(r["turns_mean"] for r in tail),
            "last_success_rate": _mean(r["success_rate"] for r in tail),
            "last_turns_to_success": _mean(r["turns_to_success"] for r in tail),
            "auc_turns_mean": _mean(r["turns_mean"] for r in every),
            "last_turns_mean_per_seed": {s: _mean(r["turns_mean"] for r in rows[-last:]) for s, rows in within.items()},
            "auc_turns_mean_per_seed": {s: _mean(r["turns_mean"] for r in rows) for s, rows in within.items()},
            "optimizer_steps_per_seed": {s: len(rows) for s, rows in by_seed.items()},
        }
    return out


def _mean(values: Any) -> float:
    vals = list(values)
    return sum(vals) / max(len(vals), 1)


def plot(runs: dict[str, dict[int, list[dict[str, float]]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = {"archer": "tab:blue", "reinforce": "tab:orange"}
    for method, by_seed in runs.items():
        for k, key in enumerate(("turns_mean", "success_rate")):
            for seed, rows in by_seed.items():
                xs = [r["env_steps"] for r in rows]
                ys = _smooth([r[key] for r in rows], 3)
                axes[k].plot(xs, ys, color=colors[method], alpha=0.85, lw=1.2,
                             label=f"{method}" if seed == min(by_seed) else None)
    axes[0].set_ylabel("mean episode length (turns; failure = horizon)")
    axes[1].set_ylabel("success rate of the rollout batch")
    for ax in axes:
        ax.set_xlabel("cumulative env steps (turns played)")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _smooth(values: list[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps (= rollout batches) per run")
    ap.add_argument("--episodes", type=int, default=8, help="episodes per rollout batch")
    ap.add_argument("--max-steps", type=int, default=8, help="maze moves before the episode fails")
    ap.add_argument("--eps", type=float, default=0.5, help="random-move rate of the warm-start data")
    ap.add_argument("--sft-steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--gamma", type=float, default=0.95)
    ap.add_argument("--critic-steps", type=int, default=20)
    ap.add_argument("--center", type=int, default=1, help="ArCHer: centre the actor advantages (1) or not (0)")
    ap.add_argument("--last", type=int, default=5, help="batches averaged for the final figure")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("--out", default="runs/multiturn/archer_vs_reinforce")
    ap.add_argument("--quick", action="store_true", help="write the JSON/PNG under --out, not docs/results")
    ap.add_argument("--time-budget-s", type=float, default=None, help="stop every run after this long (curves so far kept)")
    args = ap.parse_args(argv)
    args.deadline = time.time() + args.time_budget_s if args.time_budget_s else None
    set_threads()
    model, tok, env_kwargs = maze_warm_policy(args)
    runs: dict[str, dict[int, list[dict[str, float]]]] = {"archer": {}, "reinforce": {}}
    jobs = [(method, seed) for seed in args.seeds for method in ("archer", "reinforce")]
    if args.jobs > 1:
        # Separate processes (spawned: safe with CUDA), each loading the cached warm start.
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {job: pool.submit(_worker, job[0], job[1], vars(args)) for job in jobs}
            for (method, seed), fut in futures.items():
                runs[method][seed] = fut.result()
    else:
        for method, seed in jobs:
            runs[method][seed] = run_one(method, seed, model, tok, env_kwargs, args)
    summary = summarise(runs, args.last)
    dest = Path(args.out) if args.quick else RESULTS
    dest.mkdir(parents=True, exist_ok=True)
    payload = {"config": vars(args), "summary": summary, "runs": runs}
    name = "archer_vs_reinforce" + (f"_{args.tag}" if args.tag else "")
    (dest / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    plot(runs, dest / f"{name}.png",
         f"U maze ({args.max_steps} moves), {len(args.seeds)} seeds, {args.episodes} episodes/step, lr {args.lr:g}")
    print(json.dumps(summary, indent=1))
    return payload


if __name__ == "__main__":
    main()
