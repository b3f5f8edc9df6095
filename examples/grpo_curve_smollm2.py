"""GRPO learning curve at CPU scale with the embedded model (SmolLM2-135M-Instruct), no warm-up.

``examples/grpo_curve.py`` trains a small model from scratch and found no rise: its policy was right
about 8% of the time, so most GRPO groups had no reward. The embedded model already solves about a
quarter of one-digit, two-operand problems (``What is 7 * 3?``) within 16 new tokens, so most groups
of 8 samples are mixed and GRPO has a signal from the first step. Much of what it can learn in a few
CPU minutes is to answer before the 16-token budget runs out instead of starting a long explanation.

The run: GRPO (``GRPOTrainer``, full fine-tuning or ``--lora``) on ``Arithmetic-v0`` (``digits=1``,
``num_operands=2``), and every ``--eval-every`` steps the sampled (T = 1) success on
``--eval-episodes`` env seeds that training never plays (the held-out seeds and the evaluation
helper are those of ``examples/grpo_curve.py``). The curve is written to ``OUT/curve.json`` after
every evaluation, so an interrupted run keeps what it measured.

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python examples/grpo_curve_smollm2.py \\
        --out runs/grpo_smollm2 --plot docs/results/grpo_curve_smollm2.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grpo_curve import evaluate  # the held-out evaluation of the from-scratch curve

from plyground.inference.models import load_default_model
from plyground.trainers.grpo import GRPOConfig, GRPOTrainer

ENV_ID = "Arithmetic-v0"
ENV_KWARGS: dict[str, Any] = {"digits": 1, "num_operands": 2}


def stderr(p: float, n: int) -> float:
    """Binomial standard error of a success rate measured on ``n`` episodes."""
    return math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for run in result["runs"]:
        steps = [p["step"] for p in run["eval"]]
        ys = [p["sampled_success"] for p in run["eval"]]
        errs = [p["sampled_stderr"] for p in run["eval"]]
        ax.errorbar(steps, ys, yerr=errs, marker="o", ms=4, capsize=3, label=f"seed {run['seed']}")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel(f"success on {result['eval_episodes']} held-out seeds")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    mode = "LoRA" if result["grpo"]["lora"] else "full fine-tuning"
    ax.set_title(f"GRPO, SmolLM2-135M-Instruct ({mode}), {ENV_ID}\n1-digit, 2 operands; sampled T = 1, "
                 f"{result['grpo']['max_tokens']} new tokens (bars: 1 s.e.)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_seed(seed: int, args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    model, tokenizer = load_default_model()
    config = GRPOConfig(
        model="default", seed=seed, out_dir=str(args.out / f"seed{seed}"), env_id=ENV_ID, env_kwargs=ENV_KWARGS,
        tasks_per_step=args.tasks_per_step, group_size=args.group_size, max_tokens=args.max_tokens,
        temperature=1.0, lr=args.lr, lora=args.lora, lora_r=16, lora_alpha=32, total_steps=args.steps,
        micro_batch_size=args.tasks_per_step * args.group_size, loss_agg="token", eps_high=0.28,
        drop_zero_variance=True, beta=0.0, concurrency=args.tasks_per_step * args.group_size,
    )
    trainer = GRPOTrainer(config, model=model, tokenizer=tokenizer)
    run: dict[str, Any] = {"seed": seed, "eval": [], "train": []}
    result["runs"].append(run)
    t0 = time.perf_counter()

    def measure(step: int) -> None:
        n = args.eval_episodes
        sampled, _ = evaluate(trainer.base_model, tokenizer, n, 1.0, args.max_tokens, env_kwargs=ENV_KWARGS,
                              sample_seed=12345)
        point = {"step": step, "sampled_success": sampled, "sampled_stderr": stderr(sampled, n),
                 "elapsed_s": round(time.perf_counter() - t0, 1)}
        run["eval"].append(point)
        print(f"seed {seed} step {step:3d}: sampled {sampled:.3f} +- {point['sampled_stderr']:.3f} "
              f"({point['elapsed_s']:.0f} s)", flush=True)
        save(result, args)

    measure(0)
    for step in range(1, args.steps + 1):
        m = trainer.train_step()
        keep = {k: float(v) for k, v in m.items() if k.startswith(("env/", "losses/", "rewards/", "charts/"))}
        run["train"].append({"step": step, **keep})
        print(f"  step {step}: train reward {keep.get('env/reward_mean', keep.get('rewards/mean', float('nan'))):.3f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            measure(step)
    return run


def save(result: dict[str, Any], args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "curve.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.plot is not None:
        plot(result, args.plot)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--eval-every", type=int, default=8)
    p.add_argument("--eval-episodes", type=int, default=64)
    p.add_argument("--tasks-per-step", type=int, default=4)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (r 16) instead of all weights")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/grpo_smollm2"))
    p.add_argument("--plot", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {
        "env_id": ENV_ID, "env_kwargs": ENV_KWARGS, "model": "SmolLM2-135M-Instruct (embedded)",
        "eval_episodes": args.eval_episodes, "eval": "sampled, T = 1, held-out seeds 900,000,000 + i",
        "grpo": {"steps": args.steps, "tasks_per_step": args.tasks_per_step, "group_size": args.group_size,
                 "max_tokens": args.max_tokens, "lr": args.lr, "lora": args.lora, "loss_agg": "token",
                 "eps_high": 0.28, "drop_zero_variance": True, "beta": 0.0, "temperature": 1.0},
        "runs": [],
    }
    for seed in args.seeds:
        run_seed(seed, args, result)
    save(result, args)
    return result


if __name__ == "__main__":
    main()
