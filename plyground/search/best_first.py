"""Best-first search over a TextEnv, as in BFS-Prover (ByteDance Seed 2025).

The frontier is a priority queue of open nodes scored by the length-normalised log-probability
``priority = cum_logprob / depth ** alpha`` (``cum_logprob`` sums the mean token log-probabilities
of the actions on the path; ``alpha`` is the reference script's ``depth_reward``, 2.0: a larger
``alpha`` favours deeper nodes). Each step pops the ``batch`` best nodes and expands them all with
ONE proposer call (``width`` samples each, deduped). A child is:

- ``error`` (failed) when the env flags the action invalid (``info["valid_action"] = False``,
  BFS-Prover's tactic error), raises, or the step exceeds ``step_time_limit_s``;
- dropped as a duplicate when its state key (``env.state_key()`` or the observation) is already in
  the tree (``dedupe``);
- ``proved`` when the episode succeeds, or when its state is in the :class:`SolvedCache` (the
  cached actions are replayed to complete the path);
- ``failed`` when the episode ends without success;
- otherwise open, and pushed onto the frontier.

A node is proved if any child is proved and failed if all its children failed (or none was
left); both propagate to the root. The search stops when the root is proved or failed, or at
``max_nodes`` expansions, ``max_calls`` proposer calls or ``time_limit_s``.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from plyground.envs.core import TextEnv
from plyground.search.proposer import ActionProposer, Meter
from plyground.search.tree import (
    EnvOrFactory,
    Node,
    SearchResult,
    SearchStats,
    make_env,
    mark_proved,
    root_node,
    settle,
    step_child,
    tree_summary,
)


@dataclass
class BestFirstConfig:
    """BFS-Prover's search; defaults from the V2 reference script where it gives them."""

    width: int = 4
    """Actions sampled per expanded node (expansion width)."""
    alpha: float = 2.0
    """Depth exponent of the priority (``depth_reward``)."""
    max_nodes: int = 256
    """Most node expansions per problem."""
    max_calls: int | None = None
    """Budget in proposer calls; None: bounded by ``max_nodes``."""
    batch: int = 1
    """Frontier nodes expanded per batched proposer call."""
    dedupe: bool = True
    time_limit_s: float | None = 600.0
    """Per problem."""
    step_time_limit_s: float | None = 12.0
    """Per env step (per tactic); a slower step is an error."""
    max_depth: int | None = None
    forbidden: tuple[str, ...] = ()
    """Actions containing any of these strings are dropped (BFS-Prover: sorry, admit, native_decide)."""

    def __post_init__(self) -> None:
        if self.width < 1 or self.batch < 1 or self.max_nodes < 1:
            raise ValueError("width, batch and max_nodes must be >= 1")


def priority(node: Node, alpha: float) -> float:
    """``cum_logprob / depth ** alpha``; the root's is 0."""
    return node.cum_logprob / node.depth**alpha if node.depth > 0 else 0.0


class SolvedStates(Protocol):
    """What best-first needs from a solved-state cache: :class:`SolvedCache` in-process, or
    :class:`plyground.search.ray_cache.RaySolvedCache` shared by searches on a Ray cluster."""

    def get(self, key: str) -> tuple[str, ...] | None: ...

    def put(self, key: str, actions: tuple[str, ...]) -> None: ...

    def record(self, success: Node) -> None: ...

    def items(self) -> list[tuple[str, tuple[str, ...]]]: ...

    def __contains__(self, key: object) -> bool: ...

    def __len__(self) -> int: ...


def solved_suffixes(success: Node) -> list[tuple[str, tuple[str, ...]]]:
    """(state key, the actions left to success) for every state on the path to ``success``."""
    path = success.path()
    actions = [n.action or "" for n in path[1:]]
    return [(node.key, tuple(actions[i:])) for i, node in enumerate(path[:-1])]


class SolvedCache:
    """Solved states, shared across searches and threads: state key -> the actions that finish
    the episode from that state (the shortest known). Thread-safe (one lock). On Ray,
    :class:`plyground.search.ray_cache.RaySolvedCache` holds one in an actor so that searches in
    many worker processes share it (``shared_solved_cache()`` picks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._solved: dict[str, tuple[str, ...]] = {}
        self.hits = 0

    def get(self, key: str) -> tuple[str, ...] | None:
        with self._lock:
            found = self._solved.get(key)
            if found is not None:
                self.hits += 1
            return found

    def put(self, key: str, actions: tuple[str, ...]) -> None:
        with self._lock:
            old = self._solved.get(key)
            if old is None or len(actions) < len(old):
                self._solved[key] = actions

    def put_many(self, items: list[tuple[str, tuple[str, ...]]]) -> None:
        for key, actions in items:
            self.put(key, tuple(actions))

    def record(self, success: Node) -> None:
        """Cache every state on the path to ``success`` with the actions left from it."""
        self.put_many(solved_suffixes(success))

    def info(self) -> dict[str, int]:
        """``size`` (states cached) and ``hits`` (lookups that found one)."""
        with self._lock:
            return {"size": len(self._solved), "hits": self.hits}

    def items(self) -> list[tuple[str, tuple[str, ...]]]:
        """Every cached state with its actions (for checkpoints)."""
        with self._lock:
            return list(self._solved.items())

    def contains(self, key: str) -> bool:
        """``key in cache`` without counting a hit (a method, so a Ray actor can serve it)."""
        with self._lock:
            return key in self._solved

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.contains(key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._solved)


class _BestFirst:
    def __init__(
        self,
        env: TextEnv,
        proposer: ActionProposer,
        config: BestFirstConfig,
        cache: SolvedStates | None,
        env_id: str,
    ) -> None:
        self.env, self.proposer, self.config, self.cache = env, proposer, config, cache
        self.env_id = env_id
        self.stats = SearchStats()
        self.meter = Meter(proposer)
        self.seen: set[str] = set()
        self.heap: list[tuple[float, int, Node]] = []
        self.counter = itertools.count()
        self.success: Node | None = None

    def push(self, node: Node) -> None:
        heapq.heappush(self.heap, (-priority(node, self.config.alpha), next(self.counter), node))

    def replay_cached(self, node: Node) -> bool:
        """Complete ``node`` with the cached actions of its state; True when that succeeds."""
        if self.cache is None:
            return False
        actions = self.cache.get(node.key)
        if actions is None:
            return False
        current = node
        for action in actions:
            child = step_child(self.env, current, action, action, 0.0, None, True, None)
            self.stats.env_steps += 1
            current.children[action] = child
            current.expanded = True
            current = child
            if child.done:
                break
        if current.success:
            mark_proved(current)
            self.success = current
            return True
        return False

    def expand(self, nodes: list[Node]) -> None:
        proposals = self.proposer.propose(nodes, self.config.width)
        for node, props in zip(nodes, proposals, strict=True):
            node.expanded = True
            self.stats.nodes_expanded += 1
            for prop in props:
                if any(bad in prop.action for bad in self.config.forbidden):
                    continue
                child = step_child(
                    self.env,
                    node,
                    prop.action,
                    prop.reply,
                    prop.logprob,
                    prop.completion,
                    True,
                    self.config.step_time_limit_s,
                )
                self.stats.env_steps += 1
                if child.error:
                    child.status = "failed"
                    self.stats.errors += 1
                elif self.config.dedupe and not child.done and child.key in self.seen:
                    self.stats.duplicates += 1
                    continue
                node.children[prop.action] = child
                self.stats.nodes_created += 1
                if child.error:
                    continue
                self.seen.add(child.key)
                if child.success:
                    if self.success is None or child.depth < self.success.depth:
                        self.success = child
                elif not child.done and not self.replay_cached(child):
                    depth_ok = self.config.max_depth is None or child.depth < self.config.max_depth
                    if depth_ok:
                        self.push(child)
                    else:
                        child.status = "failed"
            settle(node)

    def run(self, seed: int | None, options: dict[str, Any] | None) -> SearchResult:
        self.proposer.prepare(self.env)
        root = root_node(self.env, seed, options)
        self.seen.add(root.key)
        stop = ""
        if self.replay_cached(root):
            stop = "solved"
        else:
            self.push(root)
        while not stop:
            if root.status == "proved":
                stop = "solved"
            elif root.status == "failed" or not self.heap:
                stop = "exhausted"
            elif self.stats.nodes_expanded >= self.config.max_nodes or (self.config.max_calls is not None and self.meter.prompts() >= self.config.max_calls):
                stop = "budget"
            elif self.config.time_limit_s is not None and self.meter.elapsed() > self.config.time_limit_s:
                stop = "time"
            if stop:
                break
            room = self.config.max_nodes - self.stats.nodes_expanded
            if self.config.max_calls is not None:
                room = min(room, self.config.max_calls - self.meter.prompts())
            batch: list[Node] = []
            while self.heap and len(batch) < min(self.config.batch, room):
                _, _, node = heapq.heappop(self.heap)
                if node.status == "open":
                    batch.append(node)
            if batch:
                self.expand(batch)
        if self.success is not None and self.cache is not None:
            self.cache.record(self.success)
        return self.result(root, seed, stop)

    def result(self, root: Node, seed: int | None, stop: str) -> SearchResult:
        self.stats.stopped = stop
        self.meter.fill(self.stats)
        if self.success is not None:
            best = self.success
        else:
            live = [n for n in root.walk() if not n.error]
            best = max(live, key=lambda n: (n.depth > 0, priority(n, self.config.alpha)))
        return SearchResult(
            algo="bfs",
            env_id=self.env_id,
            seed=seed,
            success=self.success is not None,
            trajectory=best.trajectory(self.env_id, seed),
            stats=self.stats,
            tree=tree_summary(root),
            instructions=self.proposer.instructions,
            root=root,
        )


def best_first(
    env: EnvOrFactory,
    proposer: ActionProposer,
    config: BestFirstConfig | None = None,
    cache: SolvedStates | None = None,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    env_id: str = "",
) -> SearchResult:
    """Run BFS-Prover's best-first search on the episode ``env.reset(seed=seed, options=options)``."""
    return _BestFirst(make_env(env), proposer, config or BestFirstConfig(), cache, env_id).run(seed, options)
