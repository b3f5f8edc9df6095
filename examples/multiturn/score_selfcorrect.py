"""Must-show B: SCoRe on an arithmetic self-correction task (``MathSelfCorrect-v0``).

Task: the additions ``a + b`` with ``a, b`` in 1..``--max-operand`` (25 problems by default), two
attempts per episode (the env's SCoRe correction prompt between them), reward = exact match of the
boxed answer.

Starting policy: a small Llama (SmolLM2's tokenizer compacted to the few hundred tokens this task
uses, see :func:`task_corpus`) after SFT on a scripted "base model" that answers right half of the
time (else off by one) and, on the second attempt, copies its first answer half of the time and
answers afresh otherwise. So the start has Acc@t1 ~ Acc@t2 ~ 0.5 and Delta(t1, t2) ~ 0: it has no
self-correction ability, and half of its first attempts are wrong, which leaves room to correct.

For each seed, two runs from that start with the same budget: SCoRe with ``alpha = 10`` (Stage I
then Stage II) and the ablation ``alpha = 0`` (Stage II's bonus off). Every ``--eval-every`` steps
the policy is evaluated on every problem x ``--eval-samples`` sampled episodes (temperature 1, a
fixed sampling seed): Acc@t1, Acc@t2, Delta(t1,t2), Delta i->c, Delta c->i and the edit-distance
ratio of the two attempts (0 = the second attempt copies the first), each with its standard error
over the episodes.

Run from the repository root (about 30 minutes on the shared 2-core CPU box; the commands behind
each figure are in docs/results/score_selfcorrect.md)::

    OMP_NUM_THREADS=1 .venv/bin/python examples/multiturn/score_selfcorrect.py
    OMP_NUM_THREADS=1 .venv/bin/python examples/multiturn/score_selfcorrect.py --no-scale-rewards \
        --name score_selfcorrect_noscale

The alpha = 0 collapse (configuration I of the results page, where it shows: 7 seeds, 31 minutes)
keeps the default start and puts the bonus in the episode's return, at alpha = 1::

    OMP_NUM_THREADS=1 .venv/bin/python examples/multiturn/score_selfcorrect.py --quick \
        --out runs/multiturn/score_v6 --no-scale-rewards --turn1-credit shaped_return --steps 160 \
        --stage1-steps 20 --alphas 1 0 --seeds 0 1 2 3 4 5 6 --name score_selfcorrect_collapse_I

Earlier collapse experiments (configurations E-H) started instead from an
*editing* base model (``--start rewrite``: :func:`rewrite_chat_policy`, whose second attempt rewrites
in another form 70% of the time), so there is copying behaviour to collapse into or not, and gives
the first attempt the episode's return (``--turn1-credit return``)::

    OMP_NUM_THREADS=1 .venv/bin/python examples/multiturn/score_selfcorrect.py --quick \
        --out runs/multiturn/score_v5 --start rewrite --p-copy 0.3 --max-tokens 16 --no-scale-rewards \
        --turn1-credit return --steps 160 --stage1-steps 20 --name score_selfcorrect_collapse_F

Writes ``docs/results/<name>.{json,png}`` (``--quick``: under ``--out``); the JSON is rewritten after
every run, so an interrupted sweep keeps what it finished. ``--merge A.json B.json`` joins results
of the same configuration on other seeds into one JSON/PNG without training.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import math
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
METRICS = ("acc_t1", "acc_t2", "delta_t1_t2", "delta_i_to_c", "delta_c_to_i", "edit_ratio", "edit_ratio_t1_wrong",
           "copy_rate")


def addition_tasks(max_operand: int = 5) -> list[Task]:
    n = range(1, max_operand + 1)
    return [Task(id=f"add-{a}-{b}", prompt=f"What is {a} + {b}?", answer=str(a + b)) for a in n for b in n]


def _read_chat(chat: Sequence[Message], call: int, salt: int) -> tuple[random.Random, int, int, list[str]]:
    """A scripted policy's view of a chat: its random stream, the problem's operands, the replies so
    far. The stream is seeded by the call index too, so the same problem gets different answers in
    different episodes (the data is played one episode at a time, so this is reproducible)."""
    rng = random.Random(zlib.crc32("\x00".join(m.content for m in chat).encode()) + 7919 * call + salt)
    found = _Q.search(chat[1].content if len(chat) > 1 else chat[0].content)
    assert found is not None, chat
    replies = [m.content for m in chat if m.role == "assistant"]
    return rng, int(found.group(1)), int(found.group(2)), replies


def base_chat_policy(p_correct: float = 0.5, p_copy: float = 0.5, salt: int = 0) -> Any:
    """The scripted "base model": right with ``p_correct`` (else off by one); on the second
    attempt, a copy of the first with ``p_copy``, else a fresh answer."""

    def answer(rng: random.Random, a: int, b: int) -> int:
        return a + b if rng.random() < p_correct else a + b + rng.choice((-1, 1))

    calls = itertools.count()

    def policy(chat: Sequence[Message]) -> str:
        rng, a, b, replies = _read_chat(chat, next(calls), salt)
        if replies and rng.random() < p_copy:
            return replies[-1]
        return f"\\boxed{{{answer(rng, a, b)}}}"

    return policy


def rewrite_chat_policy(
    p_correct: float = 0.5, p_copy: float = 0.3, salt: int = 0, p_rewrite_correct: float | None = None
) -> Any:
    """An editing "base model" (the start of configuration D): each attempt is either the short
    ``\\boxed{c}`` or the worked ``a + b = \\boxed{c}`` form (half each on attempt 1), right with
    ``p_correct`` (else off by one). On the second attempt it copies the first with ``p_copy``; else
    it rewrites: the other form with a fresh answer. So at the start the second attempt edits
    (an edit-distance ratio near 0.5 for a rewrite) and copying is the minority, unlike
    :func:`base_chat_policy`, whose answers are all ``\\boxed{c}`` (a changed answer is a ratio of
    0.1), so there is a visible copying behaviour for Stage II to collapse into or not.
    ``p_rewrite_correct`` (default ``p_correct``): how often a rewrite's fresh answer is right; below
    ``p_correct`` the rewrites are worse than first attempts (Acc@t2 < Acc@t1, c->i > i->c, like the
    paper's base model), which makes copying the safer second attempt."""

    calls = itertools.count()

    def render(long: bool, a: int, b: int, c: int) -> str:
        return f"{a} + {b} = \\boxed{{{c}}}" if long else f"\\boxed{{{c}}}"

    def policy(chat: Sequence[Message]) -> str:
        rng, a, b, replies = _read_chat(chat, next(calls), salt)
        p = p_correct if not replies or p_rewrite_correct is None else p_rewrite_correct
        c = a + b if rng.random() < p else a + b + rng.choice((-1, 1))
        if not replies:
            return render(rng.random() < 0.5, a, b, c)
        if rng.random() < p_copy:
            return replies[-1]
        return render("=" not in replies[-1], a, b, c)

    return policy


def start_policy(args: argparse.Namespace, salt: int = 0) -> Any:
    """The scripted base model ``--start`` names (``copy``: :func:`base_chat_policy`; ``rewrite``:
    :func:`rewrite_chat_policy` with ``--p-copy``)."""
    if getattr(args, "start", "copy") == "rewrite":
        return rewrite_chat_policy(p_copy=args.p_copy, salt=salt, p_rewrite_correct=args.p_rewrite_correct)
    return base_chat_policy(salt=salt)


def task_corpus(tasks: list[Task], base: Any = None) -> list[str]:
    """Every text the policy reads and writes: base-model episodes on every problem (chat template,
    default system prompt, correction prompt and outcome lines included, rendered by the full
    SmolLM2 tokenizer, then decoded), and every boxed answer 0..2 * max + 2."""
    import plyground
    from plyground.inference.models import default_tokenizer
    from plyground.inference.scripted import scripted_backend
    from plyground.rollout.collector import EpisodeSpec, RolloutConfig, collect_sync

    tok = default_tokenizer()
    top = max(int(t.answer) for t in tasks) + 2
    texts = [f"\\boxed{{{n}}}{tok.eos_token}" for n in range(top + 1)]
    if base is not None:  # the worked form of every answer too (the default start's vocabulary is unchanged)
        texts += [f"{t.prompt.removeprefix('What is ').removesuffix('?')} = \\boxed{{{n}}}{tok.eos_token}"
                  for t in tasks for n in range(top + 1)]
    specs = [EpisodeSpec(seed=i, episode=i, options={"task": t}) for i, t in enumerate(tasks * 4)]
    trajs = collect_sync(
        lambda: plyground.make(ENV_ID, tasks=tasks), scripted_backend(base or base_chat_policy(salt=99), tok), specs,
        RolloutConfig(track_tokens=True, concurrency=1),
    )
    texts += [tok.decode(t.tokens.token_ids) for t in trajs if t.tokens is not None]
    return texts


def episode_values(trajs: Sequence[Any]) -> dict[str, list[float]]:
    """Per-episode values of the metrics (their means are the metrics, their spread the SEs)."""
    from plyground.trainers.score import attempt_scores, edit_ratio

    out: dict[str, list[float]] = {k: [] for k in METRICS}
    for t in trajs:
        r1, r2 = attempt_scores(t)
        c1, c2 = r1 > 0.5, r2 > 0.5
        out["acc_t1"].append(float(c1))
        out["acc_t2"].append(float(c2))
        out["delta_t1_t2"].append(float(c2) - float(c1))
        out["delta_i_to_c"].append(float(c2 and not c1))
        out["delta_c_to_i"].append(float(c1 and not c2))
        ratio = edit_ratio(t.turns[0].action, t.turns[1].action) if len(t.turns) >= 2 else 0.0
        out["edit_ratio"].append(ratio)
        # Over the episodes whose first attempt is wrong only: does the second attempt change it?
        # (Unlike the plain ratio, this does not fall just because more first attempts are right.)
        if not c1:
            out["edit_ratio_t1_wrong"].append(ratio)
        # The exact copy (the collapsed second attempt) as a fraction of the episodes.
        out["copy_rate"].append(float(len(t.turns) >= 2 and t.turns[0].action.strip() == t.turns[1].action.strip()))
    return out


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    m = sum(values) / max(n, 1)
    var = sum((v - m) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return m, math.sqrt(var / max(n, 1))


def selfcorrect_eval(
    model: Any, tok: Any, tasks: list[Task], samples: int, seed: int, max_tokens: int = 8
) -> dict[str, float]:
    """Every problem x ``samples`` episodes at temperature 1: each metric and its SE (``*_se``)."""
    from plyground.rollout.collector import EpisodeSpec

    was_training = model.training
    specs = [EpisodeSpec(seed=seed, episode=i * samples + j, sample=j, options={"task": t})
             for i, t in enumerate(tasks) for j in range(samples)]
    trajs = evaluate(model, tok, ENV_ID, {"tasks": tasks}, specs, temperature=1.0, max_tokens=max_tokens, seed=seed)
    model.train(was_training)
    row: dict[str, float] = {"episodes": float(len(trajs))}
    for k, vals in episode_values(trajs).items():
        row[k], row[f"{k}_se"] = mean_se(vals)
    return row


class PeriodicEval:
    """``on_update`` hook: the full evaluation every ``every`` optimizer steps."""

    def __init__(self, tok: Any, tasks: list[Task], samples: int, every: int, max_tokens: int = 8) -> None:
        self.tok, self.tasks, self.samples, self.every = tok, tasks, samples, every
        self.max_tokens = max_tokens
        self.rows: list[dict[str, float]] = []

    def __call__(self, trainer: Any) -> None:
        if self.every > 0 and trainer.step % self.every == 0:
            row = selfcorrect_eval(trainer.model, self.tok, self.tasks, self.samples, seed=7, max_tokens=self.max_tokens)
            self.rows.append({"step": float(trainer.step)} | row)
            print(f"  step {trainer.step}: " + " ".join(f"{k} {row[k]:+.3f}" for k in METRICS), flush=True)


def train_alpha(alpha: float, seed: int, model: Any, tok: Any, tasks: list[Task], args: argparse.Namespace) -> dict[str, Any]:
    """One SCoRe run from the warm start: its rollout curve, evaluation curve and final evaluation."""
    from plyground.trainers.score import SCoReConfig, SCoReTrainer

    cfg = SCoReConfig(
        env_id=ENV_ID, env_kwargs={"tasks": tasks}, tasks_per_step=args.tasks_per_step, group_size=args.group_size,
        max_tokens=args.max_tokens, stage1_steps=args.stage1_steps, turn1_credit=args.turn1_credit, alpha=alpha, beta1=args.beta1, beta2=args.beta2,
        total_steps=args.steps, micro_batch_size=args.tasks_per_step * args.group_size, lr=args.lr, seed=seed,
        scale_rewards=not args.no_scale_rewards, mixed_precision="no", out_dir=str(Path(args.out) / f"seed{seed}_alpha{alpha:g}"),
    )
    policy = copy.deepcopy(model)
    evals = PeriodicEval(tok, tasks, args.eval_samples, args.eval_every, args.max_tokens)
    trainer = SCoReTrainer(cfg, model=policy, tokenizer=tok, on_update=[evals, Deadline(args.deadline)])
    t1 = time.time()
    try:
        trainer.train()
    except OutOfTime as stop:
        print(f"alpha {alpha:g} seed {seed}: {stop}", flush=True)
    history = trainer.logger.history if trainer.logger is not None else []
    curve = [{k.removeprefix("env/"): float(v) for k, v in h.items()
              if k.startswith("env/") or k in ("step", "charts/stage")} for h in history]
    if evals.rows and int(evals.rows[-1]["step"]) == trainer.step and args.final_samples == args.eval_samples:
        final = {k: v for k, v in evals.rows[-1].items() if k != "step"}
    else:
        final = selfcorrect_eval(policy, tok, tasks, args.final_samples, seed=11, max_tokens=args.max_tokens)
    wall = time.time() - t1
    print(f"alpha {alpha:g} seed {seed}", json.dumps({k: round(final[k], 4) for k in METRICS}),
          f"{wall:.0f} s, {trainer.step} steps", flush=True)
    return {"final": final, "curve": curve, "evals": evals.rows, "steps": trainer.step, "wall_s": wall}


def warm_policy(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """The shared starting policy: SFT on the scripted base model. Cached under ``--out``, keyed by
    the compact vocabulary's hash, the model size and the SFT budget (a warm start only loads into
    the model it was trained for)."""
    import torch

    tasks = addition_tasks(args.max_operand)
    corpus = task_corpus(tasks, start_policy(args, salt=99) if args.start != "copy" else None)
    model, tok = small_policy(seed=0, hidden=args.hidden, layers=args.layers, corpus=corpus)
    vocab = hashlib.sha1(json.dumps(sorted(tok.get_vocab().items())).encode()).hexdigest()[:10]
    key = (f"v{vocab}_h{args.hidden}_l{args.layers}_n{args.max_operand}"
           f"_sft{args.sft_steps}x{args.sft_episodes}_lr{args.sft_lr:g}")
    if args.start != "copy":
        key += f"_{args.start}{args.p_copy:g}"
        if args.p_rewrite_correct is not None:
            key += f"_fix{args.p_rewrite_correct:g}"
    cache = Path(args.out) / f"warm_{key}.pt"
    info = {"vocab_size": len(tok), "params": sum(p.numel() for p in model.parameters()), "cache": str(cache)}
    if cache.exists():
        model.load_state_dict(torch.load(cache))
        model.eval()
        return model, tok, info
    t0 = time.time()
    warm_start(model, tok, ENV_ID, {"tasks": tasks}, start_policy(args), episodes=args.sft_episodes,
               steps=args.sft_steps, lr=args.sft_lr, out_dir=str(Path(args.out) / f"sft_{key}"), batch_size=16)
    info["sft_wall_s"] = time.time() - t0
    model.cpu().eval()
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model, tok, info


def summarise(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per alpha: each final metric's mean over seeds and its SE across the seeds' values."""
    out: dict[str, dict[str, float]] = {}
    for alpha in sorted({r["alpha"] for r in runs.values()}, reverse=True):
        finals = [r["final"] for r in runs.values() if r["alpha"] == alpha]
        row: dict[str, float] = {"seeds": float(len(finals))}
        for k in METRICS:
            row[k], row[f"{k}_se_seeds"] = mean_se([f[k] for f in finals])
        out[f"{alpha:g}"] = row
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--alphas", type=float, nargs="+", default=[10.0, 0.0])
    ap.add_argument("--steps", type=int, default=80, help="optimizer steps per run (Stage I + Stage II)")
    ap.add_argument("--stage1-steps", type=int, default=20)
    ap.add_argument("--tasks-per-step", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--beta1", type=float, default=0.01)
    ap.add_argument("--beta2", type=float, default=0.1)
    ap.add_argument("--no-scale-rewards", action="store_true",
                    help="advantages = reward - group mean, not divided by the group std (alpha's scale then counts)")
    ap.add_argument("--turn1-credit", choices=("r1", "return", "shaped_return"), default="r1",
                    help="Stage II: what attempt 1 learns from: r1, r1 + r2 or r1 + r2' (SCoReConfig.turn1_credit)")
    ap.add_argument("--start", choices=("copy", "rewrite"), default="copy",
                    help="scripted base model of the warm start: copy (base_chat_policy) or rewrite (rewrite_chat_policy)")
    ap.add_argument("--p-copy", type=float, default=0.3, help="--start rewrite: probability the second attempt copies")
    ap.add_argument("--p-rewrite-correct", type=float, default=None,
                    help="--start rewrite: how often a rewrite's answer is right (default: as the first attempt's, 0.5)")
    ap.add_argument("--max-tokens", type=int, default=8, help="tokens per attempt (training and evaluation)")
    ap.add_argument("--max-operand", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--sft-steps", type=int, default=300)
    ap.add_argument("--sft-lr", type=float, default=3e-3)
    ap.add_argument("--sft-episodes", type=int, default=400)
    ap.add_argument("--eval-samples", type=int, default=8, help="sampled episodes per problem")
    ap.add_argument("--final-samples", type=int, default=16, help="sampled episodes per problem, final evaluation")
    ap.add_argument("--eval-every", type=int, default=20, help="full evaluation every N steps (0: at the end only)")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (a GPU box; 1 on a shared CPU)")
    ap.add_argument("--time-budget-s", type=float, default=None, help="stop each run after this long")
    ap.add_argument("--out", default="runs/multiturn/score_selfcorrect")
    ap.add_argument("--quick", action="store_true", help="write the JSON/PNG under --out, not docs/results")
    ap.add_argument("--name", default="score_selfcorrect", help="file name of the JSON/PNG")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="train nothing: join these results' runs (same start and config, other seeds) into "
                         "--name's JSON (with the summary over all seeds) and PNG")
    args = ap.parse_args(argv)
    if args.merge:
        return merge_results([Path(p) for p in args.merge], (Path(args.out) if args.quick else RESULTS) / args.name)
    set_threads()
    t0 = time.time()
    tasks = addition_tasks(args.max_operand)
    model, tok, info = warm_policy(args)
    print("warm start", json.dumps(info), flush=True)
    start = selfcorrect_eval(model, tok, tasks, args.eval_samples, seed=7, max_tokens=args.max_tokens)
    start_final = selfcorrect_eval(model, tok, tasks, args.final_samples, seed=11, max_tokens=args.max_tokens)
    print("start", json.dumps({k: round(start_final[k], 4) for k in METRICS}), f"{time.time() - t0:.0f} s", flush=True)
    dest = Path(args.out) if args.quick else RESULTS
    dest.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Any] = {}
    payload: dict[str, Any] = {}
    pairs = [(seed, alpha) for seed in args.seeds for alpha in args.alphas]

    def record(seed: int, alpha: float, result: dict[str, Any]) -> None:
        nonlocal payload
        runs[f"seed{seed}_alpha{alpha:g}"] = {"seed": seed, "alpha": alpha} | result
        config = {k: v for k, v in vars(args).items() if k != "deadline"}
        payload = {"config": config, "warm_start": info, "start": start, "start_final": start_final, "runs": runs,
                   "summary": summarise(runs), "wall_s": time.time() - t0}
        (dest / f"{args.name}.json").write_text(json.dumps(payload, indent=1) + "\n")
        plot(payload, dest / f"{args.name}.png")

    if args.jobs > 1:  # the warm start is cached by now, so each worker loads it
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [(seed, alpha, pool.submit(_worker, seed, alpha, vars(args))) for seed, alpha in pairs]
            for seed, alpha, fut in futures:
                record(seed, alpha, fut.result())
    else:
        for seed, alpha in pairs:
            args.deadline = time.time() + args.time_budget_s if args.time_budget_s else None
            record(seed, alpha, train_alpha(alpha, seed, model, tok, tasks, args))
    return payload


def merge_results(paths: list[Path], dest: Path) -> dict[str, Any]:
    """One result from several runs of the same configuration on other seeds: the first file's
    config and start evaluation, every file's runs, the summary over all of them."""
    payloads = [json.loads(p.read_text()) for p in paths]
    merged = dict(payloads[0])
    merged["runs"] = {k: v for p in payloads for k, v in p["runs"].items()}
    merged["summary"] = summarise(merged["runs"])
    merged["merged_from"] = [str(p) for p in paths]
    merged["wall_s"] = sum(p["wall_s"] for p in payloads)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.with_suffix(".json").write_text(json.dumps(merged, indent=1) + "\n")
    plot(merged, dest.with_suffix(".png"))
    return merged


def _worker(seed: int, alpha: float, arg_dict: dict[str, Any]) -> dict[str, Any]:
    """One (seed, alpha) run in a separate process (``--jobs``)."""
    set_threads()
    args = argparse.Namespace(**arg_dict)
    args.deadline = time.time() + args.time_budget_s if args.time_budget_s else None
    model, tok, _ = warm_policy(args)
    return train_alpha(alpha, seed, model, tok, addition_tasks(args.max_operand), args)


def plot(payload: dict[str, Any], path: Path) -> None:
    """Evaluation curves: each seed thin, the mean over seeds thick (with its SE across seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("delta_t1_t2", "Δ(t1,t2) = Acc@t2 − Acc@t1"), ("acc_t2", "Acc@t2 (solid), Acc@t1 (dashed)"),
              ("delta_i_to_c", "Δ i→c (solid), Δ c→i (dashed)"), ("edit_ratio", "edit-distance ratio t1 vs t2 (0 = copy)"),
              ("edit_ratio_t1_wrong", "edit ratio, episodes with a wrong attempt 1"),
              ("copy_rate", "exact copies: attempt 2 = attempt 1")]
    panels = [p for p in panels if p[0] in payload["start"]]  # older results lack the last metric
    second = {"acc_t2": "acc_t1", "delta_i_to_c": "delta_c_to_i"}
    cols = 3 if len(panels) > 5 else len(panels)
    rows_n = -(-len(panels) // cols)
    fig, grid = plt.subplots(rows_n, cols, figsize=(5 * cols, 4.2 * rows_n), squeeze=False)
    axes = list(grid.flat)
    colours = {"10": "tab:blue", "0": "tab:red"}
    start = {"step": 0.0} | payload["start"]
    for a in sorted({f"{r['alpha']:g}" for r in payload["runs"].values()}, key=float, reverse=True):
        runs = [r for r in payload["runs"].values() if f"{r['alpha']:g}" == a]
        colour = colours.get(a, "tab:gray")
        for ax, (key, _) in zip(axes, panels, strict=True):
            for k, ls in ((key, "-"), (second.get(key), "--")):
                if k is None or k not in start:
                    continue
                curves = [[start] + r["evals"] for r in runs]
                for rows in curves:
                    ax.plot([r["step"] for r in rows], [r[k] for r in rows], color=colour, alpha=0.25, lw=0.8, ls=ls)
                n = min(len(c) for c in curves)
                steps = [curves[0][i]["step"] for i in range(n)]
                stats = [mean_se([c[i][k] for c in curves]) for i in range(n)]
                label = f"alpha = {a} (mean of {len(runs)} seeds)" if ls == "-" else None
                ax.errorbar(steps, [m for m, _ in stats], yerr=[e for _, e in stats], color=colour, lw=2, ls=ls,
                            marker="o", ms=3, capsize=2, label=label)
    stage1 = payload["config"]["stage1_steps"]
    for ax, (_, title) in zip(axes, panels, strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.axvline(stage1, color="k", lw=0.6, ls=":")
        ax.grid(alpha=0.3)
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].legend(fontsize=8)
    title = "SCoRe on MathSelfCorrect (evaluation: every problem x samples at T = 1; dotted line: end of Stage I)"
    config = payload["config"]
    if config.get("start", "copy") != "copy":
        title += (f"\nstart: {config['start']} (p_copy {config['p_copy']:g}), turn-1 credit "
                  f"{config.get('turn1_credit', 'r1')}, {len(payload['runs']) // max(len(set(config['alphas'])), 1)} seed(s)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
