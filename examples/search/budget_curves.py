"""Success against search budget for MCTS, best-first, beam and best-of-N on four environments.

    .venv/bin/python examples/search/budget_curves.py maze|guessnumber|coq|webshop [--seeds N]
        [--budgets 1 2 4 ...] [--out docs/results]

writes ``search_budget_<env>.md`` (tables and the command), ``.json`` (every point) and ``.png``.
The budget is the number of proposer calls (chats sent to the policy, one per node expanded or per
step of a best-of-N episode; see ``plyground.search.tree.SearchStats``); each point is the success
rate over ``--seeds`` problems, every algorithm and budget on the same problems.

The proposers are model-free so the curves are cheap on a CPU and reproducible:

- ``random``: uniform over the node's admissible actions (Maze's moves, WebShop's clickables and a
  search with the instruction's words), integers ``1..n`` (GuessNumber), or the 20 tactics of
  ``plyground.proving.portfolio.PORTFOLIO`` (Coq);
- ``noisy-expert``: each sample is a scripted expert's action with probability ``P_EXPERT``, else
  a random one (``plyground.search.NoisyExpertProposer``): binary search on GuessNumber, the
  scripted shopper on WebShop.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from plyground.envs import make
from plyground.envs.core import TextEnv
from plyground.envs.guess_number import BisectionPolicy
from plyground.search import BeamConfig, BestFirstConfig, MCTSConfig, NoisyExpertProposer, RandomProposer
from plyground.search.evaluate import (
    ALGO_NAMES,
    ALGOS,
    BudgetPoint,
    SearchConfig,
    budget_curve,
    format_table,
    plot_panels,
)
from plyground.search.proposer import ActionProposer
from plyground.search.tree import EnvOrFactory, Node

P_EXPERT = 0.3
"""Probability that one sample of the noisy-expert proposer is the expert's action."""


# -- GuessNumber -----------------------------------------------------------------------------------
def bisection_expert(node: Node) -> str:
    """Binary search over the observations on the path to ``node``."""
    policy = BisectionPolicy(100)
    action = ""
    for n in node.path():
        action = policy.act(n.observation)
    return action


# -- WebShop ---------------------------------------------------------------------------------------
def shopper_expert(node: Node) -> str:
    """The scripted shopper replayed over the path (it keeps the products it opened)."""
    from plyground.envs.webshop.shopper import ScriptedShopper

    shopper = ScriptedShopper(max_turns=15)
    action = ""
    for n in node.path():
        action = shopper.act(n.observation, n.info)
    return action


def fill_search(node: Node, action: str) -> str:
    """WebShop's ``search[<keywords>]`` template filled with the instruction's words (what an
    agent types); other actions as they are."""
    from plyground.envs.webshop.env import SEARCH_TEMPLATE
    from plyground.envs.webshop.shopper import _LEAD, parse_instruction

    if action != SEARCH_TEMPLATE:
        return action
    wanted, options, _ = parse_instruction(str(node.info.get("instruction", "")))
    return "search[" + " ".join([_LEAD.sub("", wanted), *options.values()]).strip() + "]"


def random_webshop(seed: int) -> ActionProposer:
    return NoisyExpertProposer(shopper_expert, 0.0, seed, rewrite=fill_search)


# -- Coq -------------------------------------------------------------------------------------------
def coq_problems(count: int) -> list[Any]:
    """``count`` theorems of difficulty 2 and 3 spread evenly over the project's set (difficulty 1
    is mostly one closing tactic; 4 and 5 are out of reach of the portfolio)."""
    from plyground.proving.coq import COQ_THEOREMS

    pool = [t for t in COQ_THEOREMS if int(t.metadata.get("difficulty", 1)) in (2, 3)]
    return [pool[i * len(pool) // count] for i in range(min(count, len(pool)))]


def reference_expert(node: Node) -> str:
    """The next sentence of the reference proof of the node's theorem, while the tactics accepted
    on the path are a prefix of that proof (else the first portfolio tactic)."""
    from plyground.proving.coq import COQ_THEOREMS

    root = node.path()[0]
    task = next(t for t in COQ_THEOREMS if t.id == root.info.get("task_id"))
    reference = [" ".join(x.split()).rstrip(".") for x in (task.answer or "").split(". ") if x.strip()]
    accepted = [" ".join((n.action or "").split()).rstrip(".") for n in node.path()[1:] if n.info.get("valid_action", True)]
    if accepted == reference[: len(accepted)] and len(accepted) < len(reference):
        return reference[len(accepted)]
    return _portfolio()[0]


@dataclass
class Setup:
    env_id: str
    env: Callable[[], EnvOrFactory]
    proposers: dict[str, Callable[[int], ActionProposer]]
    budgets: list[int]
    seeds: int
    options: Callable[[int], dict[str, Any] | None] | None = None
    notes: list[str] = field(default_factory=list)
    configs: dict[str, dict[str, SearchConfig]] = field(default_factory=dict)
    """Per proposer: configs replacing ``default_config`` (e.g. a wider expansion)."""


def wide(k: int) -> dict[str, SearchConfig]:
    """The default configs with ``k`` actions per expansion instead of 4 (best-of-N samples one
    action per step, so it has no such knob and is left out)."""
    return {
        "mcts": MCTSConfig(simulations=100_000, rollout="none", dedupe=True, max_expansions=4, k=k),
        "bfs": BestFirstConfig(width=k, max_nodes=100_000, time_limit_s=None, step_time_limit_s=None),
        "beam": BeamConfig(width=4, k=k),
    }


def setups(seeds: int | None) -> dict[str, Setup]:
    def n(default: int) -> int:
        return seeds if seeds is not None else default

    problems = coq_problems(n(24))
    return {
        "maze": Setup(
            "Maze-v0", lambda: (lambda: make("Maze-v0")), {"random": lambda s: RandomProposer(s)},
            [2, 4, 8, 16, 32, 64], n(30),
            notes=["Maze-v0 (the default maze, start drawn by the seed); random proposer over the four moves."],
        ),
        "guessnumber": Setup(
            "GuessNumber-v0", lambda: (lambda: make("GuessNumber-v0")),
            {
                "random": lambda s: RandomProposer(s),
                f"noisy-expert (bisection, p={P_EXPERT})": lambda s: NoisyExpertProposer(bisection_expert, P_EXPERT, s),
            },
            [1, 2, 4, 8, 16, 32, 64], n(30),
            notes=[
                "GuessNumber-v0 (1..100, 10 guesses; the hidden number drawn by the seed). Search state key: "
                "the interval left by the feedback and the guesses used (`GuessNumberEnv.state_key`).",
                "random: uniform integers in 1..100. noisy-expert: each sample is binary search's guess "
                f"with probability {P_EXPERT}, else a uniform integer.",
                "With the random proposer every node is as good as any other (the guesses ignore the "
                "feedback), so MCTS, best-first and beam draw the same guesses in the same order and their "
                "curves coincide until the tree runs out; best-of-N trails because it samples one action per "
                "call where the tree searches sample K = 4 (`mean_generations` in the JSON).",
            ],
        ),
        "coq": Setup(
            "Prove-v0", lambda: make("Prove-v0", tasks=problems, timeout_s=10.0),
            {
                "random tactics": lambda s: RandomProposer(s, actions=_portfolio(), replace=True),
                "random tactics, K = 8": lambda s: RandomProposer(s, actions=_portfolio(), replace=True),
                f"noisy-expert (reference proof, p={P_EXPERT})": lambda s: NoisyExpertProposer(
                    reference_expert, P_EXPERT, s, actions=_portfolio()
                ),
            },
            [1, 2, 4, 8, 16, 32], len(problems),
            options=lambda s: {"task": problems[s]},
            configs={"random tactics, K = 8": wide(8)},
            notes=[
                f"Prove-v0 (Coq, coqtop; reward only after Qed and Print Assumptions): {len(problems)} theorems of "
                "difficulty 2-3 spread over the 170 (" + ", ".join(f"`{t.id}`" for t in problems) + ").",
                "random tactics: each of the K samples drawn uniformly, with replacement (as an LLM samples; "
                "duplicates merge), from the 20 tactics of `plyground.proving.portfolio.PORTFOLIO`. "
                "noisy-expert: each sample is, with probability "
                f"{P_EXPERT}, the next sentence of the theorem's reference proof (while the tactics accepted so "
                "far are a prefix of it; else the first portfolio tactic), else a random portfolio tactic.",
                "A tactic that Coq rejects is a failed child (best-first) or leaves the goals unchanged and is "
                "pruned as a transposition (MCTS, beam); a node whose samples all fail is dead, so a search can "
                "end with budget left (the second table of each proposer: the share of searches that did). "
                "The `K = 8` panel samples 8 tactics per expansion (MCTS, best-first, beam) instead of 4.",
            ],
        ),
        "webshop": Setup(
            "WebShop-v0", lambda: make("WebShop-v0"),
            {
                "random": random_webshop,
                f"noisy-expert (scripted shopper, p={P_EXPERT})": lambda s: NoisyExpertProposer(
                    shopper_expert, P_EXPERT, s, rewrite=fill_search
                ),
            },
            [1, 2, 4, 8, 16, 32, 64], n(30),
            options=lambda s: {"goal_index": s},
            notes=[
                "WebShop-v0 (text mode, the generated 1,000-product catalogue, goal i for problem i, 15 actions). "
                "Success = reward 1.0 (the right product, options and price). Search state key: the goal and "
                "the page URL (`WebShopEnv.state_key`: the page text does not show the chosen options, so "
                "keying by observation would prune every option click).",
                "random: uniform over the page's admissible actions, the search template filled with the "
                "instruction's words. noisy-expert: each sample is the scripted shopper's action with "
                f"probability {P_EXPERT}, else a random admissible action.",
            ],
        ),
    }


def _portfolio() -> list[str]:
    from plyground.proving.portfolio import PORTFOLIO

    return list(PORTFOLIO)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("env", choices=["maze", "guessnumber", "coq", "webshop"])
    parser.add_argument("--seeds", type=int, default=None, help="problems per point (default per env)")
    parser.add_argument("--budgets", type=int, nargs="+", default=None)
    parser.add_argument("--algos", nargs="+", default=list(ALGOS))
    parser.add_argument("--out", default="docs/results")
    args = parser.parse_args(argv)
    setup = setups(args.seeds)[args.env]
    budgets = args.budgets or setup.budgets
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = setup.env()
    panels: dict[str, list[BudgetPoint]] = {}

    def progress(p: BudgetPoint) -> None:
        calls = f"{p.mean_proposer_calls:.1f} calls, {p.mean_wall_s:.2f} s, exhausted {p.exhausted_rate:.2f}"
        print(f"  {p.algo:>9} budget {p.budget:>3}: {p.success_rate:.2f} ({calls})", flush=True)

    start = time.perf_counter()
    try:
        for name, factory in setup.proposers.items():
            print(f"== {setup.env_id}, {name}", flush=True)
            configs = setup.configs.get(name)
            algos = [a for a in args.algos if configs is None or a in configs]
            panels[name] = budget_curve(
                env, algos, budgets, range(setup.seeds), factory, configs, setup.env_id, setup.options, progress
            )
    finally:
        if isinstance(env, TextEnv):  # one env reused by every search (a server or a prover process)
            env.close()
    wall = time.perf_counter() - start
    command = " ".join(
        [".venv/bin/python", "examples/search/budget_curves.py", args.env]
        + ([f"--seeds {args.seeds}"] if args.seeds is not None else [])
        + ([f"--budgets {' '.join(map(str, args.budgets))}"] if args.budgets else [])
        + ([f"--algos {' '.join(args.algos)}"] if args.algos != list(ALGOS) else [])
        + ([f"--out {shlex.quote(args.out)}"] if args.out != "docs/results" else [])
    )
    stem = f"search_budget_{args.env}"
    lines = [
        f"# Search: success against budget on {setup.env_id}",
        "",
        *setup.notes,
        "",
        f"Success rate over {setup.seeds} problems per point (the same problems for every algorithm and "
        "budget); the budget is the number of proposer calls (one chat to the policy per node expanded, or "
        "per step of a best-of-N episode). MCTS: UCT, K = 4, no rollouts (the whole budget grows the tree), "
        "transpositions deduped; best-first: BFS-Prover's priority, width 4, alpha 2; beam: width 4, K = 4; "
        "best-of-N: independent episodes, one action per step, until the first success.",
        "",
    ]
    for name, points in panels.items():
        lines += [f"## {name}", "", format_table(points, "algorithm \\ proposer calls", ALGO_NAMES), ""]
        if any(p.exhausted_rate > 0 for p in points):
            lines += [
                "Share of the searches that stopped with every branch failed, before the budget ran out:",
                "",
                format_table(points, "algorithm \\ proposer calls", ALGO_NAMES, field="exhausted_rate"),
                "",
            ]
    lines += [
        f"![success against budget]({stem}.png)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on a 2-core CPU machine shared with "
        f"other work ({wall:.0f} s for the whole run); every point is in `{stem}.json`. Reproduce with:",
        "",
        f"    {command}",
        "",
    ]
    (out / f"{stem}.md").write_text("\n".join(lines))
    (out / f"{stem}.json").write_text(
        json.dumps({name: [p.to_dict() for p in pts] for name, pts in panels.items()}, indent=1) + "\n"
    )
    plot_panels(panels, str(out / f"{stem}.png"), f"{setup.env_id}: success against search budget ({setup.seeds} problems)")
    print("\n".join(lines))
    print(f"wrote {out / stem}.{{md,json,png}}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
