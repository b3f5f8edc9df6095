"""The multi-turn learning experiments (``examples/multiturn/``): their pieces, fast, and shortened
reruns, marked ``slow``.

Fast: the noisy scripted experts that make the warm-start data (deterministic, the right mixture),
the episode log and deadline hooks, the equal-env-step summary, ArCHer's advantage centring and
Agent Q's MCTS discount. Slow: Agent Q's one iteration on the U maze from a shortened warm start
(the must-show C effect, greedy success over the 6 start cells does not fall and the search finds
pairs), and the A, B and D scripts end to end at toy size (they write their JSON and PNG).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "multiturn"))

import _common  # noqa: E402
import archer_vs_reinforce  # noqa: E402
import score_selfcorrect  # noqa: E402

from plyground.types import Message, Trajectory, Turn  # noqa: E402


def _chat(*user: str) -> list[Message]:
    out = [Message("system", "instructions")]
    for i, text in enumerate(user):
        out.append(Message("user", text))
        if i < len(user) - 1:
            out.append(Message("assistant", "move up"))
    return out


# -- warm-start data ------------------------------------------------------------------------------
def test_noisy_chat_policy_mixes_expert_and_random_moves_deterministically() -> None:
    moves = ["move up", "move down", "move left", "move right"]
    expert = _common.noisy_chat_policy(lambda obs: "move right", moves, eps=0.0)
    assert all(expert(_chat(f"obs {i}")) == "move right" for i in range(20))
    noisy = _common.noisy_chat_policy(lambda obs: "move right", moves, eps=0.5)
    replies = [noisy(_chat(f"obs {i}")) for i in range(400)]
    assert replies == [noisy(_chat(f"obs {i}")) for i in range(400)]  # seeded by the chat
    assert set(replies) == set(moves)
    # expert share = (1 - eps) + eps / 4 = 0.625
    assert abs(replies.count("move right") / 400 - 0.625) < 0.08
    other_salt = _common.noisy_chat_policy(lambda obs: "move right", moves, eps=0.5, salt=1)
    assert [other_salt(_chat(f"obs {i}")) for i in range(400)] != replies


def test_score_base_policy_has_no_self_correction_and_is_reproducible() -> None:
    import plyground
    from plyground.inference.scripted import scripted_backend
    from plyground.rollout.collector import RolloutConfig, collect_sync, episode_specs
    from plyground.trainers.score import self_correction_metrics

    tasks = score_selfcorrect.addition_tasks()
    assert len(tasks) == 25 and tasks[0].prompt == "What is 1 + 1?" and tasks[0].answer == "2"

    def play() -> list[Trajectory]:
        return collect_sync(
            lambda: plyground.make(score_selfcorrect.ENV_ID, tasks=tasks), scripted_backend(score_selfcorrect.base_chat_policy()),
            episode_specs(160, base_seed=3), RolloutConfig(concurrency=1),
        )

    first, second = play(), play()
    assert [[t.action for t in x.turns] for x in first] == [[t.action for t in x.turns] for x in second]
    m = self_correction_metrics(first)
    assert 0.38 < m["env/acc_t1"] < 0.62 and 0.38 < m["env/acc_t2"] < 0.62
    assert abs(m["env/delta_t1_t2"]) < 0.12  # no self-correction in the base
    copies = sum(x.turns[0].action == x.turns[1].action for x in first) / len(first)
    # copy with 0.5, else a fresh answer that equals the first by chance (~0.375): ~0.69
    assert 0.55 < copies < 0.82


# -- hooks and summaries ----------------------------------------------------------------------------
def _traj(turns: int, success: bool) -> Trajectory:
    return Trajectory(env_id="x", turns=[Turn(f"o{i}", "a", -1.0) for i in range(turns)], total_reward=-turns, success=success)


def test_episode_log_counts_env_steps_once_per_rollout() -> None:
    log = _common.EpisodeLog(horizon=9)
    trainer = SimpleNamespace(rollout_index=1, step=1, last_trajectories=[_traj(2, True), _traj(9, False)])
    log(trainer)
    trainer.step = 2  # num_iterations > 1: same rollout batch, not counted again
    log(trainer)
    trainer.rollout_index, trainer.step = 2, 3
    trainer.last_trajectories = [_traj(9, False), _traj(9, False)]
    log(trainer)
    assert [r["env_steps"] for r in log.rows] == [11.0, 29.0]
    assert log.rows[0]["success_rate"] == 0.5 and log.rows[0]["turns_mean"] == 5.5
    assert log.rows[0]["turns_to_success"] == 2.0
    assert log.rows[1]["turns_to_success"] == 9.0  # none succeeded: the horizon


def test_deadline_stops_only_after_its_time() -> None:
    trainer = SimpleNamespace(step=3)
    _common.Deadline(None)(trainer)
    _common.Deadline(time.time() + 60)(trainer)
    with pytest.raises(_common.OutOfTime, match="step 3"):
        _common.Deadline(time.time() - 1)(trainer)


def test_summary_compares_methods_at_a_common_env_step_budget() -> None:
    def rows(turns: list[float], per_batch: float) -> list[dict[str, float]]:
        return [
            {"env_steps": per_batch * (i + 1), "episodes": 2.0, "turns_mean": t, "success_rate": 1 - t / 10,
             "turns_to_success": t}
            for i, t in enumerate(turns)
        ]

    runs = {
        "archer": {0: rows([8, 6, 4, 2], 10.0), 1: rows([8, 8, 6, 4], 10.0)},  # reach 40 env steps
        "reinforce": {0: rows([8, 7, 6, 5, 4, 3], 10.0), 1: rows([8, 8, 8, 8], 10.0)},  # seed 0 compared up to 40
    }
    s = archer_vs_reinforce.summarise(runs)
    assert s["common_env_steps"] == 40.0 and s["checkpoints"] == [10, 20, 30, 40]
    assert s["archer"]["turns@40"]["per_seed"] == {0: 2.0, 1: 4.0} and s["archer"]["turns@40"]["mean"] == 3.0
    assert s["archer"]["turns@40"]["std"] == pytest.approx(2**0.5)
    assert s["reinforce"]["turns@40"]["per_seed"] == {0: 5.0, 1: 8.0}  # the batches after 40 are left out
    assert s["archer"]["auc"]["per_seed"] == {0: 5.0, 1: 6.5} and s["reinforce"]["auc"]["per_seed"] == {0: 6.5, 1: 8.0}
    assert s["paired_archer_minus_reinforce"]["auc"]["mean"] == pytest.approx(-1.5)
    assert s["paired_archer_minus_reinforce"]["auc"]["std"] == pytest.approx(0.0)
    assert s["archer"]["start"]["mean"] == 8.0 and s["reinforce"]["batches_within_budget"] == {0: 4, 1: 4}
    # the AUC weights a batch by the env steps it played
    assert archer_vs_reinforce.auc([{"env_steps": 10.0, "turns_mean": 8.0}, {"env_steps": 40.0, "turns_mean": 4.0}], 40) == 5.0


def test_archer_vs_reinforce_merge_joins_runs_split_by_method(tmp_path: Path) -> None:
    def payload(method: str, value: float) -> dict:
        rows = [{"env_steps": 10.0 * (i + 1), "episodes": 2.0, "turns_mean": value, "success_rate": 0.5,
                 "turns_to_success": 2.0} for i in range(4)]
        cfg = {"methods": [method], "seeds": [0, 1], "tag": method, "lr": 1e-3, "max_steps": 8, "episodes": 2,
               "actor_epochs": 1}
        return {"config": cfg, "runs": {method: {"0": rows, "1": rows}}}

    paths = []
    for method, value in (("archer", 4.0), ("reinforce", 6.0)):
        paths.append(tmp_path / f"{method}.json")
        paths[-1].write_text(json.dumps(payload(method, value)))
    out = archer_vs_reinforce.merge([str(p) for p in paths], "m", dest=tmp_path)
    assert out["summary"]["paired_archer_minus_reinforce"]["auc"]["mean"] == pytest.approx(-2.0)
    assert (tmp_path / "archer_vs_reinforce_m.png").exists()
    other = payload("reinforce", 6.0)
    other["config"]["lr"] = 3e-4  # each method may run at its own tuned learning rate: recorded
    paths[1].write_text(json.dumps(other))
    merged = archer_vs_reinforce.merge([str(p) for p in paths], "m", dest=tmp_path)
    assert merged["config"]["lr_by_method"] == {"archer": 1e-3, "reinforce": 3e-4}
    other["config"]["max_steps"] = 6  # another maze horizon is another experiment
    paths[1].write_text(json.dumps(other))
    with pytest.raises(ValueError, match="different config"):
        archer_vs_reinforce.merge([str(p) for p in paths], "m", dest=tmp_path)


def test_archer_vs_reinforce_rows_from_metrics_rebuild_the_episode_log(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"tasks_per_step": 4, "group_size": 1, "num_iterations": 1}))
    lines = [
        {"step": 1, "env/turns_mean": 2.5, "env/success_rate": 0.75, "env/turns_to_success": 1.5, "env/reward_mean": -2.0},
        {"step": 2, "env/turns_mean": 9.0, "env/success_rate": 0.0, "env/reward_mean": -9.0, "losses/critic": 0.5},
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(m) for m in lines) + "\n")
    rows = archer_vs_reinforce.rows_from_metrics(tmp_path)
    assert [r["env_steps"] for r in rows] == [10.0, 46.0]  # 4 episodes x mean turns, summed
    assert rows[0]["episodes"] == 4.0 and rows[0]["success_rate"] == 0.75 and rows[1]["losses/critic"] == 0.5
    (tmp_path / "config.json").write_text(json.dumps({"tasks_per_step": 4, "group_size": 1, "num_iterations": 2}))
    with pytest.raises(ValueError, match="one actor step"):
        archer_vs_reinforce.rows_from_metrics(tmp_path)


# -- trainer options used by the experiments ------------------------------------------------------------
def test_archer_center_advantages_removes_the_batch_mean() -> None:
    from plyground.inference.models import tiny_model
    from plyground.trainers.archer import ArCHerConfig, ArCHerTrainer

    model, tok = tiny_model()
    trajs = [_traj(2, True), _traj(3, False)]
    # loss mask with one run of 1s per turn: 2 turns in row 0, 3 in row 1
    mask = torch.tensor([[0, 1, 0, 1, 0, 0, 0], [0, 1, 0, 1, 0, 1, 0]], dtype=torch.float32)
    out = {}
    for center in (False, True):
        cfg = ArCHerConfig(env_id="Maze-v0", env_kwargs={"maze": "umaze", "max_steps": 4}, center_advantages=center,
                           warmup_iters=0, critic={"dim": 8, "head_hidden": 8, "max_length": 16}, out_dir="unused")
        trainer = ArCHerTrainer(cfg, model=model, tokenizer=tok)
        with torch.no_grad():  # a critic whose advantage is far from zero mean
            trainer.critic.q1[-1].bias.fill_(3.0)
            trainer.critic.q2[-1].bias.fill_(3.0)
        trainer.iteration = 1
        adv = trainer.token_advantages({"loss_mask": mask}, torch.zeros(2), trajs)
        per_turn = adv[mask > 0]
        out[center] = (per_turn, trainer.step_metrics["critic/advantage_raw_mean"])
    raw, raw_mean = out[False]
    centred, logged = out[True]
    assert raw.mean() > 1.0  # the biased critic: every sampled action would be pushed up
    assert abs(float(centred.mean())) < 1e-5
    assert torch.allclose(centred, raw - raw.mean(), atol=1e-5)
    assert logged == pytest.approx(float(raw.mean()), abs=1e-5) == pytest.approx(raw_mean, abs=1e-5)


def test_agent_q_mcts_gamma_reaches_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    import plyground.search as search
    from plyground.inference.models import tiny_model
    from plyground.trainers.agent_q import AgentQConfig, AgentQTrainer

    with pytest.raises(ValueError, match="mcts_gamma"):
        AgentQConfig(mcts_gamma=0.0)
    seen = []

    def fake_mcts(env_factory, proposer, config, critic=None, seed=0, env_id=""):  # type: ignore[no-untyped-def]
        seen.append(config)
        return SimpleNamespace(success=False, root=None)

    monkeypatch.setattr(search, "mcts", fake_mcts)
    model, tok = tiny_model()
    cfg = AgentQConfig(episodes_per_iteration=2, mcts_gamma=0.8, mcts_rollout="random", out_dir="unused")
    pairs, metrics = AgentQTrainer(cfg, model=model, tokenizer=tok).search(0)
    assert pairs == [] and metrics["env/search_success"] == 0.0
    assert [c.gamma for c in seen] == [0.8, 0.8] and seen[0].rollout == "random"


# -- shortened experiments (slow; Agent Q's and BFS-Prover's are in test_agent_q.py / test_bfs_prover.py) --
@pytest.mark.slow
def test_archer_vs_reinforce_script_end_to_end(tmp_path: Path) -> None:
    payload = archer_vs_reinforce.main([
        "--quick", "--out", str(tmp_path), "--seeds", "0", "--steps", "3", "--episodes", "2", "--sft-steps", "4",
        "--critic-steps", "2", "--center", "1",
    ])
    runs = payload["runs"]
    assert len(runs["archer"][0]) == 3 and len(runs["reinforce"][0]) == 3
    for rows in (runs["archer"][0], runs["reinforce"][0]):
        steps = [r["env_steps"] for r in rows]
        assert steps == sorted(steps) and steps[0] >= 2  # cumulative turns of 2 episodes per batch
        assert all(r["episodes"] == 2.0 and 0.0 <= r["success_rate"] <= 1.0 for r in rows)
    data = json.loads((tmp_path / "archer_vs_reinforce.json").read_text())
    assert {"common_env_steps", "archer", "reinforce", "paired_archer_minus_reinforce"} <= set(data["summary"])
    assert "critic/advantage_std" in runs["archer"][0][-1]  # the critic trace rides along


@pytest.mark.slow
def test_score_selfcorrect_script_end_to_end(tmp_path: Path) -> None:
    payload = score_selfcorrect.main([
        "--quick", "--out", str(tmp_path), "--sft-steps", "4", "--steps", "3", "--stage1-steps", "1",
        "--eval-samples", "1", "--group-size", "2", "--tasks-per-step", "2",
    ])
    assert set(payload["runs"]) == {"10", "0"}
    for run in payload["runs"].values():
        assert run["steps"] == 3 and len(run["curve"]) == 3
        assert [c["charts/stage"] for c in run["curve"]] == [1.0, 2.0, 2.0]
        assert run["final"]["episodes"] == 25.0
