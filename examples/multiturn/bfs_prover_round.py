"""Must-show D: one round of BFS-Prover expert iteration raises the Coq solve rate.

Problems: ``--problems`` difficulty-1 theorems of the project's graded Coq set (``Prove-v0`` over
coqtop; every proof the env accepts is checked by Coq), at most ``--max-turns`` tactics each.

Starting policy: a 2-layer, 64-wide Llama (SmolLM2 tokenizer) after a short SFT on a scripted
prover that plays a uniformly random tactic from a list of one-shot closers (``reflexivity``,
``intros; lia``, ``tauto``, ...), whatever the goal: it knows the tactic language but not which
tactic fits which theorem.

One round of ``BFSProverTrainer`` (``plyground train bfs-prover``): the filter (``filter_samples``
sampled attempts per problem; problems always solved are dropped), best-first search with the
policy on the rest (shared ``SolvedCache``), then ``--steps`` optimizer steps of SFT on the found
proofs + DPO on erroring siblings. Solve rate before and after: ``--samples`` sampled attempts
(temperature 1) on every problem.

Run from the repository root (about 20 minutes on the shared 2-core CPU box, 4 once the warm
start is cached; needs coqtop/coqc)::

    OMP_NUM_THREADS=1 .venv/bin/python examples/multiturn/bfs_prover_round.py

Writes ``docs/results/bfs_prover_round.{json,png}`` (``--quick``: under ``--out``).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import random
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, evaluate, set_threads, small_policy, warm_start

from plyground.types import Message

ENV_ID = "Prove-v0"
CLOSERS = ("reflexivity", "intros; lia", "tauto", "intros; ring", "intros; simpl; auto", "intros; discriminate",
           "firstorder", "intros; nia", "auto")


def random_tactic_policy(tactics: Sequence[str] = CLOSERS) -> Any:
    """A scripted prover that ignores the goal: a random tactic each turn (reproducible when the
    episodes are played one at a time)."""
    calls = itertools.count()

    def policy(chat: Sequence[Message]) -> str:
        rng = random.Random(zlib.crc32("\x00".join(m.content for m in chat).encode()) + 7919 * next(calls))
        return rng.choice(list(tactics))

    return policy


def problems(n: int) -> list[Any]:
    from plyground.proving.coq import COQ_THEOREMS

    easy = [t for t in COQ_THEOREMS if int(t.metadata.get("difficulty", 1)) == 1]
    return random.Random(0).sample(easy, n)


def solve_rate(model: Any, tok: Any, env_kwargs: dict[str, Any], tasks: list[Any], samples: int, seed: int) -> dict[str, Any]:
    from plyground.rollout.collector import EpisodeSpec

    specs = [EpisodeSpec(seed=seed, episode=i * samples + j, sample=j, options={"task": t})
             for i, t in enumerate(tasks) for j in range(samples)]
    trajs = evaluate(model, tok, ENV_ID, env_kwargs, specs, temperature=1.0, max_tokens=12, seed=seed)
    per = {t.id: sum(x.success for x in trajs[i * samples : (i + 1) * samples]) / samples for i, t in enumerate(tasks)}
    return {"solve_rate": sum(per.values()) / len(per), "solved_any": sum(v > 0 for v in per.values()), "per_theorem": per}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--max-turns", type=int, default=3)
    ap.add_argument("--samples", type=int, default=8, help="sampled attempts per problem for the solve rate")
    ap.add_argument("--sft-steps", type=int, default=120)
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps of the round")
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--max-nodes", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out", default="runs/multiturn/bfs_prover_round")
    ap.add_argument("--quick", action="store_true", help="write the JSON/PNG under --out, not docs/results")
    args = ap.parse_args(argv)
    set_threads()
    import torch

    from plyground.trainers.bfs_prover import BFSProverConfig, BFSProverTrainer

    tasks = problems(args.problems)
    env_kwargs = {"tasks": tasks, "max_turns": args.max_turns}
    model, tok = small_policy(seed=0)
    cache = Path(args.out) / f"warm_sft{args.sft_steps}_p{args.problems}.pt"
    if cache.exists():
        model.load_state_dict(torch.load(cache))
    else:
        warm_start(model, tok, ENV_ID, env_kwargs, random_tactic_policy(), episodes=48, steps=args.sft_steps,
                   lr=3e-3, out_dir=str(Path(args.out) / "sft"))
        model.cpu().eval()
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), cache)
    t0 = time.time()
    before = solve_rate(model, tok, env_kwargs, tasks, args.samples, seed=11)
    print("before", before["solve_rate"], before["solved_any"], f"{time.time() - t0:.0f} s", flush=True)
    cfg = BFSProverConfig(
        env_id=ENV_ID, env_kwargs=env_kwargs, problems_per_round=args.problems, seed_pool=args.problems,
        filter_samples=2, easy_threshold=1.0, width=args.width, alpha=2.0, max_nodes=args.max_nodes, max_tokens=12,
        temperature=1.3, steps_per_round=args.steps, total_steps=args.steps, batch_size=8, micro_batch_size=8,
        dpo_coef=1.0, beta=0.1, lr=args.lr, seed=args.seed, mixed_precision="no", out_dir=str(Path(args.out) / "round"),
    )
    policy = copy.deepcopy(model)
    trainer = BFSProverTrainer(cfg, model=policy, tokenizer=tok)
    t1 = time.time()
    history = trainer.train()
    round_s = time.time() - t1
    after = solve_rate(policy, tok, env_kwargs, tasks, args.samples, seed=11)
    print("after", after["solve_rate"], after["solved_any"], flush=True)
    payload = {
        "config": vars(args),
        "theorems": [t.id for t in tasks],
        "before": before,
        "after": after,
        "round": {k: v for k, v in history[0].items() if k.startswith(("env/", "charts/proofs", "charts/pairs", "charts/cache"))},
        "proofs": [p["messages"][-1]["content"] for p in trainer.proofs],
        "losses": [{k: v for k, v in h.items() if k.startswith("losses/")} for h in history],
        "round_s": round_s,
    }
    dest = Path(args.out) if args.quick else RESULTS
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "bfs_prover_round.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    plot(payload, dest / "bfs_prover_round.png")
    return payload


def plot(payload: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = payload["theorems"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1, 3]})
    vals = [payload["before"]["solve_rate"], payload["after"]["solve_rate"]]
    axes[0].bar(["start policy", "after 1 round"], vals, color=["tab:gray", "tab:green"])
    for i, v in enumerate(vals):
        axes[0].text(i, v + 0.01, f"{v:.2f}", ha="center")
    axes[0].set_ylabel("solve rate (sampled attempts)")
    x = range(len(ids))
    axes[1].bar([i - 0.2 for i in x], [payload["before"]["per_theorem"][t] for t in ids], 0.4, label="start", color="tab:gray")
    axes[1].bar([i + 0.2 for i in x], [payload["after"]["per_theorem"][t] for t in ids], 0.4, label="after 1 round", color="tab:green")
    axes[1].set_xticks(list(x), ids, rotation=60, ha="right", fontsize=7)
    axes[1].legend()
    axes[1].set_title("per theorem")
    fig.suptitle("BFS-Prover expert iteration, one round, Coq difficulty-1 theorems")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
