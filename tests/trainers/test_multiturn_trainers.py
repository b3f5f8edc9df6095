"""Multi-turn trainers: ArCHer's critic, SCoRe, Agent Q, BFS-Prover and the baselines.

Mechanics are checked against hand computations; each trainer gets a 1-2 step smoke run.
"""

from __future__ import annotations

import json
import random

import pytest
import torch

import plyground
from plyground.trainers import TRAINERS
from plyground.trainers.baselines import (
    rewards_to_go,
    spread_per_turn,
    turn_reinforce_advantages,
    turn_spans,
)
from plyground.trainers.core.critic import (
    CriticConfig,
    DoubleCritic,
    PretrainedEncoder,
    ReplayBuffer,
    advantages,
    critic_loss,
    encode_texts,
    make_target,
    pretrained_encoder,
    soft_update,
    trajectory_transitions,
)
from plyground.trainers.score import attempt_scores, edit_ratio, self_correction_metrics
from plyground.types import Trajectory, Turn


def _traj(rewards: list[float], success: bool = False, infos: list[dict] | None = None, actions=None) -> Trajectory:
    turns = [
        Turn(observation=f"obs{i}", action=(actions[i] if actions else f"act{i}"), reward=r, info=(infos or [{}] * len(rewards))[i])
        for i, r in enumerate(rewards)
    ]
    return Trajectory(env_id="x", turns=turns, total_reward=sum(rewards), success=success)


# -- ArCHer critic ----------------------------------------------------------------------------------
def test_soft_update_exact_at_tau_one_and_zero() -> None:
    torch.manual_seed(0)
    online = torch.nn.Linear(3, 2)
    target = make_target(online)
    with torch.no_grad():
        for p in target.parameters():
            p.add_(1.0)
    before = [p.clone() for p in target.parameters()]
    soft_update(target, online, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(before, target.parameters(), strict=True))
    soft_update(target, online, 0.25)
    for b, t, o in zip(before, target.parameters(), online.parameters(), strict=True):
        assert torch.allclose(t, 0.75 * b + 0.25 * o)
    soft_update(target, online, 1.0)
    assert all(torch.equal(t, o) for t, o in zip(target.parameters(), online.parameters(), strict=True))
    assert not any(p.requires_grad for p in target.parameters())


def test_transitions_and_buffer_roundtrip() -> None:
    tr = trajectory_transitions(_traj([-1.0, -1.0, 0.0]), gamma=1.0)
    assert [t.mc_return for t in tr] == [-2.0, -1.0, 0.0]
    assert [t.done for t in tr] == [False, False, True]
    assert tr[0].next_obs == "obs1" and tr[2].next_obs == "obs2"
    buf = ReplayBuffer(capacity=4)
    buf.extend(tr)
    buf.extend(tr)
    assert len(buf) == 4 and buf.items[0] == tr[2]
    other = ReplayBuffer()
    other.load_state_dict(buf.state_dict())
    assert other.items == buf.items and other.capacity == 4


def test_transitions_with_turn_context_tell_the_critic_the_turn() -> None:
    traj = _traj([-1.0, -1.0, 0.0])
    tr = trajectory_transitions(traj, gamma=1.0, context="turn")
    assert [t.obs for t in tr] == ["turn 1: obs0", "turn 2: obs1", "turn 3: obs2"]
    assert [t.next_obs for t in tr] == ["turn 2: obs1", "turn 3: obs2", "turn 3: obs2"]
    assert [t.mc_return for t in tr] == [-2.0, -1.0, 0.0]
    assert [t.obs for t in trajectory_transitions(traj)] == ["obs0", "obs1", "obs2"]  # the default
    with pytest.raises(ValueError, match="critic context"):
        trajectory_transitions(traj, context="history")
    from plyground.trainers.archer import ArCHerConfig

    with pytest.raises(ValueError, match="critic_context"):
        ArCHerConfig(out_dir="unused", critic_context="history")  # type: ignore[arg-type]


def test_archer_actor_reads_the_critic_state_text_of_its_context(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    import plyground.trainers.archer as archer

    model, tok = tiny
    seen: list[list[str]] = []

    def fake_advantages(critic, tokenizer, obs, actions, device=None):
        seen.append(list(obs))
        return torch.zeros(len(obs))

    monkeypatch.setattr(archer, "advantages", fake_advantages)
    cfg = archer.ArCHerConfig(out_dir="unused", warmup_iters=0, critic_context="turn",
                              critic={"dim": 8, "head_hidden": 8, "max_length": 16})
    trainer = archer.ArCHerTrainer(cfg, model=model, tokenizer=tok)
    trainer.iteration = 1
    mask = torch.tensor([[0, 1, 0, 1, 0, 1]], dtype=torch.float32)
    trainer.token_advantages({"loss_mask": mask}, torch.zeros(1), [_traj([-1.0, -1.0, 0.0])])
    assert seen == [["turn 1: obs0", "turn 2: obs1", "turn 3: obs2"]]  # the texts the critic was trained on


class _Const(torch.nn.Module):
    """An 'encoder' mapping a text to [length]: lets the critic loss be computed by hand."""

    out_dim = 1

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mask.sum(1, keepdim=True).float()


def test_critic_loss_is_sum_of_four_mses_with_own_targets(tiny) -> None:
    _, tok = tiny
    torch.manual_seed(0)
    online = DoubleCritic(10, CriticConfig(head_hidden=4), encoder=_Const())
    target = make_target(online)
    with torch.no_grad():
        for p in target.parameters():
            p.mul_(-0.5)
    batch = trajectory_transitions(_traj([-1.0, 0.0]), gamma=1.0)
    loss, _ = critic_loss(online, target, tok, batch, gamma=0.9)
    o = encode_texts(tok, [t.obs for t in batch], 256)
    a = encode_texts(tok, [t.action for t in batch], 256)
    n = encode_texts(tok, [t.next_obs for t in batch], 256)
    q1, q2 = online.q(o, a)
    v1, v2 = online.v(o)
    tv1, tv2 = target.v(n)
    tq1, tq2 = target.q(o, a)
    r = torch.tensor([-1.0, 0.0])
    d = torch.tensor([0.0, 1.0])
    want = (
        ((q1 - (r + 0.9 * (1 - d) * tv1)) ** 2).mean()
        + ((q2 - (r + 0.9 * (1 - d) * tv2)) ** 2).mean()
        + ((v1 - tq1) ** 2).mean()
        + ((v2 - tq2) ** 2).mean()
    )
    assert torch.allclose(loss, want.detach(), atol=1e-6)


def test_encode_texts_keeps_the_last_tokens_and_pads_right(tiny) -> None:
    _, tok = tiny
    texts = ["move up and then move left", "", "up"]
    ids, mask = encode_texts(tok, texts, max_length=3)
    for row, text in enumerate(texts):
        want = tok(text, add_special_tokens=False)["input_ids"][-3:] or [0]  # an empty text: one pad token
        n = len(want)
        assert ids[row, :n].tolist() == want and mask[row].tolist() == [1] * n + [0] * (ids.shape[1] - n)


def test_pretrained_encoder_copies_the_policy_and_pools_real_tokens_only(tiny) -> None:
    model, tok = tiny
    enc = pretrained_encoder(model)
    assert enc.out_dim == 2 * model.config.hidden_size + 1
    # A copy: training the critic's encoder leaves the policy's weights alone.
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(enc.parameters(), model.parameters(), strict=False))
    ids, mask = encode_texts(tok, ["move up", "move up and then left"], max_length=16)
    out = enc(ids, mask)
    alone = enc(*encode_texts(tok, ["move up"], max_length=16))
    # Right padding changes nothing for the shorter text: mean and last-token states read real tokens only.
    assert torch.allclose(out[0], alone[0], atol=1e-5)
    assert not torch.allclose(out[0], out[1])


def test_policy_encoder_critic_needs_the_lm_and_archer_builds_it(tiny, tmp_path) -> None:
    from plyground.trainers.archer import ArCHerConfig, ArCHerTrainer

    model, tok = tiny
    with pytest.raises(ValueError, match="pretrained encoder"):
        DoubleCritic(len(tok), CriticConfig(encoder="policy"))
    with pytest.raises(ValueError, match="critic encoder"):
        DoubleCritic(len(tok), CriticConfig(encoder="roberta"))
    cfg = ArCHerConfig(out_dir=str(tmp_path), env_id="Maze-v0", env_kwargs={"maze": "umaze", "max_steps": 2},
                       tasks_per_step=2, max_tokens=3, warmup_iters=1, critic_steps=2, critic_batch=4, total_steps=1,
                       mixed_precision="no", micro_batch_size=8, live_table=False,
                       critic={"head_hidden": 8, "max_length": 32, "encoder": "policy"})
    import copy

    policy = copy.deepcopy(model)
    trainer = ArCHerTrainer(cfg, model=policy, tokenizer=tok)
    assert isinstance(trainer.critic.encoder, PretrainedEncoder)
    before = {k: v.clone() for k, v in trainer.critic.encoder.state_dict().items()}
    policy_before = {k: v.clone() for k, v in policy.state_dict().items()}
    trainer.train()
    after = trainer.critic.encoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the critic trained its encoder
    assert all(torch.equal(policy_before[k], v) for k, v in policy.state_dict().items())  # warm-up: actor still


def _scripted_20q(episodes: int) -> list[Trajectory]:
    from plyground.envs.lmrl.twenty_questions import TwentyQuestionsSolver

    solver = TwentyQuestionsSolver()
    env = plyground.make("TwentyQuestions-v0")
    out = []
    for s in range(episodes):
        obs, _ = env.reset(seed=s)
        turns, done = [], False
        while not done:
            a = solver.act(obs)
            nxt, r, term, trunc, _ = env.step(a)
            turns.append(Turn(observation=obs, action=a, reward=r))
            obs, done = nxt, term or trunc
        out.append(Trajectory(env_id="TwentyQuestions-v0", turns=turns, success=True))
    return out


@pytest.mark.slow  # ~20 s idle, minutes on a loaded 2-core box
def test_critic_warmup_on_scripted_twenty_questions(tiny) -> None:
    _, tok = tiny
    trajs = _scripted_20q(8)
    buf = ReplayBuffer()
    for t in trajs:
        buf.extend(trajectory_transitions(t, 1.0))
    torch.manual_seed(0)
    cfg = CriticConfig(dim=16, head_hidden=32, max_length=96, encoder="bag")
    critic = DoubleCritic(len(tok), cfg)
    target = make_target(critic)
    opt = torch.optim.AdamW(critic.parameters(), lr=1e-2)
    rng = random.Random(0)
    for _ in range(150):
        loss, _ = critic_loss(critic, target, tok, buf.sample(32, rng), gamma=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        soft_update(target, critic, 0.2)
    critic.eval()
    items = buf.items
    with torch.no_grad():
        o = encode_texts(tok, [t.obs for t in items], cfg.max_length)
        a = encode_texts(tok, [t.action for t in items], cfg.max_length)
        q = torch.minimum(*critic.q(o, a))
    mc = torch.tensor([t.mc_return for t in items])  # = -(turns left after this one)
    last = torch.tensor([t.done for t in items])
    early = mc <= -5
    assert abs(float(q[last].mean())) < 1.0, float(q[last].mean())
    assert abs(float(q[early].mean() - mc[early].mean())) < 2.0, (float(q[early].mean()), float(mc[early].mean()))
    assert float(torch.corrcoef(torch.stack([q, mc]))[0, 1]) > 0.8
    adv = advantages(critic, tok, [t.obs for t in items], [t.action for t in items])
    assert abs(float(adv.mean())) < 1.0  # loose: Q and V are fitted separately


# -- baselines ------------------------------------------------------------------------------------------
def test_turn_spans_and_reward_to_go() -> None:
    mask = torch.tensor([0, 1, 1, 0, 0, 1, 0, 1, 1])
    assert turn_spans(mask) == [(1, 3), (5, 6), (7, 9)]
    out = spread_per_turn(mask[None].float(), [[1.0, 2.0, 3.0]])
    assert out.tolist() == [[0, 1, 1, 0, 0, 2, 0, 3, 3]]
    assert rewards_to_go([-1.0, -1.0, 0.0], 0.5) == [-1.5, -1.0, 0.0]
    a = turn_reinforce_advantages([_traj([-1.0, 0.0]), _traj([-1.0, -1.0, -1.0])], gamma=1.0)
    # G: [-1, 0] and [-3, -2, -1]; turn means: -2, -1, -1
    assert a == [[1.0, 1.0], [-1.0, -1.0, 0.0]]
    assert turn_reinforce_advantages([_traj([-1.0, 0.0])], 1.0, baseline="none") == [[-1.0, 0.0]]


# -- SCoRe ----------------------------------------------------------------------------------------
def _two_attempts(c1: bool, c2: bool, y1: str = "a", y2: str = "b") -> Trajectory:
    attempts = [{"attempt": 1, "correct": c1, "score": float(c1)}, {"attempt": 2, "correct": c2, "score": float(c2)}]
    return _traj([0.0, float(c2)], infos=[{}, {"attempts": attempts}], actions=[y1, y2])


def test_score_metrics_by_hand() -> None:
    trajs = [_two_attempts(False, True), _two_attempts(True, False), _two_attempts(True, True), _two_attempts(False, True)]
    assert attempt_scores(trajs[0]) == (0.0, 1.0)
    m = self_correction_metrics(trajs)
    assert m["env/acc_t1"] == 0.5 and m["env/acc_t2"] == 0.75
    assert m["env/delta_t1_t2"] == 0.25 and m["env/delta_i_to_c"] == 0.5 and m["env/delta_c_to_i"] == 0.25
    assert edit_ratio("kitten", "sitting") == pytest.approx(3 / 7)
    assert edit_ratio("same", "same") == 0.0


@pytest.fixture(scope="module")
def tiny():
    from plyground.inference.models import tiny_model

    return tiny_model(seed=0)


def test_score_stage_advantages_and_kl_weights(tiny, tmp_path) -> None:
    from plyground.trainers.score import SCoReConfig, SCoReTrainer

    model, tok = tiny
    cfg = SCoReConfig(out_dir=str(tmp_path), total_steps=1, stage1_steps=1, alpha=10.0, beta1=0.01, beta2=0.5,
                      tasks_per_step=1, group_size=2, scale_rewards=False)
    tr = SCoReTrainer(cfg, model=model, tokenizer=tok)
    group = [_two_attempts(False, True), _two_attempts(True, True)]
    for t in group:
        t.metadata["episode"] = 0
    adv, kl = tr.per_turn_values(group)  # Stage I: turn 1 only KL; turn 2 from r2 - mean(r2) = 0
    assert adv == [[0.0, 0.0], [0.0, 0.0]] and kl == [[0.5, 0.0], [0.5, 0.0]]
    tr.step = 1  # Stage II: r2' = r2 + 10 (r2 - r1) = 11 and 1 -> centred +5, -5; r1 0, 1 -> -0.5, +0.5
    adv, kl = tr.per_turn_values(group)
    assert adv == [[-0.5, 5.0], [0.5, -5.0]] and kl == [[0.01, 0.01], [0.01, 0.01]]


# -- smoke runs -------------------------------------------------------------------------------------
def test_registry_names() -> None:
    for name in ("archer", "score", "agent-q", "bfs-prover", "filtered-bc", "reinforce"):
        assert name in TRAINERS


def _cmd_train(algo: str, out: str, sets: list[str]) -> list[dict]:
    from plyground.cli import main

    argv = ["train", algo, "--model", "tiny", "--out", out]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0
    return [json.loads(line) for line in open(f"{out}/metrics.jsonl")]


def test_archer_cli_smoke_and_resume(tmp_path) -> None:
    sets = ["total_steps=2", "tasks_per_step=2", "max_tokens=6", "critic_steps=2", "critic_batch=4",
            "warmup_iters=1", "env_kwargs={max_questions: 3}", "critic={dim: 16, head_hidden: 16, encoder: bag}",
            "live_table=false"]
    rows = _cmd_train("archer", str(tmp_path / "a"), sets)
    assert rows[0]["charts/actor_on"] == 0.0 and rows[1]["charts/actor_on"] == 1.0
    assert rows[1]["charts/buffer_size"] == 12.0 and "losses/critic" in rows[1]
    from plyground.trainers.archer import ArCHerConfig, ArCHerTrainer

    cfg = ArCHerConfig(out_dir=str(tmp_path / "a"), total_steps=2, tasks_per_step=2, max_tokens=6, critic_steps=2,
                       critic_batch=4, env_kwargs={"max_questions": 3}, critic={"dim": 16, "head_hidden": 16, "encoder": "bag"})
    tr = ArCHerTrainer(cfg)
    assert tr.resume() and tr.iteration == 2 and len(tr.replay) == 12


def test_reinforce_and_filtered_bc_smoke(tiny, tmp_path) -> None:
    from plyground.trainers.baselines import (
        FilteredBCConfig,
        FilteredBCTrainer,
        ReinforceConfig,
        ReinforceTrainer,
    )

    model, tok = tiny
    kw = {"env_id": "TwentyQuestions-v0", "env_kwargs": {"max_questions": 2}, "total_steps": 1, "tasks_per_step": 2,
          "max_tokens": 6}
    hist = ReinforceTrainer(ReinforceConfig(out_dir=str(tmp_path / "r"), **kw), model=model, tokenizer=tok).train()
    assert hist[0]["env/turns_mean"] == 2.0
    hist = FilteredBCTrainer(FilteredBCConfig(out_dir=str(tmp_path / "f"), **kw), model=model, tokenizer=tok).train()
    assert hist[0]["charts/kept_frac"] == 0.0 and hist[0]["charts/grad_norm"] == 0.0


@pytest.mark.slow
def test_score_smoke(tmp_path) -> None:
    rows = _cmd_train("score", str(tmp_path / "s"), ["total_steps=2", "stage1_steps=1", "tasks_per_step=1",
                                                     "group_size=2", "max_tokens=6", "live_table=false"])
    assert [r["charts/stage"] for r in rows] == [1.0, 2.0]
    assert "env/edit_ratio" in rows[0] and "env/delta_c_to_i" in rows[1]


@pytest.mark.slow
def test_agent_q_smoke(tmp_path) -> None:
    rows = _cmd_train("agent-q", str(tmp_path / "q"), ["total_steps=1", "episodes_per_iteration=1", "simulations=3",
                                                       "k=2", "max_tokens=6", "mcts_rollout=none", "batch_size=4",
                                                       "live_table=false"])
    assert rows[0]["charts/pairs"] >= 0


@pytest.mark.slow
def test_bfs_prover_smoke(tmp_path) -> None:
    rows = _cmd_train("bfs-prover", str(tmp_path / "b"), ["env_id=GuessNumber-v0", "total_steps=1",
                                                          "problems_per_round=1", "filter_samples=1", "width=2",
                                                          "max_nodes=2", "max_tokens=6", "live_table=false"])
    assert rows[0]["charts/round"] == 1.0
