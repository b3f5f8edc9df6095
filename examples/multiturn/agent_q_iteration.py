"""Must-show C: one Agent Q iteration (MCTS with the policy -> step pairs -> DPO) raises greedy
success over the starting policy on a small deterministic env (the U maze).

The starting policy is the warm start of ``archer_vs_reinforce.py`` (a 2-layer, 64-wide Llama,
SFT on a noisy maze expert), whose greedy play fails from several start cells. One iteration:
MCTS (``--simulations`` per episode, ``k`` proposals sampled from the policy per expansion,
random-move rollouts for leaf values, success reward discounted by ``mcts_gamma`` per step) on
``--episodes`` env seeds; Agent Q pairs (sibling moves whose Q differ by at least ``theta``); then
``--dpo-steps`` DPO steps with the iteration's starting policy as the reference.

Evaluation, before and after, on the same episodes: greedy play from every open start cell of the
maze (deterministic), and ``--sampled`` sampled episodes at temperature 1 on fixed env seeds.

Run from the repository root (about a minute on an H200; about 10 minutes on the shared 2-core
CPU box with the settings of docs/results/agent_q_iteration.md)::

    OMP_NUM_THREADS=1 .venv/bin/python examples/multiturn/agent_q_iteration.py

Writes ``docs/results/agent_q_iteration.{json,png}`` (``--quick``: under ``--out``).
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

from _common import RESULTS, episode_stats, evaluate, set_threads
from archer_vs_reinforce import ENV_ID, maze_warm_policy


def start_cells(env_kwargs: dict[str, Any]) -> list[tuple[int, int]]:
    import plyground

    env = plyground.make(ENV_ID, **env_kwargs)
    cells = [c for c in env.layout.open_cells() if c not in env.layout.goals]  # type: ignore[attr-defined]
    env.close()
    return cells


def measure(model: Any, tok: Any, env_kwargs: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from plyground.rollout.collector import EpisodeSpec

    cells = start_cells(env_kwargs)
    greedy_specs = [EpisodeSpec(seed=0, episode=i, options={"init_position": c}) for i, c in enumerate(cells)]
    greedy = evaluate(model, tok, ENV_ID, env_kwargs, greedy_specs, temperature=0.0, max_tokens=5)
    sampled_specs = [EpisodeSpec(seed=50_000 + i, episode=i) for i in range(args.sampled)]
    sampled = evaluate(model, tok, ENV_ID, env_kwargs, sampled_specs, temperature=1.0, max_tokens=5, seed=args.seed)
    return {
        "greedy": episode_stats(greedy),
        "greedy_by_cell": {f"{c[0]},{c[1]}": {"success": t.success, "turns": t.num_turns, "moves": [x.action for x in t.turns]}
                           for c, t in zip(cells, greedy, strict=True)},
        "sampled": episode_stats(sampled),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=6, help="env seeds searched in the iteration")
    ap.add_argument("--simulations", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=1.0, help="proposal temperature")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--dpo-steps", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--mcts-gamma", type=float, default=0.9)
    ap.add_argument("--sampled", type=int, default=32, help="sampled evaluation episodes")
    # the warm start (shared with archer_vs_reinforce.py, same cache)
    ap.add_argument("--max-steps", type=int, default=8)
    ap.add_argument("--eps", type=float, default=0.5)
    ap.add_argument("--sft-steps", type=int, default=60)
    ap.add_argument("--warm-out", default="runs/multiturn/archer_vs_reinforce", help="where the warm start is cached")
    ap.add_argument("--out", default="runs/multiturn/agent_q_iteration")
    ap.add_argument("--quick", action="store_true", help="write the JSON/PNG under --out, not docs/results")
    args = ap.parse_args(argv)
    set_threads()
    from plyground.trainers.agent_q import AgentQConfig, AgentQTrainer

    warm_args = argparse.Namespace(out=args.warm_out, eps=args.eps, sft_steps=args.sft_steps, max_steps=args.max_steps)
    model, tok, env_kwargs = maze_warm_policy(warm_args)
    t0 = time.time()
    before = measure(model, tok, env_kwargs, args)
    print("before", json.dumps({k: before[k] for k in ("greedy", "sampled")}), f"{time.time() - t0:.0f} s", flush=True)
    cfg = AgentQConfig(
        env_id=ENV_ID, env_kwargs=env_kwargs, episodes_per_iteration=args.episodes, steps_per_iteration=args.dpo_steps,
        total_steps=args.dpo_steps, simulations=args.simulations, k=args.k, mcts_rollout="random", rollout_depth=args.max_steps,
        mcts_gamma=args.mcts_gamma, max_tokens=5, temperature=args.temperature, theta=0.1, beta=args.beta, reference="policy",
        batch_size=8, micro_batch_size=8, lr=args.lr, seed=args.seed, mixed_precision="no", out_dir=args.out,
    )
    policy = copy.deepcopy(model)
    trainer = AgentQTrainer(cfg, model=policy, tokenizer=tok)
    t1 = time.time()
    history = trainer.train()
    train_s = time.time() - t1
    after = measure(policy, tok, env_kwargs, args)
    print("after", json.dumps({k: after[k] for k in ("greedy", "sampled")}), flush=True)
    pairs = trainer.pairs
    payload = {
        "config": vars(args),
        "before": before,
        "after": after,
        "search": {k: v for k, v in history[0].items() if k.startswith(("env/", "charts/pairs"))},
        "pairs": len(pairs),
        "pair_examples": [{"state": p["prompt"][-1]["content"], "chosen": p["chosen"], "rejected": p["rejected"],
                           "q_chosen": p["meta"]["q_chosen"], "q_rejected": p["meta"]["q_rejected"]} for p in pairs[:6]],
        "dpo": [{k: v for k, v in h.items() if k.startswith(("losses/", "step", "rewards/"))} for h in history],
        "train_s": train_s,
    }
    dest = Path(args.out) if args.quick else RESULTS
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "agent_q_iteration.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    plot(before, after, dest / "agent_q_iteration.png", len(pairs))
    return payload


def plot(before: dict[str, Any], after: dict[str, Any], path: Path, pairs: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    labels = ["start policy", "after 1 Agent Q iteration"]
    for ax, key, title in ((axes[0], "greedy", "greedy, every start cell"), (axes[1], "sampled", "sampled (T=1)")):
        vals = [before[key]["success_rate"], after[key]["success_rate"]]
        ax.bar(labels, vals, color=["tab:gray", "tab:green"])
        for i, v in enumerate(vals):
            ax.text(i, v + 0.02, f"{v:.2f}", ha="center")
        ax.set_ylim(0, 1.1)
        ax.set_ylabel("success rate")
        ax.set_title(title)
    fig.suptitle(f"Agent Q on the U maze: MCTS -> {pairs} step pairs -> DPO")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
