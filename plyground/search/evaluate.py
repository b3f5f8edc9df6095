"""Success against search budget: each algorithm, several budgets (proposer calls), several seeds.

``budget_curve`` runs every (algorithm, budget, seed) search on a fresh env and aggregates the
success rate per (algorithm, budget); ``format_table`` prints it and ``plot_curve`` draws it as a
PNG (matplotlib, Agg backend). ``run_search`` is the one entry point the CLI uses too: the budget
is ``max_calls``, the number of chats sent to the proposer (see ``SearchStats``).

Example (no model needed)::

    from plyground.envs import make
    from plyground.search import RandomProposer
    from plyground.search.evaluate import budget_curve, format_table, plot_curve

    points = budget_curve(lambda: make("Maze-v0"), ["mcts", "bfs", "beam", "best-of-n"],
                          budgets=[10, 20, 40, 80], seeds=range(20),
                          proposer_factory=lambda seed: RandomProposer(seed))
    print(format_table(points)); plot_curve(points, "budget.png", "Maze-v0, random proposer")
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from plyground.search.baselines import BeamConfig, BestOfNConfig, beam_search, best_of_n
from plyground.search.best_first import BestFirstConfig, SolvedStates, best_first
from plyground.search.critics import Critic
from plyground.search.mcts import MCTSConfig, mcts
from plyground.search.proposer import ActionProposer
from plyground.search.tree import EnvOrFactory, SearchResult
from plyground.types import JsonRecord

ALGOS = ("mcts", "bfs", "beam", "best-of-n")
SearchConfig = MCTSConfig | BestFirstConfig | BeamConfig | BestOfNConfig


def default_config(algo: str, budget: int, seed: int = 0) -> SearchConfig:
    """The config ``run_search`` uses for ``algo`` at ``budget`` proposer calls.

    MCTS: UCT, K = 4, transposition dedupe, a node sampled up to 4 times when its samples gave
    nothing new, value estimate instead of rollouts (``rollout="none"``) so the whole budget grows
    the tree; best-first: BFS-Prover's width 4 and alpha 2; beam: width
    4; best-of-N: as many episodes as the budget allows, stopping at the first success."""
    if algo == "mcts":
        return MCTSConfig(
            simulations=10 * budget + 10, max_calls=budget, rollout="none", dedupe=True, max_expansions=4, seed=seed
        )
    if algo == "bfs":
        return BestFirstConfig(max_nodes=budget, max_calls=budget, time_limit_s=None, step_time_limit_s=None)
    if algo == "beam":
        return BeamConfig(max_calls=budget)
    if algo == "best-of-n":
        return BestOfNConfig(n=budget, parallel=1, max_calls=budget, stop_on_success=True)
    raise ValueError(f"unknown search algorithm {algo!r}; known: {', '.join(ALGOS)}")


def run_search(
    algo: str,
    env: EnvOrFactory,
    proposer: ActionProposer,
    budget: int,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    config: SearchConfig | None = None,
    critic: Critic | None = None,
    cache: SolvedStates | None = None,
    env_id: str = "",
) -> SearchResult:
    """One search with ``algo`` (``mcts``, ``bfs``, ``beam``, ``best-of-n``); ``config`` replaces
    the default, its ``max_calls`` set to ``budget``."""
    cfg = config if config is not None else default_config(algo, budget, seed or 0)
    if hasattr(cfg, "max_calls"):
        cfg = dataclasses.replace(cfg, max_calls=budget)
    if algo == "mcts":
        assert isinstance(cfg, MCTSConfig)
        return mcts(env, proposer, cfg, critic, seed, options, env_id)
    if algo == "bfs":
        assert isinstance(cfg, BestFirstConfig)
        return best_first(env, proposer, cfg, cache, seed, options, env_id)
    if algo == "beam":
        assert isinstance(cfg, BeamConfig)
        return beam_search(env, proposer, cfg, seed, options, env_id)
    if algo == "best-of-n":
        assert isinstance(cfg, BestOfNConfig)
        return best_of_n(env, proposer, cfg, seed, options, env_id)
    raise ValueError(f"unknown search algorithm {algo!r}; known: {', '.join(ALGOS)}")


@dataclass
class BudgetPoint(JsonRecord):
    """Success rate of one algorithm at one budget, over ``episodes`` seeds."""

    algo: str
    budget: int
    episodes: int
    success_rate: float
    mean_proposer_calls: float
    mean_generations: float
    mean_nodes_expanded: float
    mean_tokens: float
    """Tokens the model produced per search (proposals and critiques; 0 for the random proposer)."""
    mean_wall_s: float
    exhausted_rate: float = 0.0
    """Share of the searches that stopped with no open node left (every branch failed) before
    the budget ran out: where it is high, more budget cannot help that search."""


def budget_curve(
    env: EnvOrFactory,
    algos: Sequence[str],
    budgets: Sequence[int],
    seeds: Iterable[int],
    proposer_factory: Callable[[int], ActionProposer],
    configs: dict[str, SearchConfig] | None = None,
    env_id: str = "",
    options: Callable[[int], dict[str, Any] | None] | None = None,
    progress: Callable[[BudgetPoint], None] | None = None,
) -> list[BudgetPoint]:
    """Success rate for every (algorithm, budget) over ``seeds`` (the env seed and the
    proposer's seed). ``options(seed)`` gives the reset options of a seed's episode (e.g. which
    theorem or goal it is), so every algorithm and budget sees the same problems. ``env`` may be
    one env (reused by every search: cheaper for envs with a server or a prover process) or a
    factory. ``progress`` is called with each point as it is done."""
    seeds = list(seeds)
    points = []
    for algo in algos:
        for budget in budgets:
            results = []
            for s in seeds:
                opts = options(s) if options else None
                config = (configs or {}).get(algo)
                results.append(run_search(algo, env, proposer_factory(s), budget, s, opts, config, env_id=env_id))
            points.append(summarize(algo, budget, results))
            if progress is not None:
                progress(points[-1])
    return points


def summarize(algo: str, budget: int, results: Sequence[SearchResult]) -> BudgetPoint:
    def mean(xs: Iterable[float]) -> float:
        xs = list(xs)
        return round(statistics.fmean(xs), 4) if xs else 0.0

    return BudgetPoint(
        algo=algo,
        budget=budget,
        episodes=len(results),
        success_rate=mean(r.success for r in results),
        mean_proposer_calls=mean(r.stats.proposer_calls for r in results),
        mean_generations=mean(r.stats.generations for r in results),
        mean_nodes_expanded=mean(r.stats.nodes_expanded for r in results),
        mean_tokens=mean(r.stats.tokens for r in results),
        mean_wall_s=mean(r.stats.wall_s for r in results),
        exhausted_rate=mean(r.stats.stopped == "exhausted" for r in results),
    )


ALGO_NAMES = {"mcts": "MCTS", "bfs": "best-first", "beam": "beam", "best-of-n": "best-of-N"}
"""How the tables and plots in docs/results name the algorithms."""


def format_table(
    points: Sequence[BudgetPoint],
    corner: str = "algo \\ budget",
    names: dict[str, str] | None = None,
    field: str = "success_rate",
) -> str:
    """Success rate (or another ``BudgetPoint`` field) per algorithm (rows) and budget
    (columns), as a Markdown table; ``names`` renames the rows (e.g. ``ALGO_NAMES``)."""
    budgets = sorted({p.budget for p in points})
    algos = list(dict.fromkeys(p.algo for p in points))
    by = {(p.algo, p.budget): p for p in points}
    lines = [f"| {corner} | " + " | ".join(str(b) for b in budgets) + " |"]
    lines.append("|---|" + "---:|" * len(budgets))
    for algo in algos:
        cells = [f"{getattr(by[(algo, b)], field):.2f}" if (algo, b) in by else "-" for b in budgets]
        lines.append(f"| {(names or {}).get(algo, algo)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curve(points: Sequence[BudgetPoint], path: str, title: str = "success vs search budget") -> None:
    """Success rate against budget, one line per algorithm, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for algo in dict.fromkeys(p.algo for p in points):
        mine = sorted((p for p in points if p.algo == algo), key=lambda p: p.budget)
        ax.plot([p.budget for p in mine], [p.success_rate for p in mine], marker="o", label=algo)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("search budget (proposer calls)")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_panels(panels: Mapping[str, Sequence[BudgetPoint]], path: str, title: str = "") -> None:
    """Several budget curves side by side (one panel per proposer, say), saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4), squeeze=False)
    for ax, (name, points) in zip(axes[0], panels.items(), strict=True):
        for algo in dict.fromkeys(p.algo for p in points):
            mine = sorted((p for p in points if p.algo == algo), key=lambda p: p.budget)
            label = ALGO_NAMES.get(algo, algo)
            ax.plot([p.budget for p in mine], [p.success_rate for p in mine], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("search budget (proposer calls)")
        ax.set_ylabel("success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m plyground.search.evaluate Maze-v0 --budgets 4 8 16 32 --seeds 20 --out DIR``:
    the budget curve with the random proposer (no model), as budget.md, budget.json, budget.png."""
    import argparse
    import json
    from pathlib import Path

    from plyground.envs import make
    from plyground.search.proposer import RandomProposer

    parser = argparse.ArgumentParser(description="success against search budget (random proposer)")
    parser.add_argument("env", nargs="?", default="Maze-v0")
    parser.add_argument("--algos", nargs="+", default=list(ALGOS))
    parser.add_argument("--budgets", nargs="+", type=int, default=[4, 8, 16, 32, 64])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--out", default="search_eval")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    points = budget_curve(
        lambda: make(args.env), args.algos, args.budgets, range(args.seeds), lambda s: RandomProposer(s),
        env_id=args.env,
    )
    table = format_table(points)
    print(table)
    (out / "budget.md").write_text(table + "\n")
    (out / "budget.json").write_text(json.dumps([p.to_dict() for p in points], indent=2) + "\n")
    plot_curve(points, str(out / "budget.png"), f"{args.env}: success vs budget ({args.seeds} seeds, random proposer)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
