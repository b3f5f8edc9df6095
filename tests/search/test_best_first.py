"""Best-first search: priority order, proved/failed propagation, dedupe, the solved cache,
time limits; beam search and best-of-N on the same tiny env."""

from __future__ import annotations

import threading

import pytest
from chain_env import ChainEnv, FixedProposer

from plyground.search import (
    BeamConfig,
    BestFirstConfig,
    BestOfNConfig,
    Node,
    SolvedCache,
    beam_search,
    best_first,
    best_of_n,
    priority,
)
from plyground.search.best_first import _BestFirst
from plyground.search.tree import mark_failed, settle

LOGPROBS = {"a": -0.1, "b": -1.0, "c": -2.0}


def test_priority_is_length_normalised_cum_logprob() -> None:
    nodes = [Node(None, str(d), depth=d, cum_logprob=-float(d)) for d in (1, 2, 3)]
    assert [priority(n, 2.0) for n in nodes] == pytest.approx([-1.0, -0.5, -1 / 3])
    assert [priority(n, 0.0) for n in nodes] == pytest.approx([-1.0, -2.0, -3.0])
    assert priority(Node(None, "root"), 2.0) == 0.0


@pytest.mark.parametrize(("alpha", "order"), [(2.0, ["3", "2", "1"]), (0.0, ["1", "2", "3"])])
def test_frontier_pops_in_priority_order(alpha: float, order: list[str]) -> None:
    search = _BestFirst(ChainEnv(), FixedProposer({}), BestFirstConfig(alpha=alpha), None, "")
    for d in (2, 1, 3):  # pushed out of order
        search.push(Node(None, str(d), depth=d, cum_logprob=-float(d)))
    import heapq

    popped = [heapq.heappop(search.heap)[2].observation for _ in range(3)]
    assert popped == order


def test_best_first_expands_by_cumulative_logprob() -> None:
    # alpha = 0: priority = cum_logprob. Root -> a (-0.1) -> aa (-0.2): its children are all
    # wrong words (failed), then b (-1.0) beats ab (-1.1), then ab, whose child abc is the answer.
    proposer = FixedProposer(LOGPROBS)
    result = best_first(ChainEnv(target="abc"), proposer, BestFirstConfig(width=3, alpha=0.0), seed=0)
    assert proposer.expanded == ["", "a", "aa", "b", "ab"]
    assert result.success and [t.action for t in result.trajectory.turns] == ["a", "b", "c"]  # type: ignore[union-attr]
    root = result.root
    assert root is not None and root.status == "proved"
    assert root.children["a"].children["a"].status == "failed"  # every child a wrong word
    assert root.children["a"].status == "proved" and root.children["b"].status == "open"


def test_depth_reward_goes_deep_first() -> None:
    proposer = FixedProposer({"c": -1.0, "a": -1.0, "b": -1.0})
    best_first(ChainEnv(target="ccc"), proposer, BestFirstConfig(width=3, alpha=2.0), seed=0)
    assert proposer.expanded[:3] == ["", "c", "cc"]


def test_proved_and_failed_propagate() -> None:
    root = Node(None, "root")
    x = Node(None, "x", parent=root, depth=1)
    y = Node(None, "y", parent=root, depth=1)
    root.children = {"x": x, "y": y}
    x.children = {"x1": Node(None, "x1", parent=x, status="failed"), "x2": Node(None, "x2", parent=x, status="failed")}
    settle(x)
    assert x.status == "failed" and root.status == "open"  # y is still open
    y.children = {"y1": Node(None, "y1", parent=y, status="failed"), "y2": Node(None, "y2", parent=y, status="proved")}
    settle(y)
    assert y.status == "proved" and root.status == "proved"
    # A proved node is never failed afterwards; a node with no children left fails.
    mark_failed(y)
    assert y.status == "proved"
    lone = Node(None, "lone", parent=Node(None, "p"))
    lone.parent.children = {"lone": lone}  # type: ignore[union-attr]
    settle(lone)
    assert lone.status == "failed" and lone.parent.status == "failed"  # type: ignore[union-attr]


def test_unreachable_target_fails_the_root() -> None:
    result = best_first(ChainEnv(target="xyz"), FixedProposer(LOGPROBS), BestFirstConfig(width=3), seed=0)
    assert not result.success and result.stats.stopped == "exhausted"
    assert result.root is not None and result.root.status == "failed"
    assert result.stats.nodes_expanded == 13


def test_dedupe_by_state_key() -> None:
    actions = {"a": -0.1, "wait": -0.2, "b": -1.0, "c": -2.0}
    on = best_first(ChainEnv(), FixedProposer(actions), BestFirstConfig(width=4), seed=0)
    off = best_first(ChainEnv(), FixedProposer(actions), BestFirstConfig(width=4, dedupe=False, max_nodes=30), seed=0)
    assert on.success and on.stats.duplicates > 0
    assert on.root is not None and all("wait" not in n.children for n in on.root.walk())
    assert off.stats.duplicates == 0 and off.root is not None
    assert any("wait" in n.children for n in off.root.walk())


def test_errors_are_failed_children_and_never_expanded() -> None:
    proposer = FixedProposer({"zz": -0.01, "a": -0.1, "b": -1.0, "c": -2.0})
    result = best_first(ChainEnv(), proposer, BestFirstConfig(width=4), seed=0)
    assert result.success and result.stats.errors > 0
    errors = [n for n in result.root.walk() if n.error]  # type: ignore[union-attr]
    assert errors and all(n.status == "failed" and not n.expanded for n in errors)


def test_budget_and_time_limits() -> None:
    r = best_first(ChainEnv(target="xyz"), FixedProposer(LOGPROBS), BestFirstConfig(width=3, max_calls=4), seed=0)
    assert r.stats.stopped == "budget" and r.stats.proposer_calls == 4
    r = best_first(ChainEnv(target="xyz"), FixedProposer(LOGPROBS), BestFirstConfig(time_limit_s=0.0), seed=0)
    assert r.stats.stopped == "time"
    # A step slower than the per-step limit counts as an error.
    r = best_first(ChainEnv(), FixedProposer(LOGPROBS), BestFirstConfig(step_time_limit_s=-1.0), seed=0)
    assert not r.success and r.stats.errors == 3 and r.stats.stopped == "exhausted"


def test_solved_cache_is_shared_across_searches() -> None:
    cache = SolvedCache()
    first = best_first(ChainEnv(), FixedProposer(LOGPROBS), BestFirstConfig(width=3), cache=cache, seed=0)
    assert first.success and first.stats.proposer_calls > 0 and len(cache) == 3  # '', 'a', 'ab'
    second = best_first(ChainEnv(), FixedProposer(LOGPROBS), BestFirstConfig(width=3), cache=cache, seed=0)
    assert second.success and second.stats.proposer_calls == 0
    assert second.trajectory is not None and [t.action for t in second.trajectory.turns] == ["a", "b", "c"]
    # A search that reaches a cached state mid-way finishes from the cache.
    sub = SolvedCache()
    sub.put("ab", ("c",))
    third = best_first(ChainEnv(), FixedProposer(LOGPROBS), BestFirstConfig(width=3, alpha=0.0), cache=sub, seed=0)
    assert third.success and sub.hits == 1 and third.stats.nodes_expanded < first.stats.nodes_expanded


def test_solved_cache_is_thread_safe() -> None:
    cache = SolvedCache()
    results = []

    def work(i: int) -> None:
        results.append(best_first(ChainEnv(), FixedProposer(LOGPROBS), BestFirstConfig(width=3), cache=cache, seed=i))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and all(r.success for r in results)
    for i in range(200):
        cache.put(f"k{i}", ("a",))
    assert len(cache) == 203


def test_beam_search_and_best_of_n() -> None:
    beam = beam_search(ChainEnv(), FixedProposer(LOGPROBS), BeamConfig(width=2, k=3), seed=0)
    # Beam keeps the 2 best by logprob per depth: a, b -> aa, ab -> aaa..abc: "abc" is found.
    assert beam.success and beam.stats.llm_calls == 3
    narrow = beam_search(ChainEnv(), FixedProposer(LOGPROBS), BeamConfig(width=1, k=3), seed=0)
    assert not narrow.success  # greedy: a -> aa -> aa*
    bon = best_of_n(ChainEnv(), FixedProposer(LOGPROBS), BestOfNConfig(n=3, parallel=3), seed=0)
    assert not bon.success and bon.tree["episodes"] == 3 and bon.stats.llm_calls == 3
    assert bon.stats.proposer_calls == 9  # 3 episodes x 3 steps, one batched call per step


def test_solved_cache_put_many_info_and_suffixes() -> None:
    from plyground.search.best_first import solved_suffixes

    result = best_first(ChainEnv(), FixedProposer(LOGPROBS), BestFirstConfig(width=3), seed=0)
    assert result.success and result.root is not None
    goal = next(n for n in result.root.walk() if n.success)
    assert solved_suffixes(goal) == [("", ("a", "b", "c")), ("a", ("b", "c")), ("ab", ("c",))]
    cache = SolvedCache()
    cache.put_many([("x", ("a", "b")), ("x", ("c",)), ("x", ("a", "b", "c"))])  # the shortest stays
    assert cache.get("x") == ("c",) and cache.get("y") is None
    assert cache.info() == {"size": 1, "hits": 1}
