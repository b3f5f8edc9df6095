"""One GRPO optimizer step: plyground's ``GRPOTrainer`` against TRL's ``GRPOTrainer``, in one run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/grpo_step_vs_trl.py [--model tiny|default] \
        [--prompts 4] [--group 8] [--length 16] [--steps 4] [--warmup 1] [--device cpu|cuda]

Both trainers start from the same weights and do the same work per step:

- the same prompts: ``Arithmetic-v0`` (1-digit a op b) questions of the env seeds plyground's
  trainer plays, as the same chat (system = the env's instructions, user = the question); TRL gets
  them as a conversational dataset in that order (``shuffle_dataset=False``);
- ``--prompts`` prompts x ``--group`` completions per step, generated in one batch by both (plyground's
  sampling backend is given ``max_batch_size = prompts x group``, TRL's generation batch is the step's
  batch), temperature 1, top-p 1, no top-k;
- exactly ``--length`` new tokens per completion: EOS is ignored in plyground's sampler (its
  end-of-turn set is emptied) and suppressed in TRL's (``min_new_tokens = max_completion_length``);
  the token counts are checked after the run;
- the reward is the correct/incorrect verdict of plyground's ``NumericVerifier`` (the env's, inside
  plyground's step; a reward function for TRL);
- the update: one optimizer step per generation batch (``num_iterations = 1``), one micro-batch of
  the whole batch, PPO-clip 0.2, token-level (DAPO) loss, group-std-scaled advantages, no KL
  (``beta = 0``), AdamW, lr 1e-6, gradient clipping at 1.0, fp32.

A step is timed from its start to the end of its optimizer step (TRL: ``on_step_begin`` to
``on_step_end``, which spans generation, reward, loss, backward and ``optimizer.step``); the first
``--warmup`` steps of each are not counted. The trainers run one after the other, ``--rounds``
times in alternating order, and the median step time of each is reported with the ratio.
Results: ``benchmarks/results/grpo_step_vs_trl.{json,md}`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

import plyground
from plyground.trainers.grpo import GRPOConfig, GRPOTrainer
from plyground.types import Task
from plyground.verifiers.numeric import NumericVerifier

ENV_ID = "Arithmetic-v0"
ENV_KWARGS: dict[str, Any] = {"digits": 1, "num_operands": 2}
LR = 1e-6
SEED = 0


def plyground_config(args: argparse.Namespace, out_dir: str) -> GRPOConfig:
    return GRPOConfig(
        model=args.model, out_dir=out_dir, seed=SEED, device=args.device, env_id=ENV_ID, env_kwargs=ENV_KWARGS,
        tasks_per_step=args.prompts, group_size=args.group, max_tokens=args.length, temperature=1.0, top_p=1.0,
        concurrency=args.prompts * args.group, total_steps=args.warmup + args.steps,
        micro_batch_size=args.prompts * args.group, lr=LR, loss_agg="token", eps_low=0.2, eps_high=0.2,
        scale_rewards=True, drop_zero_variance=False, beta=0.0, num_iterations=1, max_grad_norm=1.0,
        mixed_precision="no",
    )


def step_prompts(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The chats plyground's trainer poses, in its order: rollout r plays env seeds
    ``seed * 1_000_003 + r * prompts + i`` (see ``GRPOTrainer.sample``)."""
    rows = []
    env = plyground.make(ENV_ID, **ENV_KWARGS)
    for r in range(args.warmup + args.steps):
        for i in range(args.prompts):
            obs, info = env.reset(seed=SEED * 1_000_003 + r * args.prompts + i)
            rows.append({
                "prompt": [{"role": "system", "content": env.instructions}, {"role": "user", "content": obs}],
                "task": json.dumps(info["task"]),
            })
    env.close()
    return rows


def run_plyground(model: Any, tokenizer: Any, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        trainer = GRPOTrainer(plyground_config(args, tmp), model=model, tokenizer=tokenizer)
        # The same generation batch as TRL (the whole step at once), and a fixed completion length:
        # no end-of-turn token stops a row, so every completion is exactly ``length`` tokens.
        trainer.backend.max_batch_size = args.prompts * args.group
        trainer.backend.eos_token_ids = set()
        times, cpu, tokens = [], [], []
        for _ in range(args.warmup + args.steps):
            start, start_cpu = time.perf_counter(), time.process_time()
            metrics = trainer.train_step()
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            tokens.append(float(metrics["charts/tokens"]))
    return {"step_s": times[args.warmup:], "step_cpu_s": cpu[args.warmup:], "completion_tokens_per_step": tokens,
            "torch_threads": torch.get_num_threads()}


def run_trl(model: Any, tokenizer: Any, args: argparse.Namespace) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer as TRLTrainer

    verifier = NumericVerifier()

    def correct(completions: list[Any], task: list[str], **_: Any) -> list[float]:
        out = []
        for completion, record in zip(completions, task, strict=True):
            text = completion[-1]["content"] if isinstance(completion, list) else str(completion)
            out.append(float(verifier.verify(Task.from_dict(json.loads(record)), text).score))
        return out

    class StepTimer(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.start = self.start_cpu = 0.0
            self.times: list[float] = []
            self.cpu: list[float] = []
            self.threads: set[int] = set()

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.start, self.start_cpu = time.perf_counter(), time.process_time()
            self.threads.add(torch.get_num_threads())

        def on_step_end(self, *a: Any, **k: Any) -> None:
            if torch.cuda.is_available() and args.device != "cpu":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.start)
            self.cpu.append(time.process_time() - self.start_cpu)

    timer = StepTimer()
    batch = args.prompts * args.group
    with tempfile.TemporaryDirectory() as tmp:
        config = TRLConfig(
            output_dir=tmp, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
            num_generations=args.group, steps_per_generation=1, num_iterations=1,
            max_completion_length=args.length, generation_kwargs={"min_new_tokens": args.length},
            temperature=1.0, top_p=1.0, top_k=0, learning_rate=LR, lr_scheduler_type="constant",
            warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, beta=0.0, epsilon=0.2, loss_type="dapo",
            scale_rewards="group", max_steps=args.warmup + args.steps, use_vllm=False, bf16=False, fp16=False,
            use_cpu=args.device == "cpu", report_to="none", save_strategy="no", logging_steps=1,
            shuffle_dataset=False, seed=SEED, dataloader_num_workers=0, disable_dropout=True,
            log_completions=False,
        )
        trainer = TRLTrainer(
            model=model, reward_funcs=correct, args=config, train_dataset=Dataset.from_list(step_prompts(args)),
            processing_class=tokenizer, callbacks=[timer],
        )
        trainer.train()
        lengths = [float(h["completions/mean_length"]) for h in trainer.state.log_history if "completions/mean_length" in h]
    return {"step_s": timer.times[args.warmup:], "step_cpu_s": timer.cpu[args.warmup:],
            "completion_mean_length": lengths, "torch_threads": sorted(timer.threads)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny", help="tiny (random, 2 layers) or default (SmolLM2-135M-Instruct)")
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--length", type=int, default=16, help="new tokens per completion (fixed)")
    p.add_argument("--steps", type=int, default=4, help="timed steps per trainer per round")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--rounds", type=int, default=2, help="rounds, alternating which trainer goes first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "grpo_step_vs_trl")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import transformers
    import trl

    from plyground.inference.models import load_model

    base, tokenizer = load_model(args.model)
    base = base.float()
    runs: dict[str, list[dict[str, Any]]] = {"plyground": [], "trl": []}
    for r in range(args.rounds):
        order = ["plyground", "trl"] if r % 2 == 0 else ["trl", "plyground"]
        for name in order:
            model = copy.deepcopy(base)  # both start from the same weights in every round
            fn = run_plyground if name == "plyground" else run_trl
            res = fn(model, copy.deepcopy(tokenizer), args)
            runs[name].append(res)
            print(f"round {r} {name}: median {statistics.median(res['step_s']):.3f} s/step, "
                  f"{statistics.median(res['step_cpu_s']):.3f} CPU s/step "
                  f"({', '.join(f'{t:.2f}' for t in res['step_s'])})", flush=True)
            del model
    expect = float(args.prompts * args.group * args.length)
    ply_tokens = [t for run in runs["plyground"] for t in run["completion_tokens_per_step"]]
    trl_lengths = [t for run in runs["trl"] for t in run["completion_mean_length"]]
    if any(t != expect for t in ply_tokens) or any(abs(x - args.length) > 1e-6 for x in trl_lengths):
        raise RuntimeError(f"completion lengths differ from {args.length}: plyground {ply_tokens}, trl {trl_lengths}")
    ply = statistics.median(t for run in runs["plyground"] for t in run["step_s"])
    ref = statistics.median(t for run in runs["trl"] for t in run["step_s"])
    ply_cpu = statistics.median(t for run in runs["plyground"] for t in run["step_cpu_s"])
    ref_cpu = statistics.median(t for run in runs["trl"] for t in run["step_cpu_s"])
    device = args.device if args.device == "cpu" else torch.cuda.get_device_name(0)
    result = {
        "model": args.model, "params": sum(p.numel() for p in base.parameters()), "env_id": ENV_ID,
        "prompts": args.prompts, "group": args.group, "completion_tokens": args.length,
        "timed_steps_per_round": args.steps, "warmup_steps": args.warmup, "rounds": args.rounds,
        "device": device, "threads": args.threads, "cpu": platform.processor() or platform.machine(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
        "plyground_median_step_s": ply, "trl_median_step_s": ref, "trl_over_plyground": ref / ply,
        "plyground_median_step_cpu_s": ply_cpu, "trl_median_step_cpu_s": ref_cpu,
        "trl_over_plyground_cpu": ref_cpu / ply_cpu,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    key = f"{args.model}_{'cpu' if args.device == 'cpu' else 'cuda'}"
    json_path = args.out.with_suffix(".json")
    existing = json.loads(json_path.read_text()) if json_path.exists() else {}
    existing[key] = result
    json_path.write_text(json.dumps(existing, indent=1) + "\n")
    write_markdown(existing, args.out.with_suffix(".md"))
    print(f"plyground {ply:.3f} s/step, TRL {ref:.3f} s/step: TRL / plyground = {ref / ply:.2f}x")
    return result


def write_markdown(results: dict[str, dict[str, Any]], path: Path) -> None:
    lines = [
        "# One GRPO step: plyground vs TRL",
        "",
        "Generated by `benchmarks/grpo_step_vs_trl.py` (see its docstring for what is matched). Each row is one",
        "run of both trainers in the same process; compare the ratio, not the absolute times.",
        "",
        "Wall: median seconds per step. CPU: median process CPU seconds per step (all threads; on a",
        "shared machine the steadier of the two).",
        "",
        "| model | device | prompts x group | new tokens | plyground s/step | TRL s/step | TRL / plyground (wall) |"
        " plyground CPU s/step | TRL CPU s/step | TRL / plyground (CPU) | command |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key in sorted(results):
        r = results[key]
        dev = "cpu" if r["device"] == "cpu" else "cuda"
        cmd = (f"`OMP_NUM_THREADS={r['threads']} .venv/bin/python benchmarks/grpo_step_vs_trl.py --model {r['model']} "
               f"--device {dev} --prompts {r['prompts']} --group {r['group']} --length {r['completion_tokens']} "
               f"--steps {r['timed_steps_per_round']} --rounds {r['rounds']} --threads {r['threads']}`")
        lines.append(
            f"| {r['model']} ({r['params'] / 1e6:.1f} M) | {r['device']}"
            f"{' (' + str(r['threads']) + ' thread)' if r['device'] == 'cpu' else ''} | {r['prompts']} x {r['group']} | "
            f"{r['completion_tokens']} | {r['plyground_median_step_s']:.3f} | {r['trl_median_step_s']:.3f} | "
            f"{r['trl_over_plyground']:.2f}x | {r['plyground_median_step_cpu_s']:.3f} | {r['trl_median_step_cpu_s']:.3f} | "
            f"{r['trl_over_plyground_cpu']:.2f}x | {cmd} |"
        )
    versions = next(iter(results.values()))["versions"]
    lines += [
        "", f"Versions: torch {versions['torch']}, transformers {versions['transformers']}, trl {versions['trl']}.", "",
        "Where TRL's time goes (a cProfile of one TRL step of the tiny-model CPU configuration, run once by hand):",
        "most of it is the loss's per-token log-probabilities, computed by TRL's chunked (tiled) log-softmax",
        "over the 49k-token vocabulary (`trl/kernels/chunked_logprob.py`, forward and backward), a path made",
        "to save GPU memory; generation is a small part. plyground computes them as the gathered logit minus",
        "`logsumexp` over the full logits (`plyground/trainers/core/logprobs.py`) and reuses the sampler's",
        "log-probabilities as the old policy's. On a GPU, or with a larger model whose body outweighs its",
        "vocabulary projection, the ratio may differ: this row says nothing about those.", "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
