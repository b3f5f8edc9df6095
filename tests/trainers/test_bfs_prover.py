"""BFS-Prover trainer: a round over an explicit problem pool (``reset_options``)."""

from __future__ import annotations

from typing import Any

import pytest

import plyground.search
from plyground.inference.models import tiny_model
from plyground.search.tree import SearchResult
from plyground.trainers.bfs_prover import BFSProverConfig, BFSProverTrainer


def _trainer(tmp_path: Any, **kw: Any) -> BFSProverTrainer:
    model, tok = tiny_model(seed=0)
    cfg = BFSProverConfig(env_id="GuessNumber-v0", total_steps=1, max_tokens=4, mixed_precision="no",
                          out_dir=str(tmp_path), **kw)
    return BFSProverTrainer(cfg, model=model, tokenizer=tok)


def test_round_problems_draw_each_option_once(tmp_path) -> None:
    pool = [{"task": f"t{i}"} for i in range(6)]
    trainer = _trainer(tmp_path, reset_options=pool, problems_per_round=4)
    first = trainer.round_problems(0)
    assert len(first) == 4
    assert len({o["task"] for _, o in first if o}) == 4  # no repeats within a round
    assert all(o in pool for _, o in first)
    assert trainer.round_problems(0) == first  # deterministic per round
    every = _trainer(tmp_path / "all", reset_options=pool, problems_per_round=10).round_problems(0)
    assert sorted(o["task"] for _, o in every if o) == [p["task"] for p in pool]
    # no pool: problems are env seeds, without options
    assert all(o is None for _, o in _trainer(tmp_path / "s", problems_per_round=3).round_problems(0))


def test_round_filters_and_searches_with_the_options(tmp_path, monkeypatch) -> None:
    pool = [{"task": "a"}, {"task": "b"}, {"task": "c"}]
    trainer = _trainer(tmp_path, reset_options=pool, problems_per_round=3)
    filtered: list[Any] = []

    def rates(seeds: list[int], options: list[Any] | None = None) -> list[float]:
        filtered.append(options)
        return [1.0 if o["task"] == "b" else 0.0 for o in options or []]  # "b" is easy: dropped

    searched: list[Any] = []

    def fake_best_first(env, proposer, config=None, cache=None, seed=None, options=None, env_id=""):  # type: ignore[no-untyped-def]
        searched.append(options)
        return SearchResult(algo="best_first", env_id=env_id, seed=seed, success=options["task"] == "c")

    monkeypatch.setattr(trainer, "solve_rates", rates)
    monkeypatch.setattr(plyground.search, "best_first", fake_best_first)
    metrics = trainer.run_round()
    assert filtered == [pool]
    assert searched == [{"task": "a"}, {"task": "c"}]
    assert metrics["env/dropped_easy"] == 1.0 and metrics["env/search_success"] == 0.5
    assert [(s["options"]["task"], s["success"]) for s in trainer.searched] == [("a", False), ("c", True)]


@pytest.mark.slow
def test_bfs_prover_round_script_end_to_end(tmp_path) -> None:
    """Must-show D's script, shortened: pool from a coqtop check of 15 theorems, 1 seed, 1 step."""
    import shutil
    import sys
    from pathlib import Path

    if shutil.which("coqtop") is None or shutil.which("coqc") is None:
        pytest.skip("needs Coq (apt-get install coq)")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "multiturn"))
    import bfs_prover_round

    payload = bfs_prover_round.main([
        "--quick", "--out", str(tmp_path), "--candidates", "15", "--train", "3", "--heldout", "2", "--seeds", "0",
        "--samples", "1", "--sft-steps", "2", "--sft-episodes", "3", "--steps", "1", "--width", "2", "--max-nodes", "1",
    ])
    assert len(payload["train"]) == 3 and len(payload["heldout"]) == 2
    assert all(1 <= len(payload["solvers"][t]) <= 3 for t in payload["train"] + payload["heldout"])
    run = payload["runs"][0]
    for when in ("before", "after"):
        assert set(run[when]["train"]["per_theorem"]) == set(payload["train"])
        assert run[when]["heldout"]["attempts"] == 2
    assert len(run["searched"]) + run["round"]["env/dropped_easy"] == 3
    assert (tmp_path / "bfs_prover_round.png").stat().st_size > 0


def test_planner_proves_what_the_search_missed_and_keeps_its_data(tmp_path, monkeypatch) -> None:
    """``planner=True``: a theorem the direct search missed goes to the subgoal planner (real Coq:
    the lemma and the planned theorem are searched, the script is checked by coqc), and every proof
    found on the way becomes SFT data; the lemma store is checkpointed."""
    from plyground.proving.coq import coq_available
    from plyground.search import Proposal, RandomProposer

    if not coq_available():
        pytest.skip("needs Coq (apt-get install coq)")
    tactics = ["intros H n", "rewrite H", "reflexivity", "induction n; simpl; congruence"]

    class Ranked(RandomProposer):
        def sample(self, node: Any, k: int) -> list[Proposal]:
            return [Proposal(a, a, -0.1 * i) for i, a in enumerate(tactics)]

    class OneLemma:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def plan(self, theorem: str, header: str, feedback: str) -> list[str]:
            return ["forall n : nat, n + 0 = n"]

    def missed(env, proposer, config=None, cache=None, seed=None, options=None, env_id=""):  # type: ignore[no-untyped-def]
        return SearchResult(algo="best_first", env_id=env_id, seed=seed, success=False)

    model, tok = tiny_model(seed=0)
    cfg = BFSProverConfig(env_id="Prove-v0", env_kwargs={"timeout_s": 10.0}, total_steps=1, max_tokens=4,
                          mixed_precision="no", out_dir=str(tmp_path), reset_options=[{"task": "add_0_r"}],
                          problems_per_round=1, planner=True, width=4, max_nodes=20, provers=1)
    trainer = BFSProverTrainer(cfg, model=model, tokenizer=tok)
    monkeypatch.setattr(trainer, "solve_rates", lambda seeds, options=None: [0.0] * len(seeds))
    monkeypatch.setattr(plyground.search, "best_first", missed)  # the trainer's direct search misses
    monkeypatch.setattr(plyground.search, "Proposer", lambda *a, **k: Ranked(actions=tactics))
    monkeypatch.setattr(plyground.search, "LLMPlanner", OneLemma)
    metrics = trainer.run_round()
    assert metrics["env/planned_success"] == 1.0 and metrics["env/search_success"] == 1.0
    assert trainer.searched[-1]["planned"] is True
    assert trainer.lemma_store == {"forall n : nat, n + 0 = n": ["induction n; simpl; congruence"]}
    assert len(trainer.proofs) >= 2  # the lemma's proof and the planned theorem's
    assert trainer.trainer_state()["lemma_store"] == trainer.lemma_store
