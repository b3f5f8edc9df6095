"""Must-show D: one round of BFS-Prover expert iteration raises the Coq solve rate.

Tactic vocabulary: ``TACTICS``, 18 one-shot closers (``reflexivity``, ``intros; lia``,
``firstorder``, ``intros; induction n; simpl; auto``, ...). Problem pool: the theorems of the
project's graded Coq set (difficulty <= 4) that 1 to 3 of these tactics prove on their own (checked
once with ``coqtop``: ``Fail solve [ tactic ]`` for every theorem x tactic, cached), so a policy
that plays a random tactic rarely proves them and one that knows which tactic fits the goal does.
The pool is shuffled (``random.Random(0)``) and split into ``--train`` theorems, the ones the round
works on, and the rest, held out (never searched or trained on).

Starting policy, per seed: a small Llama (``--hidden`` x ``--layers``) over SmolLM2's tokenizer
compacted to the pool's text, SFT (``--sft-steps``) on episodes of a scripted prover that plays a
the tactics of ``TACTICS`` in turn whatever the goal (``--sft-episodes`` episodes): it writes
well-formed tactics but does not know which fits which goal.

One round of ``BFSProverTrainer`` (``plyground train bfs-prover``) on the train theorems (each
once, ``reset_options``): the filter (2 sampled attempts; theorems solved both times are dropped),
best-first search with the policy on the rest (``--width`` tactics per node, ``--max-nodes``
expansions, T = 1.3, shared ``SolvedCache``), then ``--steps`` optimizer steps of SFT on the found
proofs + DPO on the erroring siblings along them.

Solve rate before and after, on the same episodes: ``--samples`` sampled attempts (T = 1, at most
``--max-turns`` tactics) on every train and every held-out theorem.

Run from the repository root (needs coqtop/coqc; docs/results/bfs_prover_round.md gives the time)::

    OMP_NUM_THREADS=1 .venv/bin/python examples/multiturn/bfs_prover_round.py --seeds 0 1

Writes ``docs/results/bfs_prover_round.{json,png}`` (``--quick``: under ``--out``).
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
import subprocess
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RESULTS,
    before_after_bars,
    chat_corpus,
    evaluate,
    scripted_chats,
    set_threads,
    small_policy,
    warm_start,
)

from plyground.types import Message

ENV_ID = "Prove-v0"
TACTICS = (
    "reflexivity", "intros; lia", "tauto", "intros; ring", "intros; simpl; auto", "intros; discriminate",
    "firstorder", "intros; nia", "auto", "intros; destruct a; reflexivity", "intros; destruct b; reflexivity",
    "intros; induction n; simpl; auto", "intros; induction l; simpl; auto", "intros; subst; reflexivity",
    "intros; split; auto", "intros; simpl; lia", "intros; inversion H; auto", "intros; congruence",
)


def tactic_matrix(theorems: Sequence[Any], cache: Path) -> dict[str, dict[str, bool]]:
    """Which tactic of ``TACTICS`` proves which theorem on its own, from one ``coqtop`` run
    (``Fail solve [ t ]`` fails exactly when ``t`` proves the goal), cached in ``cache``."""
    if cache.exists():
        data = json.loads(cache.read_text())
        if data.get("tactics") == list(TACTICS) and set(data["solves"]) >= {t.id for t in theorems}:
            return dict(data["solves"])
    from plyground.proving.coq import DEFAULT_HEADER

    lines = [DEFAULT_HEADER]
    for t in theorems:
        statement = t.prompt.split(":", 1)[1].strip()
        for k, tac in enumerate(TACTICS):
            # the Check prints a separator, so one block's output is told from the next's
            lines.append(f"Goal {statement}\nFail Timeout 3 solve [ {tac} ].\nAbort.\nCheck {900000 + k}.")
    out = subprocess.run(["coqtop", "-quiet"], input="\n".join(lines) + "\n", capture_output=True, text=True,
                         timeout=3600).stdout
    chunks = re.split(r"\n\s+: nat\n", out)
    if len(chunks) != len(theorems) * len(TACTICS) + 1:
        raise RuntimeError(f"coqtop output has {len(chunks) - 1} blocks, expected {len(theorems) * len(TACTICS)}")
    solves: dict[str, dict[str, bool]] = {}
    for i, t in enumerate(theorems):
        blocks = chunks[i * len(TACTICS) : (i + 1) * len(TACTICS)]
        # proved: the goal was stated ("1 goal") and Fail complained that the tactic did not fail
        solves[t.id] = {tac: "indeed failed" not in b and "goal" in b for tac, b in zip(TACTICS, blocks, strict=True)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"tactics": list(TACTICS), "solves": solves}, indent=0) + "\n")
    return solves


def problem_pool(args: argparse.Namespace) -> tuple[list[Any], list[Any], dict[str, dict[str, bool]]]:
    from plyground.proving.coq import COQ_THEOREMS

    candidates = [t for t in COQ_THEOREMS if int(t.metadata.get("difficulty", 1)) <= 4][: args.candidates]
    matrix = tactic_matrix(candidates, Path(args.out) / "tactic_matrix.json")
    pool = [t for t in candidates if 1 <= sum(matrix[t.id].values()) <= args.max_solvers]
    random.Random(0).shuffle(pool)
    return pool[: args.train], pool[args.train : args.train + args.heldout], matrix


def random_tactic_policy(salt: int) -> Any:
    """A scripted prover that ignores the goal: a uniformly random tactic each turn, seeded by the
    chat (so the SFT data is the same on every rerun)."""

    def policy(chat: Sequence[Message]) -> str:
        rng = random.Random(zlib.crc32(("\x00".join(m.content for m in chat) + f"|{salt}").encode()))
        return rng.choice(TACTICS)

    return policy


def cycling_tactic_policy(offset: int) -> Any:
    """A scripted prover that ignores the goal and plays the tactics in turn (call after call, so
    over many episodes every goal is seen with many different tactics and the clone's distribution
    at a goal is spread over the tactics rather than fixed on a few; reproducible when the episodes
    are played one at a time, as :func:`_common.warm_start` does)."""
    calls = itertools.count(offset)

    def policy(chat: Sequence[Message]) -> str:
        return TACTICS[next(calls) % len(TACTICS)]

    return policy


def pool_corpus(tasks: Sequence[Any], env_kwargs: dict[str, Any]) -> list[str]:
    """Rendered chats of random-tactic episodes on every pool theorem (goals, Coq's replies), plus
    every tactic: the text the policy reads and writes."""
    import plyground
    from plyground.inference.models import default_tokenizer

    tok = default_tokenizer()
    env = plyground.make(ENV_ID, **env_kwargs)
    chats = scripted_chats(env, [(random_tactic_policy(salt=i), i, {"task": task.id}) for i, task in enumerate(tasks)])
    env.close()
    return chat_corpus(tok, chats) + list(TACTICS)


def warm_policy(seed: int, train: list[Any], heldout: list[Any], args: argparse.Namespace) -> tuple[Any, Any]:
    """The seed's start policy, cached per seed, size, SFT steps and vocabulary."""
    import torch

    all_kwargs = {"tasks": train + heldout, "max_turns": args.max_turns}
    corpus_cache = Path(args.out) / f"corpus_t{args.train}_h{args.heldout}_m{args.max_turns}.json"
    if corpus_cache.exists():
        corpus = json.loads(corpus_cache.read_text())
    else:
        corpus = pool_corpus(train + heldout, all_kwargs)
        corpus_cache.parent.mkdir(parents=True, exist_ok=True)
        corpus_cache.write_text(json.dumps(corpus))
    model, tok = small_policy(seed=seed, hidden=args.hidden, layers=args.layers, corpus=corpus)
    vocab = hashlib.sha1(json.dumps(sorted(tok.get_vocab().items())).encode()).hexdigest()[:10]
    cache = Path(args.out) / (f"warm_h{args.hidden}l{args.layers}_cyc{args.sft_episodes}_sft{args.sft_steps}_t{args.train}"
                              f"_seed{seed}_v{vocab}.pt")
    if cache.exists():
        model.load_state_dict(torch.load(cache))
        model.eval()
        return model, tok
    t0 = time.time()
    # SFT on the train theorems only: the held-out goals are never trained on
    warm_start(model, tok, ENV_ID, {"tasks": train, "max_turns": args.max_turns}, cycling_tactic_policy(offset=seed),
               episodes=args.sft_episodes, steps=args.sft_steps, lr=3e-3, out_dir=str(Path(args.out) / f"sft_seed{seed}"), seed=seed)
    print(f"seed {seed}: vocabulary {len(tok)}, SFT {args.sft_steps} steps in {time.time() - t0:.0f} s", flush=True)
    model.cpu().eval()
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model, tok


def solve_rate(model: Any, tok: Any, env_kwargs: dict[str, Any], tasks: list[Any], samples: int, seed: int) -> dict[str, Any]:
    from plyground.rollout.collector import EpisodeSpec

    specs = [EpisodeSpec(seed=seed, episode=i * samples + j, sample=j, options={"task": t.id})
             for i, t in enumerate(tasks) for j in range(samples)]
    trajs = evaluate(model, tok, ENV_ID, env_kwargs, specs, temperature=1.0, max_tokens=16, seed=seed)
    per = {t.id: sum(x.success for x in trajs[i * samples : (i + 1) * samples]) / samples for i, t in enumerate(tasks)}
    n = len(trajs)
    p = sum(x.success for x in trajs) / n
    return {"solve_rate": p, "se": math.sqrt(p * (1 - p) / n), "attempts": n,
            "solved_any": sum(v > 0 for v in per.values()), "per_theorem": per}


def run_seed(seed: int, train: list[Any], heldout: list[Any], args: argparse.Namespace) -> dict[str, Any]:
    from plyground.trainers.bfs_prover import BFSProverConfig, BFSProverTrainer

    env_kwargs = {"tasks": train + heldout, "max_turns": args.max_turns}
    model, tok = warm_policy(seed, train, heldout, args)
    t0 = time.time()
    before = {"train": solve_rate(model, tok, env_kwargs, train, args.samples, seed=11 + seed),
              "heldout": solve_rate(model, tok, env_kwargs, heldout, args.samples, seed=11 + seed)}
    print(f"seed {seed} before: train {before['train']['solve_rate']:.3f} held-out {before['heldout']['solve_rate']:.3f} "
          f"({time.time() - t0:.0f} s)", flush=True)
    cfg = BFSProverConfig(
        env_id=ENV_ID, env_kwargs=env_kwargs, reset_options=[{"task": t.id} for t in train],
        problems_per_round=len(train), filter_samples=2, easy_threshold=1.0, width=args.width, alpha=2.0,
        max_nodes=args.max_nodes, max_tokens=16, temperature=1.3, steps_per_round=args.steps, total_steps=args.steps,
        batch_size=8, micro_batch_size=8, dpo_coef=args.dpo_coef, beta=0.1, lr=args.lr, seed=seed, mixed_precision="no",
        out_dir=str(Path(args.out) / f"round_seed{seed}"),
    )
    policy = copy.deepcopy(model)
    trainer = BFSProverTrainer(cfg, model=policy, tokenizer=tok)
    t1 = time.time()
    history = trainer.train()
    round_s = time.time() - t1
    after = {"train": solve_rate(policy, tok, env_kwargs, train, args.samples, seed=11 + seed),
             "heldout": solve_rate(policy, tok, env_kwargs, heldout, args.samples, seed=11 + seed)}
    print(f"seed {seed} after: train {after['train']['solve_rate']:.3f} held-out {after['heldout']['solve_rate']:.3f} "
          f"(round {round_s:.0f} s)", flush=True)
    return {
        "seed": seed,
        "before": before,
        "after": after,
        "round": {k: v for k, v in history[0].items() if k.startswith(("env/", "charts/proofs", "charts/pairs", "charts/cache"))},
        "searched": trainer.searched,
        "proofs": [{"goal": p["messages"][-2]["content"], "tactic": p["messages"][-1]["content"]} for p in trainer.proofs],
        "losses_first_last": [{k: v for k, v in h.items() if k.startswith("losses/")} for h in (history[0], history[-1])],
        "round_s": round_s,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--train", type=int, default=36, help="pool theorems the round works on")
    ap.add_argument("--heldout", type=int, default=18, help="pool theorems held out")
    ap.add_argument("--max-solvers", type=int, default=3, help="pool: theorems proved by 1..this many tactics")
    ap.add_argument("--candidates", type=int, default=None, help="check only the first N theorems (a quick test)")
    ap.add_argument("--max-turns", type=int, default=3)
    ap.add_argument("--samples", type=int, default=4, help="sampled attempts per theorem for the solve rate")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--sft-steps", type=int, default=60)
    ap.add_argument("--sft-episodes", type=int, default=144, help="episodes of the tactic-cycling prover for the SFT")
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps of the round")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--max-nodes", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dpo-coef", type=float, default=1.0)
    ap.add_argument("--out", default="runs/multiturn/bfs_prover_round")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("--quick", action="store_true", help="write the JSON/PNG under --out, not docs/results")
    args = ap.parse_args(argv)
    set_threads()
    t0 = time.time()
    train, heldout, matrix = problem_pool(args)
    print(f"pool: {len(train)} train, {len(heldout)} held out ({time.time() - t0:.0f} s)", flush=True)
    runs = [run_seed(seed, train, heldout, args) for seed in args.seeds]
    summary: dict[str, Any] = {}
    for split in ("train", "heldout"):
        gains = [r["after"][split]["solve_rate"] - r["before"][split]["solve_rate"] for r in runs]
        summary[f"{split}_before_mean"] = sum(r["before"][split]["solve_rate"] for r in runs) / len(runs)
        summary[f"{split}_after_mean"] = sum(r["after"][split]["solve_rate"] for r in runs) / len(runs)
        summary[f"{split}_gain_per_seed"] = gains
    payload = {
        "config": vars(args), "tactics": list(TACTICS),
        "train": [t.id for t in train], "heldout": [t.id for t in heldout],
        "solvers": {t.id: [k for k, v in matrix[t.id].items() if v] for t in train + heldout},
        "summary": summary, "runs": runs, "wall_s": time.time() - t0,
    }
    print(json.dumps(summary, indent=1), flush=True)
    dest = Path(args.out) if args.quick else RESULTS
    dest.mkdir(parents=True, exist_ok=True)
    name = f"bfs_prover_round{args.tag}"
    (dest / f"{name}.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    plot(runs, dest / f"{name}.png")
    return payload


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    before_after_bars(
        runs, path,
        [("the round's theorems", lambda e: (e["train"]["solve_rate"], e["train"]["se"])),
         ("held-out theorems", lambda e: (e["heldout"]["solve_rate"], e["heldout"]["se"]))],
        after_label="after 1 round", ylabel="solve rate (sampled attempts, T=1)",
        suptitle="BFS-Prover expert iteration, one round, Coq (error bars: binomial SE)",
    )


if __name__ == "__main__":
    main()
