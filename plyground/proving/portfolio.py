"""A scripted tactic portfolio: a baseline step prover with no model.

:class:`PortfolioProposer` proposes the same fixed list of tactics at every node of a search
(earlier = higher score), so :func:`plyground.search.best_first` over ``Prove-v0`` becomes a
classic "try these tactics" prover: one-shot closers (``reflexivity``, ``intros; lia``,
``tauto``, ``intros; ring`` ...), boolean case splits, and the openings of induction proofs
(``intros``, ``induction n``, ``simpl``, ``rewrite IHn``). :func:`prove_with_portfolio` runs it on
one task and re-checks what it found with ``coqc`` (:func:`~plyground.proving.coq.verify_proof`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from plyground.proving.coq import DEFAULT_HEADER, proof_script, verify_proof
from plyground.search.best_first import BestFirstConfig, best_first
from plyground.search.proposer import Proposal, Usage
from plyground.search.tree import Node
from plyground.types import Task, Verdict

BOOL_CASES = "repeat match goal with b : bool |- _ => destruct b end; simpl in *; try reflexivity; try discriminate"
"""Every boolean in the context split, then each case closed by computation where it can be."""

PORTFOLIO: tuple[str, ...] = (
    "reflexivity",
    "intros; lia",
    "tauto",
    "intros; ring",
    "intros; " + BOOL_CASES,
    "intros; simpl; auto",
    "intros; discriminate",
    "firstorder",
    "intros; nia",
    "intros",
    "induction n",
    "induction l",
    "induction l1",
    "simpl",
    "rewrite IHn",
    "rewrite IHl",
    "rewrite IHl1",
    "simpl; congruence",
    "simpl; lia",
    "auto",
)
"""Closers first, then the steps of an induction proof."""


class PortfolioProposer(Usage):
    """The same tactics at every node, scored ``-0.1 * rank`` (a fixed preference order)."""

    def __init__(self, tactics: Sequence[str] = PORTFOLIO) -> None:
        super().__init__()
        self.tactics = list(tactics)
        self.instructions = ""

    def prepare(self, env: object) -> None:
        self.instructions = getattr(env, "instructions", "")

    def propose(self, nodes: Sequence[Node], k: int) -> list[list[Proposal]]:
        self.calls += 1
        self.prompts += len(nodes)
        out = []
        for _ in nodes:
            props = [Proposal(t, t, -0.1 * (i + 1)) for i, t in enumerate(self.tactics[:k])]
            self.generations += len(props)
            out.append(props)
        return out


def portfolio_config(width: int = len(PORTFOLIO), max_nodes: int = 12, time_limit_s: float = 20.0) -> BestFirstConfig:
    """Best-first settings for the portfolio: every tactic at each node, a few expansions."""
    return BestFirstConfig(width=width, max_nodes=max_nodes, time_limit_s=time_limit_s, step_time_limit_s=5.0)


@dataclass
class PortfolioResult:
    task_id: str
    proved: bool
    proof: str | None
    verdict: Verdict | None
    search_s: float
    nodes: int
    stats: dict[str, Any]


def prove_with_portfolio(
    env: Any,
    task: Task,
    tactics: Sequence[str] = PORTFOLIO,
    config: BestFirstConfig | None = None,
    verify: bool = True,
    env_id: str = "Prove-v0",
) -> PortfolioResult:
    """Search ``task`` with the portfolio in ``env`` (a ``Prove-v0`` Coq env); a proof found is
    re-checked whole by ``coqc`` when ``verify`` (``verdict``)."""
    start = time.perf_counter()
    result = best_first(env, PortfolioProposer(tactics), config or portfolio_config(), options={"task": task}, env_id=env_id)
    search_s = time.perf_counter() - start
    stats = dataclasses.asdict(result.stats)
    nodes = int(stats.get("nodes_expanded", 0))
    if not result.success or result.trajectory is None:
        return PortfolioResult(task.id, False, None, None, search_s, nodes, stats)
    proof = proof_script([t.action for t in result.trajectory.turns])
    verdict = None
    if verify:
        header = str(task.metadata.get("header", DEFAULT_HEADER))
        verdict = verify_proof(task.prompt, proof, header=header)
    return PortfolioResult(task.id, verdict.correct if verdict else True, proof, verdict, search_s, nodes, stats)
