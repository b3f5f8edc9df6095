"""Training data from trees: Agent Q pairs only above theta, BFS pairs only from erroring siblings,
SFT paths, and the JSONL files."""

from __future__ import annotations

import json
from pathlib import Path

from chain_env import ChainEnv, FixedProposer

from plyground.search import (
    BestFirstConfig,
    MCTSConfig,
    Node,
    PairConfig,
    RandomProposer,
    SearchResult,
    agentq_pairs,
    best_first,
    bfs_pairs,
    mcts,
    sft_examples,
    write_records,
)
from plyground.types import Turn


def hand_tree() -> SearchResult:
    root = Node(None, "start")
    for action, visits, value in (("a", 4, 3.0), ("b", 2, 1.0), ("c", 2, 0.0), ("d", 0, 0.0)):
        child = Node(None, f"after {action}", parent=root, action=action, reply=f"<action>{action}</action>",
                     turn=Turn("start", action), depth=1, visits=visits, value_sum=value)
        root.children[action] = child
    return SearchResult("mcts", "Chain", 0, root=root, instructions="sys")


def test_agentq_pairs_only_above_theta() -> None:
    result = hand_tree()  # Q: a 0.75, b 0.5, c 0.0, d unvisited
    pairs = agentq_pairs(result, PairConfig(theta=0.3))
    got = {(p["meta"]["chosen_action"], p["meta"]["rejected_action"]) for p in pairs}
    assert got == {("a", "c"), ("b", "c")}  # a-b differ by 0.25 < theta; d never visited
    for p in pairs:
        assert p["meta"]["q_chosen"] - p["meta"]["q_rejected"] >= 0.3
        assert p["prompt"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "start"}]
        assert p["chosen"].startswith("<action>")
    assert len(agentq_pairs(result, PairConfig(theta=0.0))) == 3
    assert agentq_pairs(result, PairConfig(theta=0.8)) == []
    assert len(agentq_pairs(result, PairConfig(theta=0.0, min_visits=0))) == 6


def test_agentq_pairs_from_a_real_tree() -> None:
    cfg = MCTSConfig(simulations=80, k=3, rollout="random", stop_on_success=False, seed=0)
    result = mcts(ChainEnv(), RandomProposer(seed=0, actions=["a", "b", "c"]), cfg, seed=0)
    pairs = agentq_pairs(result, PairConfig(theta=0.2))
    assert pairs
    for p in pairs:
        assert p["meta"]["q_chosen"] - p["meta"]["q_rejected"] >= 0.2
        assert p["prompt"][-1]["role"] == "user"


def test_bfs_pairs_only_from_erroring_siblings() -> None:
    # "zz" is an error at every node; "b" and "c" are legal but wrong at the root.
    proposer = FixedProposer({"zz": -0.01, "a": -0.1, "b": -1.0, "c": -2.0})
    result = best_first(ChainEnv(target="abc"), proposer, BestFirstConfig(width=4, alpha=0.0), seed=0)
    assert result.success
    pairs = bfs_pairs(result)
    assert [(p["meta"]["chosen_action"], p["meta"]["rejected_action"]) for p in pairs] == [
        ("a", "zz"),
        ("b", "zz"),
        ("c", "zz"),
    ]
    assert all("not a letter" in p["meta"]["rejected_error"] for p in pairs)
    assert [p["meta"]["depth"] for p in pairs] == [0, 1, 2]
    # Legal siblings that merely did not lead to the answer never make pairs.
    clean = best_first(ChainEnv(), FixedProposer({"a": -0.1, "b": -1.0, "c": -2.0}), BestFirstConfig(width=3), seed=0)
    assert clean.success and bfs_pairs(clean) == []


def test_sft_examples_and_jsonl(tmp_path: Path) -> None:
    result = best_first(ChainEnv(), FixedProposer({"a": -0.1, "b": -1.0, "c": -2.0}), BestFirstConfig(width=3), seed=0)
    [example] = sft_examples(result)
    roles = [m["role"] for m in example["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    assert [m["content"] for m in example["messages"] if m["role"] == "assistant"] == [
        "I pick a",
        "I pick b",
        "I pick c",
    ]
    failed = best_first(ChainEnv(target="xyz"), FixedProposer({"a": 0.0}), BestFirstConfig(width=1), seed=0)
    assert sft_examples(failed) == []
    path = tmp_path / "sft.jsonl"
    assert write_records(str(path), [example, example]) == 2
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0] == example
