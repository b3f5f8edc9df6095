"""Baselines for the searches: beam search and best-of-N.

- **Beam search** keeps the ``width`` best open nodes per depth; each depth expands the whole beam
  in ONE proposer call (``k`` samples per node) and scores the children by cumulative mean-token
  log-probability (``score="logprob"``) or by the env reward collected so far (``score="reward"``,
  ties broken by log-probability). It stops at the first success.
- **Best-of-N** plays ``n`` independent episodes with the policy (one action per step, the live
  episodes of a step batched into one call, at most ``parallel`` at once) and returns the best:
  successful first, then the highest return, then the highest log-probability.

Both spend proposer calls as the other searches do (one per chat), so ``max_calls`` puts them on
the same budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from plyground.search.proposer import ActionProposer, Meter
from plyground.search.tree import (
    EnvOrFactory,
    Node,
    SearchResult,
    SearchStats,
    make_env,
    root_node,
    settle,
    step_child,
    tree_summary,
)


@dataclass
class BeamConfig:
    width: int = 4
    """Nodes kept per depth."""
    k: int = 4
    """Actions sampled per beam node."""
    depth: int | None = None
    """Most steps; default the env's ``max_turns``."""
    score: Literal["logprob", "reward"] = "logprob"
    max_calls: int | None = None
    dedupe: bool = True

    def __post_init__(self) -> None:
        if self.score not in ("logprob", "reward"):
            raise ValueError(f"score must be 'logprob' or 'reward', got {self.score!r}")
        if self.width < 1 or self.k < 1:
            raise ValueError("width and k must be >= 1")


def beam_search(
    env: EnvOrFactory,
    proposer: ActionProposer,
    config: BeamConfig | None = None,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    env_id: str = "",
) -> SearchResult:
    config = config or BeamConfig()
    env_ = make_env(env)
    proposer.prepare(env_)
    meter, stats = Meter(proposer), SearchStats()
    root = root_node(env_, seed, options)
    seen = {root.key}
    beam = [root]
    found: Node | None = None
    stop = "exhausted"
    for _ in range(config.depth or env_.max_turns):
        if config.max_calls is not None:
            beam = beam[: max(config.max_calls - meter.prompts(), 0)]
            if not beam:
                stop = "budget"
                break
        candidates: list[Node] = []
        for node, props in zip(beam, proposer.propose(beam, config.k), strict=True):
            node.expanded = True
            stats.nodes_expanded += 1
            for prop in props:
                child = step_child(env_, node, prop.action, prop.reply, prop.logprob, prop.completion, False)
                stats.env_steps += 1
                if config.dedupe and not child.done and child.key in seen:
                    stats.duplicates += 1
                    continue
                seen.add(child.key)
                node.children[prop.action] = child
                stats.nodes_created += 1
                if child.success and (found is None or child.depth < found.depth):
                    found = child
                elif not child.done:
                    candidates.append(child)
            settle(node)
        if found is not None:
            stop = "solved"
            break
        if config.score == "logprob":
            candidates.sort(key=lambda n: n.cum_logprob, reverse=True)
        else:
            candidates.sort(key=lambda n: (n.total_reward, n.cum_logprob), reverse=True)
        beam = candidates[: config.width]
        if not beam:
            break
    else:
        stop = "done"
    stats.stopped = stop
    meter.fill(stats)
    if found is not None:
        best = found
    else:
        leaves = [n for n in root.walk() if not n.children] or [root]
        best = max(leaves, key=lambda n: (n.depth, n.total_reward, n.cum_logprob))
    return SearchResult(
        "beam", env_id, seed, found is not None, best.trajectory(env_id, seed), stats, tree_summary(root),
        proposer.instructions, root,
    )


@dataclass
class BestOfNConfig:
    n: int = 8
    """Episodes to play (fewer when ``max_calls`` runs out first)."""
    parallel: int = 8
    """Episodes in flight at once (their steps share one batched call)."""
    max_steps: int | None = None
    """Most steps per episode; default the env's ``max_turns``."""
    max_calls: int | None = None
    stop_on_success: bool = False
    """Stop at the first successful episode (for budget curves) instead of playing all ``n``."""

    def __post_init__(self) -> None:
        if self.n < 1 or self.parallel < 1:
            raise ValueError("n and parallel must be >= 1")


def best_of_n(
    env: EnvOrFactory,
    proposer: ActionProposer,
    config: BestOfNConfig | None = None,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    env_id: str = "",
) -> SearchResult:
    config = config or BestOfNConfig()
    env_ = make_env(env)
    proposer.prepare(env_)
    meter, stats = Meter(proposer), SearchStats()
    root = root_node(env_, seed, options)
    max_steps = config.max_steps or env_.max_turns
    started = 0
    finished: list[Node] = []
    live: list[Node] = []
    stop = "done"
    while True:
        while started < config.n and len(live) < config.parallel:
            live.append(root)
            started += 1
        if not live:
            break
        if config.max_calls is not None:
            room = config.max_calls - meter.prompts()
            if room <= 0:
                stop = "budget"
                finished.extend(n for n in live if n is not root)
                break
            live = live[:room]
        nxt = []
        for node, props in zip(live, proposer.propose(live, 1), strict=True):
            stats.nodes_expanded += 1
            if not props:
                finished.append(node)
                continue
            p = props[0]
            child = step_child(env_, node, p.action, p.reply, p.logprob, p.completion, False)
            stats.env_steps += 1
            stats.nodes_created += 1
            if child.done or child.depth >= max_steps:
                finished.append(child)
            else:
                nxt.append(child)
        live = nxt
        if config.stop_on_success and any(n.success for n in finished):
            stop = "solved"
            break
    stats.simulations = len(finished)
    stats.stopped = stop
    meter.fill(stats)
    best = max(finished, key=lambda n: (n.success, n.total_reward, n.cum_logprob)) if finished else root
    traj = best.trajectory(env_id, seed)
    traj.metadata["episodes"] = len(finished)
    result = SearchResult(
        "best-of-n", env_id, seed, best.success, traj, stats, {"episodes": len(finished)}, proposer.instructions, root
    )
    result.tree["successes"] = sum(n.success for n in finished)
    return result
