"""Must-show A: ArCHer vs turn-level REINFORCE on Maze (U maze), equal env steps, several seeds.

Both trainers start from the same warm-started small policy (a 2-layer, 64-wide Llama whose
tokenizer is SmolLM2's cut down to the maze's texts by ``compact_tokenizer``: 478 tokens instead of
49,152; SFT on a noisy maze expert that plays a random move half of the time), sample
``--episodes`` episodes per rollout batch with the same sampler and seeds, and take
``--actor-epochs`` actor steps per batch. ArCHer's first ``--warmup-iters`` rollout batches train
only its critic (warm-up), so it is charged those env steps without an actor update; after every
batch its critic takes ``--critic-steps`` steps on replay-buffer samples. With ``--actor-states
replay`` (the reference ArCHer) its actor takes ``--archer-actor-steps`` steps per batch, each on
``--actor-batch`` states sampled from the replay buffer with fresh actions of the current policy
(no env steps); with ``rollout`` it trains on the latest batch's turns, as REINFORCE does. The curves are the rollout batches' own
statistics (the episodes each step trained on: the sampling policy's performance, no extra env
steps), against cumulative env steps (turns played).

Run from the repository root; on the shared 2-core CPU box one rollout batch of 16 episodes took
5-10 s for REINFORCE and 11-30 s for ArCHer (its critic steps), so split the runs over processes
with ``--methods`` and join them with ``--merge``::

    OMP_NUM_THREADS=1 .venv/bin/python examples/multiturn/archer_vs_reinforce.py --methods archer \
        --steps 32 --episodes 16 --lr 1e-3 --critic-steps 50 --critic-context turn --tag A --quick
    OMP_NUM_THREADS=1 .venv/bin/python examples/multiturn/archer_vs_reinforce.py --methods reinforce \
        --steps 32 --episodes 16 --lr 1e-3 --tag R --quick
    .venv/bin/python examples/multiturn/archer_vs_reinforce.py --merge \
        runs/multiturn/archer_vs_reinforce/archer_vs_reinforce_{A,R}.json --tag e16_lr1e-3

Writes ``docs/results/archer_vs_reinforce[_TAG].{json,png}`` (``--quick``: under ``--out`` instead).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
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
    evaluate,
    noisy_chat_policy,
    set_threads,
    small_policy,
    warm_start,
)

ENV_ID = "Maze-v0"
TWENTYQ_ID = "TwentyQuestions-v0"


def env_id(args: argparse.Namespace) -> str:
    """The env of ``--env``: the U maze, or Twenty Questions with the rule-based oracle."""
    return TWENTYQ_ID if getattr(args, "env", "maze") == "twentyq" else ENV_ID


def horizon(args: argparse.Namespace) -> int:
    """Turns of a failed episode: the maze's move limit or the questions allowed."""
    return args.max_questions if getattr(args, "env", "maze") == "twentyq" else args.max_steps


def twentyq_objects(count: int) -> list[dict[str, Any]]:
    """``count`` objects of the shipped table, a fixed sample (so every run and seed plays the same
    game): a smaller table keeps the game learnable by a small policy at CPU scale."""
    import random

    from plyground.envs.lmrl.twenty_questions import builtin_objects

    return random.Random(0).sample([dict(o) for o in builtin_objects()], count)


def twentyq_corpus(objects: list[dict[str, Any]], max_questions: int) -> list[str]:
    """Every text a Twenty Questions policy reads and writes: the solver's question bank, a guess of
    every object, and episodes (chat template included) of the solver with 0%, 50% and 100% random
    questions."""
    import plyground
    from plyground.envs.lmrl.twenty_questions import TwentyQuestionsSolver
    from plyground.inference.models import default_tokenizer
    from plyground.inference.scripted import scripted_backend
    from plyground.rollout.collector import RolloutConfig, collect_sync, episode_specs

    tok = default_tokenizer()
    solver = TwentyQuestionsSolver(objects)
    questions = twentyq_questions(solver)
    texts = [f"{q}{tok.eos_token}" for q in questions]
    for eps in (0.0, 0.5, 1.0):
        policy = noisy_chat_policy(solver.act, questions, eps=eps, salt=7)
        trajs = collect_sync(
            lambda: plyground.make(TWENTYQ_ID, objects=objects, max_questions=max_questions), scripted_backend(policy, tok),
            episode_specs(24, base_seed=50_000), RolloutConfig(track_tokens=True, concurrency=1),
        )
        texts += [tok.decode(t.tokens.token_ids) for t in trajs if t.tokens is not None]
    return texts


def twentyq_questions(solver: Any) -> list[str]:
    """The noisy expert's random choices: every bank question and a guess of every object."""
    return [*solver.bank, *(solver._guess(i) for i in range(len(solver.objects)))]
TRACE_KEYS = ("critic/advantage_raw_mean", "critic/advantage_std", "critic/q_mean", "critic/v_mean", "losses/critic",
              "losses/entropy", "losses/clipfrac")


def maze_corpus(max_steps: int) -> list[str]:
    """Every text the maze policy must read and write: the episodes (as the model sees them, chat
    template and default system prompt included) of the expert and of a random walker from every
    start cell, and the four moves. Rendered with the full SmolLM2 tokenizer, then decoded."""
    import plyground
    from plyground.envs.lmrl.maze import MOVES, U_MAZE, MazeExpert
    from plyground.inference.models import default_tokenizer
    from plyground.inference.scripted import scripted_backend
    from plyground.rollout.collector import RolloutConfig, collect_sync, episode_specs

    tok = default_tokenizer()
    expert = MazeExpert(layout=U_MAZE)
    texts = [f"{m}{tok.eos_token}" for m in MOVES]
    for eps in (0.0, 0.5, 1.0):
        policy = noisy_chat_policy(expert.act, list(MOVES), eps=eps, salt=7)
        trajs = collect_sync(
            lambda: plyground.make(ENV_ID, maze="umaze", max_steps=max_steps), scripted_backend(policy, tok),
            episode_specs(24, base_seed=50_000), RolloutConfig(track_tokens=True, concurrency=1),
        )
        texts += [tok.decode(t.tokens.token_ids) for t in trajs if t.tokens is not None]
    return texts


def maze_warm_policy(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """The shared starting policy (cached under the out folder: SFT is the slow part). The cache
    key holds the vocabulary's hash and the model's size: a warm start only loads into the model
    it was trained for. ``--env twentyq``: the same for Twenty Questions over ``--objects`` objects,
    SFT on the scripted solver with ``--eps`` random questions."""
    import hashlib

    import torch

    from plyground.envs.lmrl.maze import MOVES, U_MAZE, MazeExpert
    from plyground.envs.lmrl.twenty_questions import TwentyQuestionsSolver

    twentyq = getattr(args, "env", "maze") == "twentyq"
    if twentyq:
        objects = twentyq_objects(args.objects)
        env_kwargs: dict[str, Any] = {"objects": objects, "max_questions": args.max_questions}
        corpus = twentyq_corpus(objects, args.max_questions)
    else:
        env_kwargs = {"maze": "umaze", "max_steps": args.max_steps}
        corpus = maze_corpus(args.max_steps)
    pretrained = getattr(args, "policy_model", None)
    if pretrained:
        # A pretrained policy (the paper's setting: a GPT-2 actor), e.g. the embedded SmolLM2
        # ("default"); sensible on a GPU. Its own tokenizer: no compact vocabulary.
        from plyground.inference.models import load_model

        model, tok = load_model(pretrained)
        size = "_" + re.sub(r"[^\w.-]+", "-", pretrained)
    else:
        model, tok = small_policy(seed=0, hidden=args.hidden, layers=args.layers, corpus=corpus)
        size = f"_h{args.hidden}_l{args.layers}"
    vocab = hashlib.sha1(json.dumps(sorted(tok.get_vocab().items())).encode()).hexdigest()[:10]
    game = f"_20q{args.objects}x{args.max_questions}" if twentyq else f"_ms{args.max_steps}"
    cache = Path(args.out) / f"warm_v{len(tok)}-{vocab}{size}_eps{args.eps}_steps{args.sft_steps}{game}.pt"
    if cache.exists():
        model.load_state_dict(torch.load(cache))
        return model, tok, env_kwargs
    if twentyq:
        solver = TwentyQuestionsSolver(env_kwargs["objects"])
        policy = noisy_chat_policy(solver.act, twentyq_questions(solver), eps=args.eps)
    else:
        policy = noisy_chat_policy(MazeExpert(layout=U_MAZE).act, list(MOVES), eps=args.eps)
    warm_start(model, tok, env_id(args), env_kwargs, policy, episodes=48, steps=args.sft_steps, lr=3e-3,
               out_dir=str(Path(args.out) / ("sft_20q" if twentyq else "sft")))
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model, tok, env_kwargs


def run_one(method: str, seed: int, model: Any, tok: Any, env_kwargs: dict[str, Any], args: argparse.Namespace) -> list[dict[str, float]]:
    from plyground.trainers.archer import ArCHerConfig, ArCHerTrainer
    from plyground.trainers.baselines import ReinforceConfig, ReinforceTrainer

    # ArCHer's replay actor takes --archer-actor-steps steps per rollout batch, each on fresh buffer
    # states; REINFORCE (and ArCHer's rollout actor) take --actor-epochs steps on the rollout batch.
    replay = method == "archer" and getattr(args, "actor_states", "rollout") == "replay"
    actor_steps = (getattr(args, "archer_actor_steps", None) or args.actor_epochs) if replay else args.actor_epochs
    common = dict(
        env_id=env_id(args), env_kwargs=env_kwargs, tasks_per_step=args.episodes, group_size=1, max_tokens=getattr(args, "max_tokens", 5),
        temperature=1.0, total_steps=args.steps * actor_steps, lr=args.lr, num_iterations=actor_steps,
        concurrency=args.episodes, micro_batch_size=min(args.episodes, 8), seed=seed,
        gamma=args.gamma, entropy_coef=getattr(args, "entropy_coef", 0.0), mixed_precision="no", out_dir=str(Path(args.out) / (args.tag or "default") / f"{method}_lr{args.lr:g}_seed{seed}"),
    )
    log = EpisodeLog(horizon=horizon(args) + 1)
    trace = MetricTrace(TRACE_KEYS)
    hooks = [log, trace, Deadline(args.deadline)]
    trainer: Any
    if method == "archer":
        cfg = ArCHerConfig(
            **common, warmup_iters=getattr(args, "warmup_iters", 1), critic_steps=args.critic_steps, center_advantages=bool(args.center), critic_batch=32,
            critic_context=args.critic_context, critic_lr=1e-3, tau=0.1,
            critic=critic_spec(args),
            actor_states=getattr(args, "actor_states", "rollout"), actor_batch=getattr(args, "actor_batch", 32),
            v_target_actions=getattr(args, "v_target", "buffer"),
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
    for row, extra in zip(log.rows, trace.rows, strict=False):
        row.update(extra)
    return log.rows


class MetricTrace:
    """``on_update`` hook: the trainer's ``keys`` metrics at the last actor step of each rollout
    batch (one row per batch, aligned with :class:`EpisodeLog`'s rows)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.rows: list[dict[str, float]] = []
        self._seen: int | None = None

    def __call__(self, trainer: Any) -> None:
        row = {k: float(trainer.step_metrics[k]) for k in self.keys if k in trainer.step_metrics}
        if trainer.rollout_index == self._seen and self.rows:
            self.rows[-1].update(row)  # a later actor epoch on the same batch
            return
        self._seen = trainer.rollout_index
        self.rows.append(row)


def _worker(method: str, seed: int, arg_dict: dict[str, Any]) -> list[dict[str, float]]:
    set_threads()
    args = argparse.Namespace(**arg_dict)
    model, tok, env_kwargs = maze_warm_policy(args)
    return run_one(method, seed, model, tok, env_kwargs, args)


def curve_at(rows: list[dict[str, float]], at: float, window: float, key: str = "turns_mean") -> float:
    """Episode-weighted mean of ``key`` over the batches whose cumulative env steps fall in
    ``(at - window, at]`` (the last batch at or before ``at`` when none does)."""
    inside = [r for r in rows if at - window < r["env_steps"] <= at] or [r for r in rows if r["env_steps"] <= at][-1:]
    weight = sum(r["episodes"] for r in inside)
    return sum(r[key] * r["episodes"] for r in inside) / max(weight, 1.0)


def auc(rows: list[dict[str, float]], budget: float, key: str = "turns_mean") -> float:
    """Mean of ``key`` over env steps 0..``budget``: each batch's value counts for the env steps
    it played (the area under the curve divided by the budget; lower turns = fewer turns sooner)."""
    area, prev = 0.0, 0.0
    for r in rows:
        end = min(r["env_steps"], budget)
        if end > prev:
            area += r[key] * (end - prev)
            prev = end
    return area / max(prev, 1.0)


def _stats(values: list[float]) -> dict[str, float]:
    n = len(values)
    mean = sum(values) / max(n, 1)
    std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return {"mean": mean, "std": std, "se": std / max(n, 1) ** 0.5, "n": float(n)}


def summarise(runs: dict[str, dict[int, list[dict[str, float]]]], checkpoints: int = 4) -> dict[str, Any]:
    """Per method, over seeds, at a common budget of env steps (the smallest total any run reached,
    so runs are compared at equal env steps): mean turns at ``checkpoints`` evenly spaced env-step
    counts (each the mean over the batches of the preceding eighth of the budget, about 4-5
    batches), the AUC, and the per-seed paired difference ArCHer - REINFORCE (a seed's two runs
    start from the same weights and sampling seed)."""
    budget = min(rows[-1]["env_steps"] for by_seed in runs.values() for rows in by_seed.values())
    window = budget / 8
    points = [round(budget * (k + 1) / checkpoints) for k in range(checkpoints)]
    out: dict[str, Any] = {"common_env_steps": budget, "checkpoints": points, "window_env_steps": window}
    per: dict[str, dict[str, dict[int, float]]] = {}
    for method, by_seed in runs.items():
        per[method] = {"start": {s: curve_at(rows, rows[0]["env_steps"], 1.0) for s, rows in by_seed.items()},
                       "auc": {s: auc(rows, budget) for s, rows in by_seed.items()}}
        for c in points:
            per[method][f"turns@{c}"] = {s: curve_at(rows, c, window) for s, rows in by_seed.items()}
            per[method][f"success@{c}"] = {s: curve_at(rows, c, window, "success_rate") for s, rows in by_seed.items()}
        out[method] = {k: {**_stats(list(v.values())), "per_seed": v} for k, v in per[method].items()}
        out[method]["batches_within_budget"] = {s: sum(r["env_steps"] <= budget for r in rows) for s, rows in by_seed.items()}
    if {"archer", "reinforce"} <= set(per):
        seeds = sorted(set(per["archer"]["auc"]) & set(per["reinforce"]["auc"]))
        out["paired_archer_minus_reinforce"] = {
            key: _stats([per["archer"][key][s] - per["reinforce"][key][s] for s in seeds])
            for key in ["auc"] + [f"turns@{c}" for c in points]
        }
    return out


def plot(runs: dict[str, dict[int, list[dict[str, float]]]], path: Path, title: str, budget: float | None = None) -> None:
    """Mean turns and success rate per rollout batch against cumulative env steps: thin lines per
    seed (3-batch moving average), thick line the mean of the seeds (interpolated on a common grid)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    colors = {"archer": "tab:blue", "reinforce": "tab:orange"}
    names = {"archer": "ArCHer", "reinforce": "turn-level REINFORCE"}
    end = budget or min(rows[-1]["env_steps"] for by_seed in runs.values() for rows in by_seed.values())
    for method, by_seed in runs.items():
        for k, key in enumerate(("turns_mean", "success_rate")):
            start = max(rows[0]["env_steps"] for rows in by_seed.values())
            grid = np.linspace(start, end, 100)
            curves = []
            for rows in by_seed.values():
                xs = [r["env_steps"] for r in rows]
                ys = _smooth([r[key] for r in rows], 3)
                axes[k].plot(xs, ys, color=colors[method], alpha=0.35, lw=0.8)
                curves.append(np.interp(grid, xs, ys))
            axes[k].plot(grid, np.mean(curves, axis=0), color=colors[method], lw=2.5,
                         label=f"{names[method]} (mean of {len(curves)} seeds)")
    axes[0].set_ylabel("mean turns per episode (failure = horizon)")
    axes[1].set_ylabel("success rate of the rollout batch")
    for ax in axes:
        ax.axvline(end, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("cumulative env steps (turns played)")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
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
    ap.add_argument("--env", default="maze", choices=["maze", "twentyq"],
                    help="the game: the U maze, or Twenty Questions with the rule-based oracle (the paper's task)")
    ap.add_argument("--max-steps", type=int, default=8, help="maze moves before the episode fails")
    ap.add_argument("--objects", type=int, default=8, help="--env twentyq: objects in the game (a fixed sample of the table)")
    ap.add_argument("--max-questions", type=int, default=10, help="--env twentyq: questions before the episode fails")
    ap.add_argument("--eps", type=float, default=0.5, help="random-move rate of the warm-start data")
    ap.add_argument("--sft-steps", type=int, default=60)
    ap.add_argument("--hidden", type=int, default=64, help="policy width")
    ap.add_argument("--layers", type=int, default=2, help="policy layers")
    ap.add_argument("--policy-model", default=None,
                    help="a pretrained policy instead of the small one (default = the embedded SmolLM2, tiny, a "
                    "folder); its own tokenizer; meant for a GPU")
    ap.add_argument("--max-tokens", type=int, default=5,
                    help="tokens per reply (2 = exactly 'move <dir>': the env reads the last move in a reply, so "
                    "longer replies of an exploring policy carry junk that changes which move is played)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--gamma", type=float, default=0.95)
    ap.add_argument("--critic-steps", type=int, default=20)
    ap.add_argument("--critic-context", default="observation", choices=["observation", "turn"],
                    help="ArCHer: the critic's state text (the observation, or prefixed with the turn number)")
    ap.add_argument("--critic-encoder", default="transformer", choices=["transformer", "policy"],
                    help="ArCHer: the critic's encoder, trained from scratch (transformer) or a copy of the warm-started "
                    "policy's backbone (policy; the reference's critic is a pretrained RoBERTa)")
    ap.add_argument("--actor-epochs", type=int, default=1, help="actor steps per rollout batch (both methods; PPO clip)")
    ap.add_argument("--entropy-coef", type=float, default=0.0,
                    help="entropy bonus coefficient (both methods; ArCHer: not during its critic-only warm-up)")
    ap.add_argument("--center", type=int, default=1, help="ArCHer: centre the actor advantages (1) or not (0)")
    ap.add_argument("--actor-states", default="rollout", choices=["rollout", "replay"],
                    help="ArCHer: the actor trains on the latest rollout (rollout) or on states sampled from the "
                    "replay buffer with fresh actions of the current policy (replay, the reference)")
    ap.add_argument("--warmup-iters", type=int, default=1,
                    help="ArCHer: rollout batches of critic-only training before the actor moves (their env steps count)")
    ap.add_argument("--actor-batch", type=int, default=32, help="ArCHer replay actor: buffer states per actor step")
    ap.add_argument("--archer-actor-steps", type=int, default=None,
                    help="ArCHer replay actor: actor steps per rollout batch (default --actor-epochs)")
    ap.add_argument("--v-target", default="buffer", choices=["buffer", "policy"],
                    help="ArCHer: a_pi of the V target, the buffer's action or one sampled from the current policy")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("--out", default="runs/multiturn/archer_vs_reinforce")
    ap.add_argument("--quick", action="store_true", help="write the JSON/PNG under --out, not docs/results")
    ap.add_argument("--time-budget-s", type=float, default=None, help="stop every run after this long (curves so far kept)")
    ap.add_argument("--methods", nargs="+", default=["archer", "reinforce"], choices=["archer", "reinforce"])
    ap.add_argument("--merge", nargs="+", default=None,
                    help="no training: merge the runs of these result JSONs (same config but --methods/--seeds), "
                    "summarise and plot them into docs/results/archer_vs_reinforce[_TAG]")
    ap.add_argument("--eval-start", type=int, default=0,
                    help="no training: play this many episodes (T = 1, max-tokens 5) with the warm start and write "
                    "their statistics to --out/start_eval_sft<N>.json")
    ap.add_argument("--critic-check", type=int, default=0,
                    help="no actor training: train ArCHer's critic alone for this many rollout batches, then report how "
                    "often it ranks the expert's move first (--out/critic_check_sft<N>_tok<M>.json)")
    ap.add_argument("--from-metrics", nargs="+", default=None,
                    help="no training: rebuild the curves of trainer out folders (METHOD:SEED:DIR, one actor step per "
                    "batch) from their metrics.jsonl, for a run whose process was stopped before it wrote its JSON")
    args = ap.parse_args(argv)
    if args.from_metrics:
        runs_in: dict[str, dict[int, list[dict[str, float]]]] = {}
        for item in args.from_metrics:
            method, seed, folder = item.split(":", 2)
            runs_in.setdefault(method, {})[int(seed)] = rows_from_metrics(Path(folder))
        payload = {"config": {**vars(args), "rebuilt_from": args.from_metrics}, "summary": summarise(runs_in), "runs": runs_in}
        dest = Path(args.out) if args.quick else RESULTS
        name = "archer_vs_reinforce" + (f"_{args.tag}" if args.tag else "")
        (dest / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")
        plot(runs_in, dest / f"{name}.png", _title(vars(args)) + " (rebuilt from metrics.jsonl)")
        print(json.dumps(payload["summary"], indent=1))
        print(markdown_table(payload["summary"]))
        return payload
    if args.eval_start:
        return eval_start(args)
    if args.critic_check:
        return critic_check(args)
    if args.merge:
        return merge(args.merge, args.tag, Path(args.out) if args.quick else RESULTS)
    args.deadline = time.time() + args.time_budget_s if args.time_budget_s else None
    set_threads()
    model, tok, env_kwargs = maze_warm_policy(args)
    runs: dict[str, dict[int, list[dict[str, float]]]] = {m: {} for m in args.methods}
    jobs = [(method, seed) for seed in args.seeds for method in args.methods]
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
    summary = summarise(runs)
    dest = Path(args.out) if args.quick else RESULTS
    dest.mkdir(parents=True, exist_ok=True)
    payload = {"config": vars(args), "summary": summary, "runs": runs}
    name = "archer_vs_reinforce" + (f"_{args.tag}" if args.tag else "")
    (dest / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    plot(runs, dest / f"{name}.png", _title(vars(args)))
    print(json.dumps(summary, indent=1))
    return payload


def merge(paths: list[str], tag: str, dest: Path = RESULTS) -> dict[str, Any]:
    """Merge result JSONs of runs split across processes (by ``--methods``/``--seeds``) that share
    every other setting, then summarise and plot them."""
    payloads = [json.loads(Path(p).read_text()) for p in paths]
    for payload in payloads:  # results from before --env was added are maze runs
        payload["config"] = {"env": "maze", "objects": 8, "max_questions": 10, **payload["config"]}
    # Settings that do not change a run (bookkeeping), that only ArCHer reads, or the run length
    # (the summary compares at the env steps all runs reached) may differ.
    ignore = {"methods", "seeds", "tag", "out", "quick", "deadline", "time_budget_s", "jobs", "merge", "replot",
              "critic_context", "steps", "eval_start", "from_metrics", "actor_states", "actor_batch",
              "archer_actor_steps", "v_target", "center", "critic_steps", "lr", "warmup_iters", "critic_check",
              "entropy_coef", "actor_epochs", "critic_encoder"}
    base = {k: v for k, v in payloads[0]["config"].items() if k not in ignore}
    runs: dict[str, dict[int, list[dict[str, float]]]] = {}
    for p, payload in zip(paths, payloads, strict=True):
        other = {k: v for k, v in payload["config"].items() if k not in ignore}
        if other != base:
            raise ValueError(f"{p}: a different config: {set(other.items()) ^ set(base.items())}")
        for method, by_seed in payload["runs"].items():
            runs.setdefault(method, {}).update({int(s): rows for s, rows in by_seed.items()})
    # Each method may run at its own (tuned) learning rate and ArCHer settings: recorded per method.
    by_method = {m: p["config"] for p in payloads for m in p["runs"]}
    config = {**base, "seeds": sorted({s for by in runs.values() for s in by}), "merged_from": paths,
              "configs": [p["config"] for p in payloads], "lr_by_method": {m: c["lr"] for m, c in by_method.items()},
              "entropy_coef_by_method": {m: c.get("entropy_coef", 0.0) for m, c in by_method.items()}}
    summary = summarise(runs)
    name = "archer_vs_reinforce" + (f"_{tag}" if tag else "")
    dest.mkdir(parents=True, exist_ok=True)
    out = {"config": config, "summary": summary, "runs": runs}
    (dest / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    plot(runs, dest / f"{name}.png", _title(config))
    print(json.dumps(summary, indent=1))
    print(markdown_table(summary))
    return out


def rows_from_metrics(folder: Path) -> list[dict[str, float]]:
    """:class:`EpisodeLog` rows (plus the critic trace) rebuilt from a trainer's ``metrics.jsonl``
    (one actor step per rollout batch): the same batch statistics, logged by the trainer itself."""
    cfg = json.loads((folder / "config.json").read_text())
    if int(cfg.get("num_iterations", 1)) != 1:
        raise ValueError(f"{folder}: rebuilding needs one actor step per batch")
    episodes = float(cfg["tasks_per_step"] * cfg["group_size"])
    rows, env_steps = [], 0.0
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        env_steps += round(m["env/turns_mean"] * episodes)
        row = {"step": float(m["step"]), "env_steps": env_steps, "episodes": episodes,
               "success_rate": m["env/success_rate"], "turns_mean": m["env/turns_mean"],
               "turns_to_success": m.get("env/turns_to_success", float("nan")), "reward_mean": m["env/reward_mean"]}
        row.update({k: m[k] for k in TRACE_KEYS if k in m})
        rows.append(row)
    return rows


def eval_start(args: argparse.Namespace) -> dict[str, Any]:
    """The starting policy's mean turns and success over ``--eval-start`` sampled episodes (the
    same sampling as training: T = 1, 5 tokens), with standard errors."""
    from plyground.rollout.collector import episode_specs

    set_threads()
    model, tok, env_kwargs = maze_warm_policy(args)
    trajs = evaluate(model, tok, env_id(args), env_kwargs, episode_specs(args.eval_start, base_seed=777_000),
                     temperature=1.0, max_tokens=args.max_tokens, seed=777)
    turns = [float(t.num_turns) for t in trajs]
    wins = [float(t.success) for t in trajs]
    out = {"episodes": len(trajs), "turns": _stats(turns), "success": _stats(wins)}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    name = f"start_eval_sft{args.sft_steps}" + ("" if args.max_tokens == 5 else f"_tok{args.max_tokens}")
    if getattr(args, "env", "maze") == "twentyq":
        name += f"_20q{args.objects}x{args.max_questions}"
    (Path(args.out) / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return out


def critic_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The critic's size and encoder: a 1-layer, 32-wide transformer trained from scratch, or
    (``--critic-encoder policy``) a copy of the warm-started policy's backbone."""
    # A Twenty Questions state is the whole transcript (up to ~150 tokens); a maze state is one line.
    max_length = 256 if getattr(args, "env", "maze") == "twentyq" else 64
    return {"dim": 32, "layers": 1, "heads": 4, "head_hidden": 64, "max_length": max_length,
            "encoder": getattr(args, "critic_encoder", "transformer")}


def critic_check(args: argparse.Namespace) -> dict[str, Any]:
    """Can ArCHer's critic rank moves? Train only the critic (the actor is off: warm-up longer than
    the run) for ``--critic-check`` rollout batches from the warm start, then, at the first state of
    40 episodes (turn 1 and, as if later, turn 4), score the four clean moves ``move up/down/left/right``
    with ``min Q - min V`` and count how often the expert's move is ranked first (chance: 0.25). Also
    reports the share of buffer actions that are exactly one clean move."""
    import plyground
    from plyground.envs.lmrl.maze import MOVES, U_MAZE, MazeExpert
    from plyground.trainers.archer import ArCHerConfig, ArCHerTrainer
    from plyground.trainers.core.critic import advantages, state_text

    if getattr(args, "env", "maze") != "maze":
        raise SystemExit("--critic-check scores maze moves: use it with --env maze")
    set_threads()
    model, tok, env_kwargs = maze_warm_policy(args)
    cfg = ArCHerConfig(
        env_id=ENV_ID, env_kwargs=env_kwargs, tasks_per_step=args.episodes, group_size=1, max_tokens=args.max_tokens,
        temperature=1.0, total_steps=args.critic_check, lr=1e-9, concurrency=args.episodes, micro_batch_size=8, seed=0,
        gamma=args.gamma, mixed_precision="no", out_dir=str(Path(args.out) / "critic_check"), live_table=False,
        warmup_iters=args.critic_check + 1, critic_steps=args.critic_steps, critic_batch=32, critic_context=args.critic_context,
        critic_lr=1e-3, tau=0.1, critic=critic_spec(args),
    )
    trainer = ArCHerTrainer(cfg, model=copy.deepcopy(model), tokenizer=tok)
    trainer.train()
    expert, env = MazeExpert(layout=U_MAZE), plyground.make(ENV_ID, **env_kwargs)
    moves = list(MOVES)
    hits, gaps = [], []
    for seed in range(40):
        obs, _ = env.reset(seed=seed)
        best = expert.act(obs)
        for turn in (0, 3):
            score = advantages(trainer.critic, tok, [state_text(obs, turn, args.critic_context)] * 4, moves)
            hits.append(float(moves[int(score.argmax())] == best))
            gaps.append(float(score[moves.index(best)]) - max(float(score[i]) for i in range(4) if moves[i] != best))
    out = {"rollout_batches": args.critic_check, "max_tokens": args.max_tokens, "sft_steps": args.sft_steps,
           "buffer": len(trainer.replay), "clean_move_share": sum(t.action in MOVES for t in trainer.replay.items) / len(trainer.replay),
           "expert_move_ranked_first": _stats(hits), "gap_expert_minus_best_other": _stats(gaps)}
    name = f"critic_check_sft{args.sft_steps}_tok{args.max_tokens}" + ("_policyenc" if args.critic_encoder == "policy" else "")
    (Path(args.out) / f"{name}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return out


def markdown_table(summary: dict[str, Any]) -> str:
    """The summary as a markdown table: mean turns ± std over seeds at each checkpoint, the AUC, and
    the paired difference ArCHer - REINFORCE (mean ± standard error over seeds)."""
    points = summary["checkpoints"]
    head = ["method", "first batch"] + [f"turns @ {c} env steps" for c in points] + ["AUC (mean turns)"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for method in ("archer", "reinforce"):
        if method not in summary:
            continue
        m = summary[method]
        cells = [method, f"{m['start']['mean']:.2f}"] + [
            f"{m[f'turns@{c}']['mean']:.2f} ± {m[f'turns@{c}']['std']:.2f}" for c in points
        ] + [f"{m['auc']['mean']:.2f} ± {m['auc']['std']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    paired = summary.get("paired_archer_minus_reinforce")
    if paired:
        cells = ["ArCHer - REINFORCE (paired, ± s.e.)", ""] + [
            f"{paired[f'turns@{c}']['mean']:+.2f} ± {paired[f'turns@{c}']['se']:.2f}" for c in points
        ] + [f"{paired['auc']['mean']:+.2f} ± {paired['auc']['se']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _title(cfg: dict[str, Any]) -> str:
    lrs = cfg.get("lr_by_method") or {"": cfg["lr"]}
    lr = ", ".join(f"{m} {v:g}".strip() for m, v in sorted(lrs.items())) if len(set(lrs.values())) > 1 else f"{next(iter(lrs.values())):g}"
    rep = next((c for c in cfg.get("configs", [cfg]) if c.get("actor_states") == "replay"), None)
    actor = (f"ArCHer replay actor {rep.get('archer_actor_steps') or rep.get('actor_epochs', 1)} x {rep.get('actor_batch', 32)} "
             f"buffer states per batch" if rep else f"{cfg.get('actor_epochs', 1)} actor step(s)/batch")
    ent = cfg.get("entropy_coef_by_method") or {"": cfg.get("entropy_coef", 0.0)}
    bonus = ", entropy bonus " + ", ".join(f"{m} {v:g}".strip() for m, v in sorted(ent.items())) if any(ent.values()) else ""
    game = (f"Twenty Questions ({cfg.get('objects')} objects, {cfg.get('max_questions')} questions)"
            if cfg.get("env", "maze") == "twentyq" else f"U maze ({cfg['max_steps']} moves)")
    return (f"{game}, {len(cfg['seeds'])} seeds, {cfg['episodes']} episodes/batch, "
            f"lr {lr}, {actor}{bonus}, warm start {cfg.get('sft_steps', 60)} SFT steps")


if __name__ == "__main__":
    main()
