"""Zero-reward groups under GRPO, Guide and Scaf-GRPO on a task with a hard subset.

Task (``MathHints-v0`` with a fixed problem list, drawn uniformly at each reset):

- **easy** half: the problems of ``examples/grpo_curve.py`` in digits (``What is 7?``,
  ``What is 7 * 8?``);
- **hard** half: the same problems in words (``What is seven?``, ``What is seven times eight?``),
  which the policy has never seen: unhinted, it (almost) never answers them;
- every problem has one hint, a Planning hint that restates it in digits (``Planning Hints:
  Compute 7 * 8.``): for two operands the policy still has to compute the result; for one operand
  the restatement is the answer itself.

Policy: a small model from scratch (as ``examples/grpo_curve.py``), warmed up by a short SFT run on
expert answers to **easy** problems only, half of them with the hint line in the prompt (so the
policy has seen the hint format, never a word problem).

Then ``--steps`` steps of each of GRPO, Guide (failed groups re-sampled with the hint, trained on
the unhinted prompt) and Scaf-GRPO (after its guidance-free warm-up, failed groups get hinted
rollouts, and the first success replaces a failed rollout), from the same warmed-up weights, for
several seeds. The quantity compared is the fraction of the groups **entering the update** whose
rewards are all zero (``env/zero_reward_group_frac``: measured on the batch after Guide's
re-sampling and Scaf-GRPO's replacement), with each method's unhinted fraction alongside.

    OMP_NUM_THREADS=1 .venv/bin/python examples/hint_zero_groups.py --seeds 0 1 2 --out runs/hint_zero_groups \
        --plot docs/results/hint_zero_groups.png
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

import plyground
from plyground.rollout.collector import EpisodeSpec, RolloutConfig, collect_sync
from plyground.trainers.grpo import GRPOConfig, GRPOTrainer
from plyground.trainers.guide import GuideConfig, GuideTrainer
from plyground.trainers.scaf_grpo import ScafGRPOConfig, ScafGRPOTrainer
from plyground.trainers.sft import SFTConfig, SFTTrainer
from plyground.types import Task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grpo_curve import arithmetic_expert, evaluate, small_model

ENV_ID = "MathHints-v0"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
OP_WORDS = {"+": "plus", "-": "minus", "*": "times"}
METHODS = ("grpo", "guide", "scaf-grpo")
EVAL_SEED_BASE = 900_000_000


def _value(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _task(subset: str, operands: tuple[int, ...], op: str | None) -> Task:
    digits = f"{operands[0]}" if op is None else f"{operands[0]} {op} {operands[1]}"
    words = WORDS[operands[0]] if op is None else f"{WORDS[operands[0]]} {OP_WORDS[op]} {WORDS[operands[1]]}"
    answer = str(operands[0] if op is None else _value(operands[0], op, operands[1]))
    hints = {"knowledge": [], "planning": [f"Compute {digits}."], "solution": []}
    return Task(id=f"{subset}:{digits}", prompt=f"What is {digits if subset == 'easy' else words}?", answer=answer,
                metadata={"hint_tiers": hints, "subset": subset})


def make_tasks() -> tuple[list[Task], list[Task]]:
    """(easy, hard): the problems of ``examples/grpo_curve.py`` (one-digit operands, one or two of
    them, half and half), in digits (easy) and in words (hard), each with a Planning hint that
    restates it in digits. The 10 one-operand problems are listed 30 times each so that, drawn
    uniformly, they are half of the draws, as in ``Arithmetic-v0`` with ``num_operands=(1, 2)``."""
    easy, hard = [], []
    for subset, out in (("easy", easy), ("hard", hard)):
        out.extend(_task(subset, (a,), None) for _ in range(30) for a in range(10))
        out.extend(_task(subset, (a, b), op) for a in range(10) for op in ("+", "-", "*") for b in range(10))
    return easy, hard


def hint_expert(chat: list[Any]) -> str:
    """Expert reply to an easy question (hinted or not): the answer in ``\\boxed{}``."""
    return arithmetic_expert(chat)


def warm_up(model: Any, tokenizer: Any, seed: int, steps: int, examples: int, lr: float, out: Path) -> None:
    """SFT on expert answers to easy problems only, half of them with the hint in the prompt."""
    from plyground.inference.scripted import scripted_backend

    easy, _ = make_tasks()
    specs = [EpisodeSpec(seed=seed * 1_000_003 + 500_000 + i, episode=i, options={"hint_level": i % 2})
             for i in range(examples)]
    trajs = collect_sync(lambda: plyground.make(ENV_ID, tasks=easy), scripted_backend(hint_expert, tokenizer), specs,
                         RolloutConfig(track_tokens=True, concurrency=8))
    data = out / "expert.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in trajs if t.success))
    config = SFTConfig(model="tiny", data_path=str(data), seed=seed, total_steps=steps, batch_size=16,
                       micro_batch_size=16, lr=lr, warmup_steps=min(2, steps), out_dir=str(out / "sft"))
    trainer = SFTTrainer(config, model=model, tokenizer=tokenizer)
    for _ in range(steps):
        trainer.train_step()


def method_trainer(method: str, seed: int, steps: int, out: Path, model: Any, tokenizer: Any,
                   args: argparse.Namespace) -> GRPOTrainer:
    easy, hard = make_tasks()
    common: dict[str, Any] = dict(
        model="tiny", seed=seed, out_dir=str(out / method), env_id=ENV_ID, env_kwargs={"tasks": easy + hard},
        tasks_per_step=args.tasks_per_step, group_size=args.group_size, max_tokens=8, temperature=1.0,
        total_steps=steps, micro_batch_size=64, lr=args.lr, loss_agg="token", drop_zero_variance=True, beta=0.0,
        concurrency=64,
    )
    if method == "grpo":
        return GRPOTrainer(GRPOConfig(**common, eps_high=0.28), model=model, tokenizer=tokenizer)
    if method == "guide":
        cfg = GuideConfig(**common, first_hint_level=1, max_hint_level=1, mode="replace")
        return GuideTrainer(cfg, model=model, tokenizer=tokenizer)
    cfg_s = ScafGRPOConfig(**common, eps_high=0.28, warmup_frac=0.15, hint_samples=args.scaf_hint_samples,
                           replace="first")
    return ScafGRPOTrainer(cfg_s, model=model, tokenizer=tokenizer)


def subset_success(model: Any, tokenizer: Any, episodes: int, seed: int) -> dict[str, float]:
    """Unhinted sampled (T = 1) success on held-out env seeds, per subset."""
    easy, hard = make_tasks()
    out = {}
    for name, tasks in (("easy", easy), ("hard", hard)):
        rate, _ = evaluate(model, tokenizer, episodes, 1.0, 8, env_id=ENV_ID, env_kwargs={"tasks": tasks},
                           seed_base=EVAL_SEED_BASE, sample_seed=seed)
        out[name] = rate
    return out


KEYS = ("env/zero_reward_group_frac", "env/zero_variance_group_frac", "env/success_rate",
        "guide/zero_reward_group_frac_unhinted", "scaf/zero_reward_group_frac_unhinted", "guide/hinted_frac",
        "scaf/hinted_frac", "scaf/replaced_groups", "scaf/guidance_active")


def run_seed(seed: int, args: argparse.Namespace, methods: tuple[str, ...] = METHODS) -> dict[str, Any]:
    out = args.out / f"seed{seed}"
    base, tokenizer = small_model(seed, args.hidden_size, args.num_layers)
    t0 = time.perf_counter()
    warm_up(base, tokenizer, seed, args.sft_steps, args.sft_examples, args.sft_lr, out)
    result: dict[str, Any] = {"seed": seed, "warm": subset_success(base, tokenizer, args.eval_episodes, seed)}
    print(f"seed {seed} warmed up ({time.perf_counter() - t0:.0f} s): unhinted success {result['warm']}", flush=True)
    for method in methods:
        model = copy.deepcopy(base)
        trainer = method_trainer(method, seed, args.steps, out, model, tokenizer, args)
        rows = []
        for step in range(1, args.steps + 1):
            m = trainer.train_step()
            rows.append({"step": step, **{k: float(m[k]) for k in KEYS if k in m}})
        final = subset_success(model, tokenizer, args.eval_episodes, seed)
        zero = [r["env/zero_reward_group_frac"] for r in rows]
        print(f"seed {seed} {method}: mean zero-reward group frac {sum(zero) / len(zero):.3f}, "
              f"unhinted success after {final} ({time.perf_counter() - t0:.0f} s)", flush=True)
        result[method] = {"steps": rows, "final": final}
    return result


def summarise(runs: list[dict[str, Any]], methods: tuple[str, ...], steps: int) -> dict[str, Any]:
    """Per method: the mean over seeds of the zero-reward fraction at each step, and over steps after
    Scaf-GRPO's guidance-free warm-up (where all three methods can differ)."""
    first = max(1, int(-(-0.15 * steps // 1)))  # ceil(0.15 * steps): Scaf-GRPO gives hints from this step on
    out: dict[str, Any] = {"after_step": first}
    for method in methods:
        per_step = [sum(r[method]["steps"][i]["env/zero_reward_group_frac"] for r in runs) / len(runs) for i in range(steps)]
        after = [[s["env/zero_reward_group_frac"] for s in r[method]["steps"][first:]] for r in runs]
        seed_means = [sum(a) / len(a) for a in after]
        out[method] = {
            "per_step": per_step,
            "mean_after_warmup": sum(seed_means) / len(seed_means),
            "seed_means_after_warmup": seed_means,
            "final_unhinted_easy": sum(r[method]["final"]["easy"] for r in runs) / len(runs),
            "final_unhinted_hard": sum(r[method]["final"]["hard"] for r in runs) / len(runs),
        }
    out["warm_unhinted_easy"] = sum(r["warm"]["easy"] for r in runs) / len(runs)
    out["warm_unhinted_hard"] = sum(r["warm"]["hard"] for r in runs) / len(runs)
    return out


def table(result: dict[str, Any]) -> str:
    """Markdown: per method, the zero-reward fraction of the groups entering the update (after
    Scaf-GRPO's warm-up), per seed and mean; the unhinted fraction; unhinted success after training."""
    summary, first = result["summary"], result["summary"]["after_step"]
    lines = [f"| method | zero-reward groups entering the update, steps {first + 1}-{result['steps']}, mean | per seed | "
             "zero-reward groups before hints (unhinted) | unhinted success after (easy / hard) |",
             "|---|---:|---|---:|---|"]
    for method in result["methods"]:
        s = summary[method]
        key = {"guide": "guide/zero_reward_group_frac_unhinted",
               "scaf-grpo": "scaf/zero_reward_group_frac_unhinted"}.get(method, "env/zero_reward_group_frac")
        unhinted = [st.get(key, st["env/zero_reward_group_frac"]) for r in result["runs"] for st in r[method]["steps"][first:]]
        lines.append(f"| {method} | {s['mean_after_warmup']:.3f} | {', '.join(f'{x:.3f}' for x in s['seed_means_after_warmup'])} | "
                     f"{sum(unhinted) / max(len(unhinted), 1):.3f} | {s['final_unhinted_easy']:.3f} / {s['final_unhinted_hard']:.3f} |")
    lines.append(f"| (after the SFT warm-up) | | | | {summary['warm_unhinted_easy']:.3f} / {summary['warm_unhinted_hard']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"grpo": "tab:gray", "guide": "tab:blue", "scaf-grpo": "tab:orange"}
    fig, ax = plt.subplots(figsize=(7.5, 4))
    steps = list(range(1, result["steps"] + 1))
    for method in result["methods"]:
        for run in result["runs"]:
            ax.plot(steps, [s["env/zero_reward_group_frac"] for s in run[method]["steps"]], color=colors[method],
                    alpha=0.25, lw=0.8)
        ax.plot(steps, result["summary"][method]["per_step"], color=colors[method], lw=2.2,
                label=f"{method} (mean of {len(result['runs'])} seeds)")
    ax.axvline(result["summary"]["after_step"] + 0.5, color="k", ls=":", lw=0.8)
    ax.text(result["summary"]["after_step"] + 0.7, 0.02, "Scaf-GRPO hints on", fontsize=8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("zero-reward groups entering the update")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("MathHints-v0, easy (digits) + hard (words) problems; small model + SFT warm-up", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--tasks-per-step", type=int, default=8)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--scaf-hint-samples", type=int, default=4)
    p.add_argument("--sft-steps", type=int, default=60)
    p.add_argument("--sft-examples", type=int, default=256)
    p.add_argument("--sft-lr", type=float, default=3e-3)
    p.add_argument("--eval-episodes", type=int, default=64)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/hint_zero_groups"))
    p.add_argument("--plot", type=Path, default=None)
    p.add_argument("--table", type=Path, default=None, help="also write the summary table (markdown) here")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="combine the runs of these zero_groups.json files (e.g. one per seed) and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.merge:
        parts = [json.loads(path.read_text()) for path in args.merge]
        result = {**parts[0], "runs": [run for part in parts for run in part["runs"]]}
        methods = tuple(result["methods"])
        result["summary"] = summarise(result["runs"], methods, result["steps"])
    else:
        methods = tuple(args.methods)
        runs = [run_seed(seed, args, methods) for seed in args.seeds]
        result = {"env_id": ENV_ID, "steps": args.steps, "methods": list(methods), "args": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "runs": runs, "summary": summarise(runs, methods, args.steps)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "zero_groups.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.plot is not None:
        plot(result, args.plot)
    if args.table is not None:
        args.table.write_text(table(result))
    for method in methods:
        s = result["summary"][method]
        print(f"{method}: zero-reward group frac after warm-up {s['mean_after_warmup']:.3f} "
              f"(seeds {', '.join(f'{x:.3f}' for x in s['seed_means_after_warmup'])})")
    return result


if __name__ == "__main__":
    main()
