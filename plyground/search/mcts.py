"""Monte Carlo tree search over a TextEnv, as in Agent Q (Putta et al. 2024).

One simulation:

1. **Select** from the root with UCT, ``argmax_a Q(h,a) + c_exp * sqrt(log N(h) / (1 + N(h,a)))``,
   or PUCT, ``argmax_a Q(h,a) + c_exp * P(a|h) * sqrt(N(h)) / (1 + N(h,a))`` with ``P`` the softmax
   of the proposer's mean token log-probabilities over the siblings. ``Q`` is Agent Q's mixed value
   ``alpha * Q_mcts + (1 - alpha) * Qhat`` when a critic gave ``Qhat``, else ``Q_mcts``.
   ``N(h)`` is the sum of the children's ``N(h,a)`` (at least 1 inside the log and the square root,
   so that the first pick at a fresh node is decided by ``Q``, the prior and then the tie-break).
2. **Expand** the selected leaf: the proposer samples ``k`` actions (deduped) and every action is
   stepped once to make a child; the critic, when given, scores them (``Qhat`` in [0, 1]: a
   ``SelfCritic`` ranking or a ``ValueCritic`` value model, ``plyground.search.critics``). Then
   one child is selected the same way and the simulation continues from it.
3. **Evaluate**: a finished node is worth its outcome; otherwise ``rollout="policy"`` plays on with
   the proposer (one action per step, batched across the parallel simulations, each step counted
   as a proposer call), ``"random"`` with uniform admissible actions (no model calls: the classic
   default policy), ``"none"`` uses the critic's ``Qhat`` of the node (0 without one; so with
   ``"none"`` a critic shapes the backed-up values whatever ``alpha``, which weights selection only).
   A new child is thus evaluated once before it is itself expanded: every node keeps
   ``visits = N(h) + evaluations`` with ``N(h) = sum_a N(h,a)`` over its children.
4. **Back up** along the path: ``Q <- (Q * N + R) / (N + 1)``, ``N <- N + 1`` on every edge, with
   ``R`` discounted by ``gamma`` per step between the edge and where the value was obtained.

Rewards are normalised into [0, 1]: ``reward="success"`` (default) uses ``R = 1`` for a successful
episode and 0 otherwise (Agent Q's binary outcome); ``reward="return"`` maps the mean step reward
of the episode from the root through ``env.reward_range`` linearly onto [0, 1] (clipped; it falls
back to success when the range is not finite). So every ``Q`` stays in [0, 1].

``parallel > 1`` selects that many paths before expanding them all in one batched proposer call;
while a path is pending every edge on it carries a virtual loss (``virtual_loss`` visits of value
0), which steers the other selections elsewhere; it is removed at backup.

``dedupe=True`` prunes a new child whose state key (``env.state_key()`` or the observation) is
already in the tree (transpositions); a node left without children is failed, as is a node all of
whose children failed, and failed subtrees are not selected again.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Literal

from plyground.envs.core import TextEnv
from plyground.search.critics import Critic
from plyground.search.proposer import ActionProposer, Meter, Proposal, RandomProposer
from plyground.search.tree import (
    EnvOrFactory,
    Node,
    SearchResult,
    SearchStats,
    best_success,
    make_env,
    mark_proved,
    root_node,
    step_child,
    tree_summary,
)


@dataclass
class MCTSConfig:
    """Agent Q's MCTS. The paper does not give ``c_exp``, ``alpha`` or ``k``: these are defaults."""

    simulations: int = 64
    """Simulations to run (each: select, expand, evaluate, back up)."""
    max_calls: int | None = None
    """Budget in proposer calls (chats sent to the policy); None: no limit but ``simulations``."""
    k: int = 4
    """Actions sampled per expansion."""
    c_exp: float = 1.0
    selection: Literal["uct", "puct"] = "uct"
    alpha: float = 0.5
    """Weight of ``Q_mcts`` against the critic's ``Qhat`` (only when a critic is given)."""
    rollout: Literal["policy", "random", "none"] = "policy"
    rollout_depth: int = 20
    """Most steps of a rollout; a rollout cut short is worth 0."""
    reward: Literal["success", "return"] = "success"
    gamma: float = 1.0
    virtual_loss: int = 1
    parallel: int = 1
    """Simulations selected before one batched expansion."""
    max_depth: int | None = None
    """Nodes at this depth are not expanded (they are evaluated by rollout)."""
    dedupe: bool = False
    max_expansions: int = 1
    """Times a node may be sampled: a node left with no live child (its samples were all
    duplicates, or all its children failed) whose samples repeated an action is reopened and
    sampled again at its next selection, until this many expansions; then it fails (a sampling
    proposer can miss the one good action; 1: fail at once)."""
    invalid_is_error: bool = False
    """Treat ``valid_action = False`` steps as errors (failed, never expanded)."""
    stop_on_success: bool = True
    """Stop at the first success (else spend the whole budget, e.g. to grow a tree for pairs)."""
    time_limit_s: float | None = None
    seed: int = 0
    """Seeds the tie-breaks and random rollouts."""

    def __post_init__(self) -> None:
        if self.selection not in ("uct", "puct"):
            raise ValueError(f"selection must be 'uct' or 'puct', got {self.selection!r}")
        if self.rollout not in ("policy", "random", "none"):
            raise ValueError(f"rollout must be 'policy', 'random' or 'none', got {self.rollout!r}")
        if self.reward not in ("success", "return"):
            raise ValueError(f"reward must be 'success' or 'return', got {self.reward!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.k < 1 or self.parallel < 1 or self.simulations < 1:
            raise ValueError("k, parallel and simulations must be >= 1")


# -- selection ---------------------------------------------------------------------------------
def softmax_priors(children: list[Node]) -> None:
    """PUCT priors: softmax of the children's mean token log-probabilities."""
    if not children:
        return
    top = max(c.logprob for c in children)
    weights = [math.exp(c.logprob - top) for c in children]
    total = sum(weights)
    for c, w in zip(children, weights, strict=True):
        c.prior = w / total


def edge_score(node: Node, child: Node, config: MCTSConfig) -> float:
    """The UCT or PUCT score of the edge node -> child, virtual loss included."""
    n_h = sum(c.visits + c.virtual_loss for c in node.children.values())
    n_ha = child.visits + child.virtual_loss
    q_mcts = child.value_sum / n_ha if n_ha else 0.0
    q = q_mcts if child.critic is None else config.alpha * q_mcts + (1 - config.alpha) * child.critic
    if config.selection == "uct":
        return q + config.c_exp * math.sqrt(math.log(max(n_h, 1)) / (1 + n_ha))
    return q + config.c_exp * child.prior * math.sqrt(max(n_h, 1)) / (1 + n_ha)


def select_child(node: Node, config: MCTSConfig, rng: random.Random) -> Node | None:
    """The best live child (not failed), ties broken by prior then at random; None if none."""
    live = [c for c in node.children.values() if c.status != "failed"]
    if not live:
        return None
    return max(live, key=lambda c: (edge_score(node, c, config), c.prior, rng.random()))


def backup(
    path: list[Node], value: float, gamma: float = 1.0, release: list[Node] | None = None, virtual_loss: int = 1
) -> None:
    """Back ``value`` (obtained at ``path[-1]``) up the path: on every edge ``N(h,a) += 1`` and
    ``Q <- (Q * N + R) / (N + 1)`` with ``R = gamma ** (steps from the edge to the end) * value``
    (kept as a value sum: ``Q = value_sum / visits``); the root's own count goes up by one too,
    and ``path[-1].evaluations`` (so ``visits == sum of the children's visits + evaluations``).
    ``release`` lists the nodes whose ``virtual_loss`` this simulation added, removed here."""
    for node in release or []:
        node.virtual_loss -= virtual_loss
    last = len(path) - 1
    for i, node in enumerate(path[1:], start=1):
        node.visits += 1
        node.value_sum += value * gamma ** (last - i)
    path[0].visits += 1
    path[-1].evaluations += 1


def apply_virtual_loss(path: list[Node], virtual_loss: int = 1) -> None:
    """A pending simulation's virtual loss on every edge of ``path``: ``virtual_loss`` extra
    visits of value 0, which lower the edge's Q and raise its count for the other selections."""
    for node in path[1:]:
        node.virtual_loss += virtual_loss


# -- the search ----------------------------------------------------------------------------------
class _MCTS:
    def __init__(
        self,
        env: TextEnv,
        proposer: ActionProposer,
        config: MCTSConfig,
        critic: Critic | None,
        env_id: str,
    ) -> None:
        self.env, self.proposer, self.config, self.critic = env, proposer, config, critic
        self.env_id = env_id
        self.rng = random.Random(config.seed)
        self.random_policy = RandomProposer(seed=config.seed + 1)
        self.random_policy.prepare(env)
        self.stats = SearchStats()
        self.meter = Meter(proposer, critic)
        self.seen: set[str] = set()
        self.rollout_successes: list[Node] = []
        self.repeated: set[int] = set()  # nodes whose last samples repeated an action

    # budget
    def calls_left(self) -> int:
        if self.config.max_calls is None:
            return 1 << 60
        return self.config.max_calls - self.meter.prompts()

    def out_of_time(self) -> bool:
        return self.config.time_limit_s is not None and self.meter.elapsed() > self.config.time_limit_s

    def select(self, root: Node) -> list[Node] | None:
        path = [root]
        node = root
        while node.expanded and not node.done:
            child = select_child(node, self.config, self.rng)
            if child is None:
                return None
            path.append(child)
            node = child
        apply_virtual_loss(path, self.config.virtual_loss)
        return path

    def expandable(self, node: Node) -> bool:
        return not node.done and (self.config.max_depth is None or node.depth < self.config.max_depth)

    def expand(self, leaves: list[Node]) -> None:
        proposals = self.proposer.propose(leaves, self.config.k)
        if self.critic is not None:
            self.critic_scores(leaves, proposals)
        for leaf, props in zip(leaves, proposals, strict=True):
            self.add_children(leaf, props)

    def critic_scores(self, leaves: list[Node], proposals: list[list[Proposal]]) -> None:
        assert self.critic is not None
        scores = self.critic.score(leaves, proposals)
        for props, qs in zip(proposals, scores, strict=True):
            for prop, q in zip(props, qs, strict=True):
                # None, NaN or an infinity: no critic value (the edge is ranked by Q_mcts alone)
                prop.critic = float(q) if q is not None and math.isfinite(q) else None

    def add_children(self, leaf: Node, props: list[Proposal]) -> None:
        leaf.expanded = True
        leaf.expansions += 1
        self.stats.nodes_expanded += 1
        if any(p.count > 1 for p in props):
            self.repeated.add(id(leaf))
        else:
            self.repeated.discard(id(leaf))
        for prop in props:
            if prop.action in leaf.children:  # sampled again at a reopened node
                self.stats.duplicates += 1
                continue
            child = step_child(
                self.env, leaf, prop.action, prop.reply, prop.logprob, prop.completion, self.config.invalid_is_error
            )
            self.stats.env_steps += 1
            child.critic = prop.critic
            if child.error:
                self.stats.errors += 1
            if self.config.dedupe and not child.done:
                if child.key in self.seen:
                    self.stats.duplicates += 1
                    continue
                self.seen.add(child.key)
            leaf.children[prop.action] = child
            self.stats.nodes_created += 1
        softmax_priors(list(leaf.children.values()))
        if any(c.status == "proved" for c in leaf.children.values()):
            mark_proved(leaf)
        else:
            self.fail_or_reopen(leaf)

    def fail_or_reopen(self, node: Node) -> None:
        """A node with no live child left fails, and so on up the tree; but a node that may be
        sampled again is reopened instead (its next selection expands it): one sampled fewer
        than ``max_expansions`` times whose last samples repeated an action (so the proposer may
        have more to offer; a proposer that gave K distinct actions is not asked again)."""
        current: Node | None = node
        while current is not None and current.status == "open":
            if any(c.status != "failed" for c in current.children.values()):
                return
            may_retry = current.expansions < self.config.max_expansions and id(current) in self.repeated
            if may_retry and self.expandable(current):
                current.expanded = False
                return
            current.status = "failed"
            current = current.parent

    def terminal_value(self, node: Node) -> float:
        if self.config.reward == "success":
            return 1.0 if node.success else 0.0
        lo, hi = self.env.reward_range
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo or node.depth == 0:
            return 1.0 if node.success else 0.0
        mean = node.total_reward / node.depth
        return min(1.0, max(0.0, (mean - lo) / (hi - lo)))

    def rollouts(self, starts: list[Node]) -> list[float]:
        """Values of the simulation end nodes, rolling out the unfinished ones in lockstep."""
        values = [0.0] * len(starts)
        live: list[tuple[int, Node, int]] = []
        for i, node in enumerate(starts):
            if node.done:
                values[i] = self.terminal_value(node)
            elif self.config.rollout == "none":
                values[i] = node.critic if node.critic is not None else 0.0
            else:
                live.append((i, node, 0))
        while live:
            if self.config.rollout == "policy":
                budget = self.calls_left()
                if budget <= 0:
                    break
                live = live[:budget]
                props = self.proposer.propose([n for _, n, _ in live], 1)
            else:
                props = self.random_policy.propose([n for _, n, _ in live], 1)
            nxt = []
            for (i, node, steps), prop in zip(live, props, strict=True):
                if not prop:
                    continue
                p = prop[0]
                child = step_child(self.env, node, p.action, p.reply, p.logprob, p.completion, False)
                self.stats.env_steps += 1
                if child.done:
                    values[i] = self.terminal_value(child) * self.config.gamma ** (steps + 1)
                    if child.success:
                        self.rollout_successes.append(child)
                elif steps + 1 < self.config.rollout_depth:
                    nxt.append((i, child, steps + 1))
            live = nxt
        return values

    def run(self, seed: int | None, options: dict[str, Any] | None) -> SearchResult:
        self.proposer.prepare(self.env)
        if self.critic is not None:
            self.critic.prepare(self.env)
        root = root_node(self.env, seed, options)
        self.seen.add(root.key)
        stop = ""
        while not stop:
            if self.stats.simulations >= self.config.simulations:
                stop = "budget"
                break
            if self.calls_left() <= 0:
                stop = "budget"
                break
            if self.out_of_time():
                stop = "time"
                break
            paths: list[list[Node]] = []
            for _ in range(min(self.config.parallel, self.config.simulations - self.stats.simulations)):
                path = self.select(root)
                if path is None:
                    break
                paths.append(path)
            if not paths:
                stop = "exhausted"
                break
            vl_lens = [len(p) for p in paths]
            to_expand: list[Node] = []
            for path in paths:
                leaf = path[-1]
                if self.expandable(leaf) and not leaf.expanded and leaf not in to_expand:
                    to_expand.append(leaf)
            to_expand = to_expand[: max(self.calls_left(), 0)]
            if to_expand:
                self.expand(to_expand)
            kept = []
            for path, n_vl in zip(paths, vl_lens, strict=True):
                leaf = path[-1]
                if self.expandable(leaf) and not leaf.expanded and leaf not in to_expand:  # out of budget
                    for node in path[1:n_vl]:
                        node.virtual_loss -= self.config.virtual_loss
                else:
                    kept.append((path, n_vl))
            if not kept:
                stop = "budget"
                break
            paths, vl_lens = [p for p, _ in kept], [n for _, n in kept]
            ends: list[Node] = []
            for path in paths:
                leaf = path[-1]
                if leaf.expanded and not leaf.done and leaf.children:
                    # Continue into a fresh child; failed ones (finished episodes) count too here,
                    # so that every visit of an expanded node passes to a child: N(h) = sum N(h,a).
                    child = select_child(leaf, self.config, self.rng) or max(
                        leaf.children.values(), key=lambda c: (edge_score(leaf, c, self.config), self.rng.random())
                    )
                    path.append(child)
                ends.append(path[-1])
            values = self.rollouts(ends)
            for path, value, n_vl in zip(paths, values, vl_lens, strict=True):
                if path[-1].expanded and not path[-1].children:  # a dead end: nothing to back up
                    for node in path[1:n_vl]:
                        node.virtual_loss -= self.config.virtual_loss
                else:
                    backup(path, value, self.config.gamma, path[1:n_vl], self.config.virtual_loss)
                self.stats.simulations += 1
            if root.status == "failed":
                stop = "exhausted"
            elif self.config.stop_on_success and (self.rollout_successes or any(p[-1].success for p in paths)):
                stop = "solved"
        return self.result(root, seed, stop)

    def result(self, root: Node, seed: int | None, stop: str) -> SearchResult:
        found = best_success(root)
        for node in self.rollout_successes:
            if found is None or node.depth < found.depth:
                found = node
        if found is not None:
            best = found
        else:  # the principal variation: most visited children
            best = root
            while best.children:
                best = max(best.children.values(), key=lambda c: (c.visits, c.q_mcts))
        self.stats.stopped = stop
        self.meter.fill(self.stats)
        traj = best.trajectory(self.env_id, seed)
        traj.success = best.success
        return SearchResult(
            algo="mcts",
            env_id=self.env_id,
            seed=seed,
            success=found is not None,
            trajectory=traj,
            stats=self.stats,
            tree=tree_summary(root),
            instructions=self.proposer.instructions,
            root=root,
        )


def mcts(
    env: EnvOrFactory,
    proposer: ActionProposer,
    config: MCTSConfig | None = None,
    critic: Critic | None = None,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    env_id: str = "",
) -> SearchResult:
    """Run Agent Q's MCTS on the episode ``env.reset(seed=seed, options=options)``."""
    return _MCTS(make_env(env), proposer, config or MCTSConfig(), critic, env_id).run(seed, options)
