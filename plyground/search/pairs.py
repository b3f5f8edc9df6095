"""Training data from search trees: step-level preference pairs and successful paths for SFT.

Two JSONL schemas, one record per line (what the DPO and SFT trainers read):

Preference pair (``pairs.jsonl``)::

    {"prompt": [{"role": "system"|"user"|"assistant", "content": str}, ...],
     "chosen": str, "rejected": str,
     "meta": {"source": "agentq"|"bfs", "env_id": str, "seed": int|null, "depth": int,
              "chosen_action": str, "rejected_action": str,
              "chosen_logprob": float, "rejected_logprob": float,   # mean token logprob (behaviour)
              "chosen_logprob_sum": float|null, "rejected_logprob_sum": float|null,
              "q_chosen": float, "q_rejected": float, "n_chosen": int, "n_rejected": int,  # agentq
              "rejected_error": str}}                                                   # bfs

``prompt`` is the shared prefix chat at the node (system instructions, then alternating
observations and the model's verbatim replies); ``chosen`` / ``rejected`` are the replies
(verbatim model text, the action itself where a proposer has no text) that led to the two
children. ``*_logprob_sum`` is the behaviour policy's summed token log-probability when the
backend returned token log-probabilities (the off-policy DPO reference).

- Agent Q pairs: at every node, sibling actions with ``Q(a_w) - Q(a_l) >= theta``, ``Q`` the mixed
  value ``alpha * Q_mcts + (1 - alpha) * Qhat`` (``Q_mcts`` when no critic), both visited at least
  ``min_visits`` times.
- BFS-Prover pairs: along the successful path, chosen = the action on the path, rejected = each
  sibling whose step was an error (``info["valid_action"] == False`` or the env raised). Siblings
  that merely did not lead to a proof are never used.

SFT example (``sft.jsonl``): ``{"messages": [...], "meta": {"env_id", "seed", "algo", "turns",
"total_reward"}}``: the whole successful episode as a chat ending with the last assistant reply.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from plyground.rollout.agent import build_chat
from plyground.search.tree import Node, SearchResult, best_success
from plyground.types import Message, Turn


@dataclass
class PairConfig:
    theta: float = 0.1
    """Least Q gap for an Agent Q pair."""
    min_visits: int = 1
    alpha: float = 1.0
    """Value mixing for the pair's Q (1.0: Q_mcts alone)."""
    max_pairs_per_node: int | None = None


def _messages(node: Node, instructions: str) -> list[dict[str, str]]:
    return [m.as_openai() for m in node.chat(instructions)]


def _logprob_sum(node: Node) -> float | None:
    completion = node.turn.completion if node.turn is not None else None
    if completion is None or not completion.logprobs:
        return None
    return float(sum(completion.logprobs))


def _reply(node: Node) -> str:
    return node.reply or node.action or ""


def agentq_pairs(result: SearchResult, config: PairConfig | None = None) -> list[dict[str, Any]]:
    """Agent Q's step-level pairs: siblings whose Q differ by at least ``theta``."""
    config = config or PairConfig()
    if result.root is None:
        return []
    out: list[dict[str, Any]] = []
    for node in result.root.walk():
        kids = [c for c in node.children.values() if c.visits >= config.min_visits]
        if len(kids) < 2:
            continue
        kids.sort(key=lambda c: c.q(config.alpha), reverse=True)
        pairs = []
        for i, win in enumerate(kids):
            for lose in kids[i + 1 :]:
                gap = win.q(config.alpha) - lose.q(config.alpha)
                if gap >= config.theta and _reply(win) != _reply(lose):
                    pairs.append((gap, win, lose))
        pairs.sort(key=lambda p: -p[0])
        if config.max_pairs_per_node is not None:
            pairs = pairs[: config.max_pairs_per_node]
        prompt = _messages(node, result.instructions)
        for _, win, lose in pairs:
            out.append(
                {
                    "prompt": prompt,
                    "chosen": _reply(win),
                    "rejected": _reply(lose),
                    "meta": {
                        "source": "agentq",
                        "env_id": result.env_id,
                        "seed": result.seed,
                        "depth": node.depth,
                        "chosen_action": win.action,
                        "rejected_action": lose.action,
                        "q_chosen": round(win.q(config.alpha), 6),
                        "q_rejected": round(lose.q(config.alpha), 6),
                        "n_chosen": win.visits,
                        "n_rejected": lose.visits,
                        "chosen_logprob": win.logprob,
                        "rejected_logprob": lose.logprob,
                        "chosen_logprob_sum": _logprob_sum(win),
                        "rejected_logprob_sum": _logprob_sum(lose),
                    },
                }
            )
    return out


def success_path(result: SearchResult) -> list[Node]:
    """The tree nodes of the successful path (root first), or [] when the tree holds none."""
    if result.root is None:
        return []
    found = best_success(result.root)
    return found.path() if found is not None else []


def bfs_pairs(result: SearchResult) -> list[dict[str, Any]]:
    """BFS-Prover's pairs: on the proof path, the path's action against each erroring sibling."""
    path = success_path(result)
    out: list[dict[str, Any]] = []
    for node, on_path in itertools.pairwise(path):
        prompt = _messages(node, result.instructions)
        for sibling in node.children.values():
            if sibling is on_path or not sibling.error:
                continue
            out.append(
                {
                    "prompt": prompt,
                    "chosen": _reply(on_path),
                    "rejected": _reply(sibling),
                    "meta": {
                        "source": "bfs",
                        "env_id": result.env_id,
                        "seed": result.seed,
                        "depth": node.depth,
                        "chosen_action": on_path.action,
                        "rejected_action": sibling.action,
                        "chosen_logprob": on_path.logprob,
                        "rejected_logprob": sibling.logprob,
                        "chosen_logprob_sum": _logprob_sum(on_path),
                        "rejected_logprob_sum": _logprob_sum(sibling),
                        "rejected_error": str(sibling.info.get("error") or sibling.observation)[:500],
                    },
                }
            )
    return out


def _turn_reply(turn: Turn) -> str:
    return turn.completion.text if turn.completion is not None else turn.action


def sft_examples(result: SearchResult) -> list[dict[str, Any]]:
    """The successful episode as one chat (``[]`` when the search failed)."""
    traj = result.trajectory
    if not result.success or traj is None or not traj.turns:
        return []
    replies = [_turn_reply(t) for t in traj.turns]
    chat = build_chat(result.instructions, traj.turns[:-1], traj.turns[-1].observation, replies[:-1])
    chat.append(Message("assistant", replies[-1]))
    return [
        {
            "messages": [m.as_openai() for m in chat],
            "meta": {
                "env_id": result.env_id,
                "seed": result.seed,
                "algo": result.algo,
                "turns": len(traj.turns),
                "total_reward": traj.total_reward,
            },
        }
    ]


def write_records(path: str, records: Iterable[dict[str, Any]], mode: str = "w") -> int:
    """Write dicts as JSONL; returns how many."""
    n = 0
    with open(path, mode, encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n
