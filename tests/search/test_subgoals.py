"""The subgoal planner (BFS-Prover V2): plans, parallel lemma provers with a shared cache, the final
coqc check, replanning, and lemma reuse across theorems; on real Coq."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plyground.inference.scripted import scripted_backend
from plyground.proving.coq import COQ_INSTALL, coq_available
from plyground.search import BestFirstConfig, Proposal, RandomProposer, SolvedCache
from plyground.search.subgoals import (
    LLMPlanner,
    PlannerConfig,
    SubgoalProver,
    parse_subgoals,
    prove_with_subgoals,
    split_statement,
)
from plyground.types import Task

needs_coq = pytest.mark.skipif(not coq_available(), reason=f"Coq is not installed: {COQ_INSTALL}")

# A tiny fixed tactic menu, best first: one line that proves n + 0 = n by induction, and the steps
# that use a hypothesis H. The searches are then short and deterministic.
TACTICS = ["intros H n", "rewrite H", "reflexivity", "induction n; simpl; congruence"]
ADD_0_R = "forall n : nat, n + 0 = n"
THEOREM = Task(id="add_0_0_r", prompt="Theorem add_0_0_r : forall n : nat, n + 0 + 0 = n.")


class RankedProposer(RandomProposer):
    """Every tactic at every node, earlier ones scored higher: a deterministic search."""

    def sample(self, node: object, k: int) -> list[Proposal]:
        self.generations += len(self.actions or [])
        return [Proposal(a, a, -0.1 * i) for i, a in enumerate(self.actions or [])]


class ListPlanner:
    """Returns the given plans in turn and records the feedback it was shown."""

    def __init__(self, *plans: list[str]) -> None:
        self.plans = list(plans)
        self.feedback: list[str] = []

    def plan(self, theorem: str, header: str, feedback: str) -> list[str]:
        self.feedback.append(feedback)
        return self.plans.pop(0) if self.plans else []


@pytest.fixture
def prover() -> SubgoalProver:
    import plyground

    config = PlannerConfig(
        max_plans=2, provers=2, direct_first=False,
        search=BestFirstConfig(width=len(TACTICS), max_nodes=30, time_limit_s=120.0, step_time_limit_s=10.0),
    )
    with SubgoalProver(lambda: plyground.make("Prove-v0", timeout_s=10.0), RankedProposer(actions=TACTICS), config, cache=SolvedCache()) as p:
        yield p


@needs_coq
def test_plan_proves_lemma_then_theorem_and_checks_the_whole_script(prover: SubgoalProver) -> None:
    store: dict[str, list[str]] = {}
    result = prove_with_subgoals(THEOREM, ListPlanner([ADD_0_R]), prover, store)
    assert result.success, result.feedback
    assert [lemma.statement for lemma in result.lemmas] == [ADD_0_R]
    assert "Lemma add_0_0_r_sg1 : forall n : nat, n + 0 = n." in result.script
    assert "Theorem add_0_0_r_planned : (forall n : nat, n + 0 = n) -> (forall n : nat, n + 0 + 0 = n)." in result.script
    assert result.check.startswith("proof checked by coqc")
    assert store == {ADD_0_R: result.lemmas[0].tactics}
    assert [s.success for s in result.searches] == [True, True]  # the lemma, then the planned theorem


@needs_coq
def test_replans_with_feedback_after_an_unprovable_or_rejected_lemma(prover: SubgoalProver) -> None:
    # Plan 1: a false lemma and one Coq rejects (n is free); plan 2 is the useful one.
    planner = ListPlanner(["forall n : nat, n = 0", "n + 0 = n"], [ADD_0_R])
    result = prove_with_subgoals(THEOREM, planner, prover)
    assert result.success
    assert len(result.plans) == 2 and planner.feedback[0] == ""
    assert "plan 1: no lemma was proved" in planner.feedback[1]
    assert "forall n : nat, n = 0" in planner.feedback[1] and "n + 0 = n" in planner.feedback[1]
    assert result.lemmas[0].name == "add_0_0_r_sg3"  # names stay unique across plans


@needs_coq
def test_a_lemma_proved_for_one_theorem_is_reused_by_the_next(prover: SubgoalProver) -> None:
    store: dict[str, list[str]] = {}
    assert prove_with_subgoals(THEOREM, ListPlanner([ADD_0_R]), prover, store).success
    other = Task(id="add_0_0_0_r", prompt="Theorem add_0_0_0_r : forall n : nat, n + 0 + 0 + 0 = n.")
    second = prove_with_subgoals(other, ListPlanner([ADD_0_R]), prover, store)
    assert second.success
    assert len(second.searches) == 1  # only the planned theorem was searched: the lemma came from the store


@needs_coq
def test_gives_up_after_max_plans_and_reports_why(prover: SubgoalProver) -> None:
    result = prove_with_subgoals(THEOREM, ListPlanner(["forall n : nat, n = 0"], []), prover)
    assert not result.success and result.script == ""
    assert len(result.feedback) == 2
    assert "no lemma could be read" in result.feedback[1]
    assert result.lemmas and not result.lemmas[0].proved


@needs_coq
def test_direct_first_skips_planning_when_the_theorem_falls_directly(prover: SubgoalProver) -> None:
    prover.config = PlannerConfig(direct_first=True, search=prover.config.search)
    easy = Task(id="add_0_r", prompt="Theorem add_0_r : forall n : nat, n + 0 = n.")
    planner = ListPlanner([ADD_0_R])
    result = prove_with_subgoals(easy, planner, prover)
    assert result.success and result.direct and planner.feedback == []


def test_llm_planner_prompt_and_parse() -> None:
    seen: list[str] = []

    def policy(chat: list) -> str:  # type: ignore[type-arg]
        seen.append(chat[-1].content)
        return "Here is a plan:\nLemma l1 : forall n : nat, n + 0 = n.\nLemma l2 : forall n m : nat, n + S m = S (n + m).\nDone."

    planner = LLMPlanner(scripted_backend(policy), max_subgoals=4)
    plan = planner.plan(THEOREM.prompt, "Require Import Arith.", "plan 1: nothing")
    assert plan == [ADD_0_R, "forall n m : nat, n + S m = S (n + m)"]
    assert THEOREM.prompt in seen[0] and "plan 1: nothing" in seen[0] and "at most 4" in seen[0]


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("Theorem t : forall n : nat, n = n.", ("t", "forall n : nat, n = n")),
        ("Lemma t' (n m : nat) : n + m = m + n.", ("t'", "forall (n m : nat), n + m = m + n")),
        ("Theorem t : forall l : list nat, length (l ++ []) = length l.", ("t", "forall l : list nat, length (l ++ []) = length l")),
    ],
)
def test_split_statement(statement: str, expected: tuple[str, str]) -> None:
    assert split_statement(statement) == expected


def test_parse_subgoals_filters_bad_lines() -> None:
    text = (
        "1. Lemma a : forall n : nat, n + 0 = n.\n"
        "- Fact b : forall n, (n = n.\n"  # unbalanced
        "Lemma c : forall n, n = n. Proof. auto.\n"  # a second sentence
        "Definition d := 3.\n"
        "Lemma e := 4.\n"
        "Lemma a2 : forall  n : nat,  n + 0 = n.\n"  # a duplicate after normalising spaces
    )
    assert parse_subgoals(text) == [ADD_0_R]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.integers(1, 5))
def test_parse_subgoals_never_raises_and_keeps_its_promises(text: str, k: int) -> None:
    out = parse_subgoals(text, k)
    assert len(out) <= k and len(set(out)) == len(out)
    for statement in out:
        assert statement and ":=" not in statement and statement == " ".join(statement.split())


@needs_coq
@pytest.mark.slow  # starting Ray and two worker processes takes 20-30 s here; run with -m slow
def test_ray_provers_share_one_cache_actor() -> None:
    ray = pytest.importorskip("ray")
    import os
    from pathlib import Path

    from plyground.scale import init_ray
    from plyground.search import RaySolvedCache, shared_solved_cache

    os.environ["RAY_AUTH_MODE"] = "disabled"
    root = str(Path(__file__).resolve().parents[2])
    init_ray(num_cpus=2, runtime_env={"env_vars": {"PYTHONPATH": root, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}})
    try:
        cache = shared_solved_cache()
        assert isinstance(cache, RaySolvedCache)
        config = PlannerConfig(direct_first=False, search=BestFirstConfig(width=len(TACTICS), max_nodes=30, time_limit_s=120.0))
        prover = SubgoalProver(lambda: None, RandomProposer(actions=TACTICS), config, cache=cache,  # type: ignore[arg-type,return-value]
                               ray_workers=2, env_kwargs={"timeout_s": 10.0})
        with prover:
            result = prove_with_subgoals(THEOREM, ListPlanner([ADD_0_R, "forall n : nat, 0 + n = n"]), prover)
            assert result.success, result.feedback
            assert len(result.lemmas) == 2 and "Qed." in result.script
            assert len(cache) > 0  # the worker processes published their proofs to the actor
        cache.kill()
    finally:
        ray.shutdown()
