"""MCTS on tiny deterministic trees: backups, N(h) = sum_a N(h,a), Q in [0, 1], virtual loss,
PUCT priors, value mixing, and MCTS against best-of-N on Maze-v0."""

from __future__ import annotations

import math
import random
import time

import pytest
from chain_env import ChainEnv, FixedProposer

from plyground.envs import make
from plyground.search import MCTSConfig, Node, Proposal, RandomProposer, mcts
from plyground.search.baselines import BestOfNConfig, best_of_n
from plyground.search.mcts import apply_virtual_loss, backup, edge_score, select_child, softmax_priors


def check_tree(root: Node) -> None:
    for node in root.walk():
        assert 0.0 <= node.q_mcts <= 1.0
        assert node.virtual_loss == 0
        # N(h) = sum_a N(h, a): every visit went on into a child, except the simulations
        # evaluated at the node itself (at most once before it is expanded, or a finished node).
        assert node.visits == node.child_visits + node.evaluations
        if node.expanded:
            assert node.evaluations <= 1
    assert root.evaluations == 0 and root.visits == root.child_visits


@pytest.mark.parametrize("parallel", [1, 4])
@pytest.mark.parametrize("rollout", ["random", "policy"])
def test_uct_backups_keep_visit_sums_and_q_in_range(parallel: int, rollout: str) -> None:
    cfg = MCTSConfig(simulations=60, k=4, rollout=rollout, stop_on_success=False, parallel=parallel, seed=1)
    result = mcts(ChainEnv(), RandomProposer(seed=1), cfg, seed=0)
    assert result.root is not None and result.root.visits == result.stats.simulations == 60
    check_tree(result.root)
    assert result.success  # 3 letters, 27 words: 60 simulations find "abc"
    assert any(c.q_mcts > 0 for c in result.root.children.values())


def test_backup_is_the_running_mean_and_releases_virtual_loss() -> None:
    root = Node(None, "root")
    child = Node(None, "x", parent=root, depth=1)
    leaf = Node(None, "y", parent=child, depth=2)
    root.children["x"], child.children["y"] = child, leaf
    path = [root, child, leaf]
    for value in (1.0, 0.0, 1.0):
        apply_virtual_loss(path, 3)
        assert child.virtual_loss == leaf.virtual_loss == 3
        q_before, n_before = child.q_mcts, child.visits
        backup(path, value, release=path[1:], virtual_loss=3)
        assert child.virtual_loss == leaf.virtual_loss == 0
        assert child.q_mcts == pytest.approx((q_before * n_before + value) / (n_before + 1))
    assert (root.visits, child.visits, leaf.visits, leaf.evaluations) == (3, 3, 3, 3)
    assert child.q_mcts == pytest.approx(2 / 3)
    backup(path, 1.0, gamma=0.5)
    assert leaf.value_sum == pytest.approx(3.0) and child.value_sum == pytest.approx(2.5)


def test_virtual_loss_steers_parallel_selections_apart() -> None:
    root = Node(None, "root")
    for a in "ab":
        root.children[a] = Node(None, a, parent=root, depth=1, visits=1, value_sum=0.5)
    cfg = MCTSConfig()
    rng = random.Random(0)
    first = select_child(root, cfg, rng)
    assert first is not None
    apply_virtual_loss([root, first], 1)
    second = select_child(root, cfg, rng)
    assert second is not None and second is not first


def test_uct_and_puct_scores() -> None:
    root = Node(None, "root")
    kids = [Node(None, a, parent=root, depth=1, logprob=lp) for a, lp in (("a", -0.1), ("b", -2.0), ("c", -5.0))]
    for k in kids:
        root.children[k.observation] = k
    softmax_priors(kids)
    assert sum(k.prior for k in kids) == pytest.approx(1.0)
    assert kids[0].prior > kids[1].prior > kids[2].prior
    puct = MCTSConfig(selection="puct", c_exp=2.0)
    # Unvisited: the prior decides.
    assert select_child(root, puct, random.Random(0)) is kids[0]
    kids[0].visits, kids[0].value_sum = 3, 0.0
    kids[1].visits, kids[1].value_sum = 1, 1.0
    n_h = 4
    assert edge_score(root, kids[1], puct) == pytest.approx(1.0 + 2.0 * kids[1].prior * math.sqrt(n_h) / 2)
    uct = MCTSConfig(selection="uct", c_exp=2.0)
    assert edge_score(root, kids[0], uct) == pytest.approx(0.0 + 2.0 * math.sqrt(math.log(n_h) / 4))
    # Value mixing with a critic value: alpha * Q_mcts + (1 - alpha) * Qhat.
    kids[2].critic = 0.8
    mix = MCTSConfig(selection="uct", c_exp=0.0, alpha=0.25)
    assert edge_score(root, kids[2], mix) == pytest.approx(0.75 * 0.8)
    assert kids[1].q(0.25) == pytest.approx(1.0)  # no critic value: Q_mcts


def test_puct_search_follows_the_prior_to_the_answer() -> None:
    # The proposer's log-probabilities favour "a", then "b", then "c": with no value signal
    # (no rollouts, no critic) PUCT spends its visits in the order of the priors.
    cfg = MCTSConfig(simulations=40, k=3, selection="puct", rollout="none", seed=0)
    proposer = FixedProposer({"a": -0.1, "b": -1.0, "c": -2.0})
    result = mcts(ChainEnv(target="aaa"), proposer, cfg, seed=0)
    assert result.success and result.stats.simulations <= 6
    assert proposer.expanded[:2] == ["", "a"] and "aa" in proposer.expanded
    assert result.root is not None
    visits = {a: c.visits for a, c in result.root.children.items()}
    assert visits["a"] == max(visits.values()) and visits["c"] <= visits["b"]


def test_dedupe_prunes_transpositions_and_dead_ends_fail() -> None:
    cfg = MCTSConfig(simulations=200, k=4, rollout="none", dedupe=True, stop_on_success=False)
    proposer = FixedProposer({"a": 0.0, "b": 0.0, "c": 0.0, "wait": 0.0})
    result = mcts(ChainEnv(target="xyz"), proposer, cfg, seed=0)  # unreachable: the tree is finite
    assert result.root is not None
    assert result.stats.duplicates > 0
    assert all("wait" not in n.children for n in result.root.walk())
    # 1 + 3 + 9 nodes expanded, every leaf a failure: the root fails and the search stops.
    assert result.stats.stopped == "exhausted" and result.root.status == "failed"
    assert result.stats.nodes_expanded == 13 and not result.success
    check_tree(result.root)


def test_mcts_beats_best_of_n_on_maze_at_equal_proposer_calls() -> None:
    start = time.perf_counter()
    seeds, budget = range(12), 16

    def maze() -> object:
        return make("Maze-v0")

    wins_mcts = wins_bon = 0
    for s in seeds:
        cfg = MCTSConfig(simulations=1000, max_calls=budget, k=4, rollout="none", dedupe=True, seed=s)
        r1 = mcts(maze, RandomProposer(seed=s), cfg, seed=s)  # type: ignore[arg-type]
        r2 = best_of_n(
            maze,  # type: ignore[arg-type]
            RandomProposer(seed=s),
            BestOfNConfig(n=budget, parallel=1, max_calls=budget, stop_on_success=True),
            seed=s,
        )
        assert r1.stats.proposer_calls <= budget and r2.stats.proposer_calls <= budget
        wins_mcts += r1.success
        wins_bon += r2.success
    assert wins_mcts > wins_bon, (wins_mcts, wins_bon)
    assert time.perf_counter() - start < 20


class StubbornProposer(FixedProposer):
    """At its first call for a node it repeats "wait" (a transposition): a sampler that missed."""

    def __init__(self) -> None:
        super().__init__({"a": 0.0, "b": 0.0, "c": 0.0})
        self.asked: set[str] = set()

    def propose(self, nodes, k):  # type: ignore[no-untyped-def]
        out = super().propose(nodes, k)
        for i, node in enumerate(nodes):
            if node.key not in self.asked:
                self.asked.add(node.key)
                out[i] = [Proposal("wait", "wait", 0.0, count=k)]
        return out


def test_a_node_whose_samples_repeated_is_sampled_again() -> None:
    cfg = MCTSConfig(simulations=200, k=3, rollout="none", dedupe=True, max_expansions=1)
    once = mcts(ChainEnv(), StubbornProposer(), cfg, seed=0)
    assert not once.success and once.stats.stopped == "exhausted" and once.stats.proposer_calls == 1
    retry = mcts(ChainEnv(), StubbornProposer(), MCTSConfig(**{**cfg.__dict__, "max_expansions": 2}), seed=0)
    assert retry.success and retry.root is not None
    for node in retry.root.walk():
        assert node.visits == node.child_visits + node.evaluations
