"""GRPO learning curve at CPU scale: a small model, warmed up by a short SFT run, then GRPO.

The tiny random model gets zero reward everywhere, so GRPO alone has no signal. This script first
behaviour-clones a scripted expert for a few steps (so the policy answers in the right format but
is right only now and then), then runs GRPO and measures success on **held-out env seeds** before
and during training, for several seeds:

1. model: a small ``LlamaForCausalLM`` from scratch (2 layers, hidden size 128, std-0.02 init),
   SmolLM2's tokenizer and chat template;
2. warm-up: ``SFTTrainer`` on ``--sft-examples`` expert answers (``\\boxed{N}``, computed from the
   question) for ``--sft-steps`` steps: enough for the answer format, not for the answers;
3. GRPO (``GRPOTrainer``, DAPO-style settings from ``configs/grpo_arithmetic_curve.yaml``) for
   ``--grpo-steps`` steps; every ``--eval-every`` steps, greedy and sampled (temperature 1) success
   on ``--eval-episodes`` env seeds that training never uses.

Task: ``Arithmetic-v0`` with one-digit operands, one or two of them (the env draws the count):
``What is 7?`` or ``What is 7 * 3?`` (op in ``+ - *``). Success is also reported per operand count.

    OMP_NUM_THREADS=1 .venv/bin/python examples/grpo_curve.py --seeds 0 1 2 --out runs/grpo_curve

writes ``runs/grpo_curve/curve.json``; ``--plot docs/results/grpo_curve.png`` also draws it.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

import torch

import plyground
from plyground.inference.hf import HFBackend
from plyground.rollout.collector import EpisodeSpec, RolloutConfig, collect_sync
from plyground.trainers.core.loop import TrainConfig
from plyground.trainers.grpo import GRPOConfig, GRPOTrainer
from plyground.trainers.sft import SFTConfig, SFTTrainer, expert_trajectories
from plyground.types import Message, SamplingParams, Trajectory

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "grpo_arithmetic_curve.yaml"
ENV_ID = "Arithmetic-v0"
ENV_KWARGS: dict[str, Any] = {"digits": 1, "num_operands": [1, 2]}
# Held-out evaluation seeds: GRPO samples seeds ``seed * 1_000_003 + k`` (k < a few thousand) and
# the SFT expert plays seeds ``seed * 1_000_003 + 500_000 + k``, so these never coincide with either.
EVAL_SEED_BASE = 900_000_000
_QUESTION = re.compile(r"What is (-?\d+)(?: ([+\-*]) (-?\d+))?\?")


def arithmetic_expert(chat: list[Message]) -> str:
    """The expert's reply to a one- or two-operand Arithmetic question: the answer in ``\\boxed{}``."""
    question = next(m.content for m in reversed(chat) if m.role == "user")
    match = _QUESTION.search(question)
    if match is None:
        raise ValueError(f"not a one- or two-operand question: {question!r}")
    a, op = int(match.group(1)), match.group(2)
    if op is None:
        return f"\\boxed{{{a}}}"
    b = int(match.group(3))
    value = a + b if op == "+" else a - b if op == "-" else a * b
    return f"\\boxed{{{value}}}"


def small_model(seed: int, hidden_size: int = 128, num_layers: int = 2) -> tuple[Any, Any]:
    """A small randomly initialised Llama (SmolLM2 tokenizer and chat template) to train from scratch.

    Unlike ``tiny_model`` (made for tests: large init so its random outputs are peaked), this one
    has the usual init (std 0.02), which trains much better."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from plyground.inference.models import default_tokenizer

    tokenizer = default_tokenizer()
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        initializer_range=0.02, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=eos,
        pad_token_id=pad,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=eos, pad_token_id=pad)
    model.eval()
    return model, tokenizer


def by_operands(trajs: list[Trajectory]) -> dict[int, float]:
    """Success rate per operand count (read from the question: ``What is 7?`` or ``What is 7 * 3?``)."""
    groups: dict[int, list[bool]] = {}
    for t in trajs:
        match = _QUESTION.search(t.turns[0].observation) if t.turns else None
        if match is not None:
            groups.setdefault(1 if match.group(2) is None else 2, []).append(t.success)
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}


def load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    return data


def evaluate(
    model: Any, tokenizer: Any, episodes: int, temperature: float, max_tokens: int,
    env_id: str = ENV_ID, env_kwargs: dict[str, Any] | None = None, seed_base: int = EVAL_SEED_BASE,
    sample_seed: int = 0, reset_options: dict[str, Any] | None = None,
) -> tuple[float, list[Trajectory]]:
    """Success rate over ``episodes`` held-out env seeds (``temperature=0``: greedy)."""
    backend = HFBackend(model=model, tokenizer=tokenizer)
    specs = [
        EpisodeSpec(seed=seed_base + i, episode=i, sample=0, options=dict(reset_options or {}))
        for i in range(episodes)
    ]
    rollout = RolloutConfig(
        sampling=SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=sample_seed),
        concurrency=episodes, max_batch_size=64, track_tokens=False,
    )
    was_training = model.training
    model.eval()
    trajs = collect_sync(lambda: plyground.make(env_id, **(env_kwargs or ENV_KWARGS)), backend, specs, rollout)
    if was_training:
        model.train()
    return sum(t.success for t in trajs) / max(len(trajs), 1), trajs


def warm_up(model: Any, tokenizer: Any, seed: int, steps: int, examples: int, lr: float, out: Path) -> list[dict[str, Any]]:
    """A short SFT run on the expert's answers: the model learns the format and a little more."""
    trajs = expert_trajectories(
        ENV_ID, arithmetic_expert, tokenizer, examples, seed=seed * 1_000_003 + 500_000, env_kwargs=ENV_KWARGS
    )
    data = out / "expert.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in trajs))
    config = SFTConfig(
        model="tiny", data_path=str(data), seed=seed, total_steps=steps, batch_size=16, micro_batch_size=16,
        lr=lr, warmup_steps=min(2, steps), out_dir=str(out / "sft"),
    )
    trainer = SFTTrainer(config, model=model, tokenizer=tokenizer)
    return [trainer.train_step() for _ in range(steps)]


def grpo_config(seed: int, out: Path, overrides: dict[str, Any]) -> GRPOConfig:
    values = load_yaml(DEFAULT_CONFIG)
    values.update(overrides)
    values.update(seed=seed, out_dir=str(out / "grpo"), model="tiny")
    known = set(GRPOConfig.__dataclass_fields__)
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown GRPOConfig fields: {sorted(unknown)}")
    return GRPOConfig(**values)


def run_seed(
    seed: int, args: argparse.Namespace, out: Path, overrides: dict[str, Any] | None = None, log: bool = True
) -> dict[str, Any]:
    """Warm-up then GRPO for one seed; success on held-out seeds every ``eval_every`` steps."""
    out = out / f"seed{seed}"
    model, tokenizer = small_model(seed, args.hidden_size, args.num_layers)
    t0 = time.perf_counter()
    sft_metrics = warm_up(model, tokenizer, seed, args.sft_steps, args.sft_examples, args.sft_lr, out)
    config = grpo_config(seed, out, {**(overrides or {}), "total_steps": max(args.grpo_steps, 1)})
    trainer = GRPOTrainer(config, model=model, tokenizer=tokenizer)
    points: list[dict[str, Any]] = []

    def measure(step: int) -> None:
        greedy, g_trajs = evaluate(model, tokenizer, args.eval_episodes, 0.0, config.max_tokens)
        sampled, s_trajs = evaluate(model, tokenizer, args.eval_episodes, 1.0, config.max_tokens, sample_seed=seed)
        point = {"step": step, "greedy_success": greedy, "sampled_success": sampled,
                 "elapsed_s": round(time.perf_counter() - t0, 1)}
        for name, trajs in (("greedy", g_trajs), ("sampled", s_trajs)):
            point.update({f"{name}_success_{k}op": v for k, v in by_operands(trajs).items()})
        points.append(point)
        if log:
            print(f"seed {seed} step {step:3d}: greedy {greedy:.3f} sampled {sampled:.3f} "
                  f"(one operand {point.get('sampled_success_1op', 0):.2f}, two {point.get('sampled_success_2op', 0):.2f}; "
                  f"{time.perf_counter() - t0:.0f} s)", flush=True)

    measure(0)
    train_metrics = []
    for step in range(1, args.grpo_steps + 1):
        m = trainer.train_step()
        train_metrics.append({"step": step, **{k: float(v) for k, v in m.items()}})
        if step % args.eval_every == 0 or step == args.grpo_steps:
            measure(step)
    return {
        "seed": seed,
        "sft_final_nll": float(sft_metrics[-1]["losses/nll"]) if sft_metrics else None,
        "eval": points,
        "train": train_metrics,
        "grpo_config": {k: v for k, v in config.to_dict().items() if k not in set(TrainConfig.__dataclass_fields__) - {"lr", "total_steps", "micro_batch_size"}},
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, key, title in ((axes[0], "greedy_success", "greedy"), (axes[1], "sampled_success", "sampled, T = 1")):
        for run in result["runs"]:
            steps = [p["step"] for p in run["eval"]]
            ax.plot(steps, [p[key] for p in run["eval"]], marker="o", ms=3, alpha=0.7, label=f"seed {run['seed']}")
        mean = result["mean"]
        ax.plot(mean["step"], mean[key], color="black", lw=2.2, label="mean")
        ax.set_title(f"held-out success ({title})")
        ax.set_xlabel("GRPO step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"success on {result['eval_episodes']} held-out seeds")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"GRPO on {ENV_ID} (1-digit, 1-2 operands), small model from scratch + {result['sft_steps']} SFT steps", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(result: dict[str, Any]) -> str:
    """Markdown: held-out success per seed at each evaluation (greedy / sampled, and per operand count)."""
    lines = ["| seed | GRPO step | greedy | sampled (T = 1) | sampled, one operand | sampled, two operands |",
             "|---:|---:|---:|---:|---:|---:|"]
    for run in result["runs"]:
        for p in run["eval"]:
            lines.append(f"| {run['seed']} | {p['step']} | {p['greedy_success']:.3f} | {p['sampled_success']:.3f} | "
                         f"{p.get('sampled_success_1op', float('nan')):.3f} | {p.get('sampled_success_2op', float('nan')):.3f} |")
    m = result["mean"]
    for i, step in enumerate(m["step"]):
        lines.append(f"| mean | {step} | {m['greedy_success'][i]:.3f} | {m['sampled_success'][i]:.3f} | | |")
    return "\n".join(lines) + "\n"


def mean_curve(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    steps = [p["step"] for p in runs[0]["eval"]]
    out: dict[str, list[float]] = {"step": steps}
    for key in ("greedy_success", "sampled_success"):
        out[key] = [sum(r["eval"][i][key] for r in runs) / len(runs) for i in range(len(steps))]
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sft-steps", type=int, default=60)
    p.add_argument("--sft-examples", type=int, default=256)
    p.add_argument("--sft-lr", type=float, default=3e-3)
    p.add_argument("--grpo-steps", type=int, default=40)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--eval-episodes", type=int, default=128)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a GRPOConfig field")
    p.add_argument("--out", type=Path, default=Path("runs/grpo_curve"))
    p.add_argument("--plot", type=Path, default=None)
    p.add_argument("--table", type=Path, default=None, help="also write the success table (markdown) here")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="combine the runs of these curve.json files (e.g. one per seed, run in parallel) and exit")
    return p.parse_args(argv)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.merge:
        parts = [json.loads(path.read_text()) for path in args.merge]
        result = {**parts[0], "runs": [run for part in parts for run in part["runs"]]}
        result["mean"] = mean_curve(result["runs"])
        return finish(result, args)
    overrides = parse_overrides(args.set)
    runs = [run_seed(seed, args, args.out, overrides) for seed in args.seeds]
    result = {
        "env_id": ENV_ID, "env_kwargs": ENV_KWARGS, "sft_steps": args.sft_steps, "sft_examples": args.sft_examples,
        "grpo_steps": args.grpo_steps, "eval_episodes": args.eval_episodes, "hidden_size": args.hidden_size,
        "num_layers": args.num_layers, "overrides": overrides, "runs": runs, "mean": mean_curve(runs),
    }
    return finish(result, args)


def finish(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "curve.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.plot is not None:
        plot(result, args.plot)
    if args.table is not None:
        args.table.write_text(table(result))
    m = result["mean"]
    print(f"mean greedy success: {m['greedy_success'][0]:.3f} -> {m['greedy_success'][-1]:.3f}; "
          f"sampled: {m['sampled_success'][0]:.3f} -> {m['sampled_success'][-1]:.3f}")
    return result


if __name__ == "__main__":
    main()
