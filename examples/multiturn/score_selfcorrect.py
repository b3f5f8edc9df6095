"""Must-show B: SCoRe on an arithmetic self-correction task (``MathSelfCorrect-v0``).

Task: the 25 additions ``a + b`` with ``a, b`` in 1..5, two attempts per episode (the env's SCoRe
correction prompt between them), reward = exact match of the boxed answer.

Starting policy: a 2-layer, 64-wide Llama (SmolLM2 tokenizer) after a short SFT on a scripted
"base model" that answers right half of the time (else off by one) and, on the second attempt,
copies its first answer half of the time and answers afresh otherwise. So the start has
Acc@t1 ~ Acc@t2 and Delta(t1, t2) ~ 0.

Two runs from that start, same seed and budget: SCoRe with ``alpha = 10`` (Stage I then Stage II)
and the ablation ``alpha = 0`` (Stage II's bonus off). After training, both are evaluated on every
problem (``--eval-samples`` sampled episodes per problem, temperature 1): Acc@t1, Acc@t2,
Delta(t1,t2), Delta i->c, Delta c->i and the edit-distance ratio of the two attempts
(0 = the second attempt copies the first).

Run from the repository root (about 2 minutes on an H200 with ``--jobs 2``; about 35 minutes on
the shared 2-core CPU box with ``--jobs 2 --sft-steps 300``)::

    OMP_NUM_THREADS=1 .venv/bin/python examples/multiturn/score_selfcorrect.py

Writes ``docs/results/score_selfcorrect.{json,png}`` (``--quick``: under ``--out``).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import random
import re
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, Deadline, OutOfTime, evaluate, set_threads, small_policy, warm_start

from plyground.types import Message, Task

ENV_ID = "MathSelfCorrect-v0"
_Q = re.compile(r"What is (\d+) \+ (\d+)\?")


def addition_tasks() -> list[Task]:
    return [Task(id=f"add-{a}-{b}", prompt=f"What is {a} + {b}?", answer=str(a + b)) for a in range(1, 6) for b in range(1, 6)]


def base_chat_policy(p_correct: float = 0.5, p_copy: float = 0.5) -> Any:
    """The scripted "base model": right with ``p_correct`` (else off by one); on the second
    attempt, a copy of the first with ``p_copy``, else a fresh answer."""

    def answer(rng: random.Random, a: int, b: int) -> int:
        return a + b if rng.random() < p_correct else a + b + rng.choice((-1, 1))

    calls = itertools.count()

    def policy(chat: Sequence[Message]) -> str:
        # Seeded by the call index too: the same problem gets different answers in different
        # episodes (the data is played one episode at a time, so this is reproducible).
        rng = random.Random(zlib.crc32("\x00".join(m.content for m in chat).encode()) + 7919 * next(calls))
        found = _Q.search(chat[1].content if len(chat) > 1 else chat[0].content)
        assert found is not None, chat
        a, b = int(found.group(1)), int(found.group(2))
        replies = [m.content for m in chat if m.role == "assistant"]
        if replies and rng.random() < p_copy:
            return replies[-1]
        return f"\\boxed{{{answer(rng, a, b)}}}"

    return policy


def selfcorrect_eval(model: Any, tok: Any, tasks: list[Task], samples: int, seed: int) -> dict[str, float]:
    from plyground.rollout.collector import EpisodeSpec
    from plyground.trainers.score import self_correction_metrics

    specs = [EpisodeSpec(seed=seed, episode=i * samples + j, sample=j, options={"task": t})
             for i, t in enumerate(tasks) for j in range(samples)]
    trajs = evaluate(model, tok, ENV_ID, {"tasks": tasks}, specs, temperature=1.0, max_tokens=8, seed=seed)
    m = self_correction_metrics(trajs)
    return {k.removeprefix("env/"): v for k, v in m.items()} | {"episodes": float(len(trajs))}


def train_alpha(alpha: float, model: Any, tok: Any, tasks: list[Task], args: argparse.Namespace) -> dict[str, Any]:
    """One SCoRe run from the warm start; its rollout curve and the final evaluation."""
    from plyground.trainers.score import SCoReConfig, SCoReTrainer

    cfg = SCoReConfig(
        env_id=ENV_ID, env_kwargs={"tasks": tasks}, tasks_per_step=args.tasks_per_step, group_size=args.group_size,
        max_tokens=8, stage1_steps=args.stage1_steps, alpha=alpha, beta1=0.01, beta2=0.1, total_steps=args.steps,
        micro_batch_size=args.tasks_per_step * args.group_size, lr=args.lr, seed=args.seed, mixed_precision="no",
        out_dir=str(Path(args.out) / f"alpha{alpha:g}"),
    )
    policy = copy.deepcopy(model)
    trainer = SCoReTrainer(cfg, model=policy, tokenizer=tok, on_update=[Deadline(args.deadline)])
    t1 = time.time()
    try:
        trainer.train()
    except OutOfTime as stop:
        print(f"alpha {alpha:g}: {stop}", flush=True)
    history = trainer.logger.history if trainer.logger is not None else []
    curve = [{k.removeprefix("env/"): float(v) for k, v in h.items()
              if k.startswith("env/") or k in ("step", "charts/stage")} for h in history]
    final = selfcorrect_eval(policy, tok, tasks, args.eval_samples, seed=7)
    print(f"alpha {alpha:g}", json.dumps(final), f"{time.time() - t1:.0f} s, {trainer.step} steps", flush=True)
    return {"final": final, "curve": curve, "steps": trainer.step}


def _worker(alpha: float, arg_dict: dict[str, Any]) -> dict[str, Any]:
    set_threads()
    args = argparse.Namespace(**arg_dict)
    model, tok = warm_policy(args)
    return train_alpha(alpha, model, tok, addition_tasks(), args)


def warm_policy(args: argparse.Namespace) -> tuple[Any, Any]:
    """The shared starting policy: SFT on the scripted base model (cached under ``--out``)."""
    import torch

    model, tok = small_policy(seed=0)
    cache = Path(args.out) / f"warm_sft{args.sft_steps}.pt"
    if cache.exists():
        model.load_state_dict(torch.load(cache))
        return model, tok
    warm_start(model, tok, ENV_ID, {"tasks": addition_tasks()}, base_chat_policy(), episodes=100, steps=args.sft_steps,
               lr=3e-3, out_dir=str(Path(args.out) / "sft"), batch_size=16)
    model.cpu().eval()
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model, tok


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    ap.add_argument("--stage1-steps", type=int, default=15)
    ap.add_argument("--tasks-per-step", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sft-steps", type=int, default=80)
    ap.add_argument("--eval-samples", type=int, default=4)
    ap.add_argument("--alphas", type=float, nargs="+", default=[10.0, 0.0])
    ap.add_argument("--jobs", type=int, default=1, help="alpha runs in parallel processes")
    ap.add_argument("--time-budget-s", type=float, default=None, help="stop each run after this long")
    ap.add_argument("--out", default="runs/multiturn/score_selfcorrect")
    ap.add_argument("--quick", action="store_true", help="write the JSON/PNG under --out, not docs/results")
    args = ap.parse_args(argv)
    args.deadline = time.time() + args.time_budget_s if args.time_budget_s else None
    set_threads()
    tasks = addition_tasks()
    model, tok = warm_policy(args)
    t0 = time.time()
    start = selfcorrect_eval(model, tok, tasks, args.eval_samples, seed=7)
    print("start", json.dumps(start), f"{time.time() - t0:.0f} s", flush=True)
    runs: dict[str, Any] = {}
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {alpha: pool.submit(_worker, alpha, vars(args)) for alpha in args.alphas}
            for alpha, fut in futures.items():
                runs[f"{alpha:g}"] = fut.result()
    else:
        for alpha in args.alphas:
            runs[f"{alpha:g}"] = train_alpha(alpha, model, tok, tasks, args)
    dest = Path(args.out) if args.quick else RESULTS
    dest.mkdir(parents=True, exist_ok=True)
    payload = {"config": vars(args), "start": start, "runs": runs}
    (dest / "score_selfcorrect.json").write_text(json.dumps(payload, indent=1) + "\n")
    plot(payload, dest / "score_selfcorrect.png")
    return payload


def plot(payload: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    names = ["start"] + [f"alpha={a}" for a in payload["runs"]]
    rows = [payload["start"]] + [r["final"] for r in payload["runs"].values()]
    keys = ["acc_t1", "acc_t2", "delta_t1_t2", "delta_i_to_c", "delta_c_to_i"]
    width = 0.8 / len(rows)
    for i, (name, row) in enumerate(zip(names, rows, strict=True)):
        axes[0].bar([k + i * width for k in range(len(keys))], [row[k] for k in keys], width, label=name)
    axes[0].set_xticks([k + width for k in range(len(keys))], ["Acc@t1", "Acc@t2", "Δ(t1,t2)", "Δ i→c", "Δ c→i"])
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].legend()
    axes[0].set_title("evaluation after training (all 25 problems)")
    for alpha, run in payload["runs"].items():
        steps = [c["step"] for c in run["curve"]]
        axes[1].plot(steps, _smooth([c["delta_t1_t2"] for c in run["curve"]]), label=f"alpha={alpha}")
        axes[2].plot(steps, _smooth([c["edit_ratio"] for c in run["curve"]]), label=f"alpha={alpha}")
    axes[1].set_title("Δ(t1,t2) of the rollout batches (smoothed)")
    axes[2].set_title("edit-distance ratio attempt 1 vs 2 (0 = copy)")
    for ax in axes[1:]:
        ax.set_xlabel("optimizer step")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _smooth(values: list[float], window: int = 5) -> list[float]:
    return [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]


if __name__ == "__main__":
    main()
