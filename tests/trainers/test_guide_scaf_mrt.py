"""Guide, Scaf-GRPO and MRT: hand-computed checks of their rules, scripted-policy checks of the
hinted re-sampling, and CLI smoke runs on the tiny model (CPU, seconds each)."""

from __future__ import annotations

import argparse
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

import plyground
from plyground.inference.models import tiny_model
from plyground.inference.scripted import ScriptedBackend, ScriptedTokenBackend
from plyground.tasks.hints import TIERS
from plyground.trainers import TRAINERS, GRPOConfig, GRPOTrainer
from plyground.trainers.core.loop import StepTotals
from plyground.trainers.guide import GuideConfig, GuideTrainer, guide_ratio
from plyground.trainers.mrt import (
    MRTConfig,
    MRTTrainer,
    cumulative_regret,
    estimate_j,
    progress,
    split_episodes,
    star_filter,
    termination_advantages,
)
from plyground.trainers.scaf_grpo import ScafGRPOConfig, ScafGRPOTrainer
from plyground.types import Chat, Message

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    return tiny_model()


# -- Guide ---------------------------------------------------------------------------------------------
def test_guide_ratio_is_taken_against_the_unhinted_context(tmp_path: Path, tiny: Any) -> None:
    model, tok = tiny
    config = GuideConfig(
        out_dir=str(tmp_path), tasks_per_step=1, group_size=2, max_tokens=6, total_steps=1, micro_batch_size=4,
    )
    # Unhinted samples all score 0 -> the group is re-sampled with hint level 1; one hinted sample scores 1.
    trainer = GuideTrainer(config, model, tok, reward_fn=lambda t: float(bool(t.metadata.get("hinted"))
                                                                          and t.metadata["sample"] == 0))
    trajs = trainer.sample(0)
    assert len(trajs) == 2 and all(t.metadata["hinted"] and t.metadata["hint_level"] == 1 for t in trajs)
    assert "Hints:" in trajs[0].turns[0].observation
    hinted = trajs[0]
    # By hand: the unhinted chat as the model sees it, then the same response tokens.
    env = plyground.make("MathHints-v0")
    obs, _ = env.reset(seed=int(hinted.seed or 0))
    assert "Hints:" not in obs
    chat = [{"role": "system", "content": env.instructions}, {"role": "user", "content": obs}]
    prompt_ids = tok(tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True),
                     add_special_tokens=False)["input_ids"]
    assert hinted.tokens is not None
    start = hinted.tokens.loss_mask.index(1)
    response = hinted.tokens.token_ids[start:]
    record = trainer.training_record(hinted)
    assert record is not None
    assert record.token_ids == list(prompt_ids) + response
    assert record.logprobs[len(prompt_ids):] == hinted.tokens.logprobs[start:]  # old: the hinted sampling
    ids = torch.tensor([record.token_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    n = len(prompt_ids)
    hand_new = torch.tensor([float(lp[n + i - 1, tok_id]) for i, tok_id in enumerate(response)])
    mask = torch.tensor(record.loss_mask[n:], dtype=torch.float32)
    old = torch.tensor(record.logprobs[n:])
    # The hinted sampling's logprobs are the model's on the hinted context, not the unhinted one.
    with torch.no_grad():
        hl = torch.log_softmax(model(input_ids=torch.tensor([hinted.tokens.token_ids])).logits[0].float(), -1)
    hand_hinted = torch.tensor([float(hl[start + i - 1, t]) for i, t in enumerate(response)])
    assert torch.allclose(old * mask, hand_hinted * mask, atol=1e-4)
    assert not torch.allclose(hand_new * mask, hand_hinted * mask, atol=1e-3)

    batch = trainer.build_batch(trajs)
    assert batch["hinted"].tolist() == [1.0, 1.0]
    row = 0 if trainer.last_trajectories[0] is hinted else 1
    width = len(record.token_ids)
    from plyground.trainers.core.logprobs import token_logprobs

    with torch.no_grad():
        got = token_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["loss_mask"])["logprobs"]
    bmask = batch["loss_mask"][row, n:width]
    assert torch.allclose(got[row, n:width] * bmask, hand_new * bmask, atol=1e-4)
    ratio = torch.exp(got[row, n:width] - batch["old_logprobs"][row, n:width]) * bmask
    hand_ratio = torch.exp(hand_new - old) * bmask
    assert torch.allclose(ratio, hand_ratio, atol=1e-4)

    # The loss on hinted tokens: -A * rho / (rho + gamma), gamma the 0.9-quantile of rho, token mean.
    totals = StepTotals(tokens=float(batch["loss_mask"].sum()), sequences=2.0, micro_batches=1)
    with torch.no_grad():
        loss, metrics = trainer.compute_loss(batch, totals)
    m = batch["loss_mask"]
    rho = torch.exp(got - batch["old_logprobs"])
    values = sorted(float(v) for v in rho[m > 0])
    pos = 0.9 * (len(values) - 1)
    lo = int(pos)
    gamma = values[lo] + (values[min(lo + 1, len(values) - 1)] - values[lo]) * (pos - lo)
    hand_loss = float((-batch["advantages"] * rho / (rho + gamma) * m).sum() / m.sum())
    assert metrics["guide/gamma"] == pytest.approx(max(gamma, 1e-4), rel=1e-4)
    assert float(loss) == pytest.approx(hand_loss, rel=1e-4, abs=1e-6)


def test_guide_ratio_formula_by_hand() -> None:
    new = torch.log(torch.tensor([[0.5, 1.0, 2.0, 4.0]]))
    old = torch.zeros(1, 4)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last token is not a hinted model token
    shaped, gamma = guide_ratio(new, old, mask, quantile=0.5)
    assert float(gamma) == pytest.approx(1.0)  # median of 0.5, 1, 2
    assert shaped[0, :3].tolist() == pytest.approx([0.5 / 1.5, 0.5, 2 / 3])
    _, tiny_gamma = guide_ratio(torch.full((1, 2), -50.0), torch.zeros(1, 2), torch.ones(1, 2))
    assert float(tiny_gamma) == pytest.approx(1e-4)  # gamma >= 1e-4


def answers_for(env_id: str, seeds: range) -> dict[str, str]:
    env = plyground.make(env_id)
    out = {}
    for s in seeds:
        obs, info = env.reset(seed=s)
        out[obs.split("\n")[0]] = str(info["task"]["answer"])
    return out


def hint_policy(answers: dict[str, str], needs: str = "Hints:", every: int = 2) -> Any:
    """Right only with ``needs`` in the prompt, and then on every ``every``-th call (so a hinted
    group is mixed, i.e. has a learning signal); wrong otherwise."""
    calls = itertools.count()

    def policy(chat: Chat) -> str:
        user = [m.content for m in chat if m.role == "user"][-1]
        if needs in user and next(calls) % every == 0:
            return f"\\boxed{{{answers[user.split(chr(10))[0]]}}}"
        return "\\boxed{-1}"

    return policy


def test_hinted_resampling_lowers_the_zero_reward_group_fraction(tmp_path: Path, tiny: Any) -> None:
    """A scripted policy that can only solve with a hint: GRPO's groups are all zero-reward; Guide
    and Scaf-GRPO turn them into groups with signal (the logged env/zero_reward_group_frac falls)."""
    model, tok = tiny
    common = dict(tasks_per_step=3, group_size=4, max_tokens=16, total_steps=1, micro_batch_size=12, lr=1e-4,
                  reproducible_rollouts=True)
    answers = answers_for("MathHints-v0", range(0, 3))
    logged: dict[str, dict[str, float]] = {}
    runs: list[tuple[str, Any]] = [
        ("grpo", GRPOTrainer(GRPOConfig(out_dir=str(tmp_path / "grpo"), env_id="MathHints-v0", **common), model, tok)),
        ("guide", GuideTrainer(GuideConfig(out_dir=str(tmp_path / "guide"), **common), model, tok)),
        ("scaf", ScafGRPOTrainer(
            ScafGRPOConfig(out_dir=str(tmp_path / "scaf"), guidance_warmup_steps=0, **common), model, tok)),
    ]
    for name, trainer in runs:
        trainer.backend = ScriptedTokenBackend(hint_policy(answers), tok)
        if name == "guide":  # one real logged update; the others' step metrics are the same dict, unlogged
            trainer.train()
            logged[name] = json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[-1])
        else:
            trainer.make_step_batch()
            logged[name] = dict(trainer.step_metrics)
    assert logged["grpo"]["env/zero_reward_group_frac"] == 1.0
    assert logged["grpo"]["env/zero_variance_group_frac"] == 1.0  # no learning signal at all
    for name in ("guide", "scaf"):
        assert logged[name]["env/zero_reward_group_frac"] == 0.0, name
        assert logged[name]["env/zero_variance_group_frac"] == 0.0, name  # every group now has signal
    assert logged["guide"]["guide/zero_reward_group_frac_unhinted"] == 1.0
    assert logged["scaf"]["scaf/replaced_groups"] == 3.0


def test_guide_mix_mode_keeps_correct_hinted_samples_and_fills_with_failures(tmp_path: Path, tiny: Any) -> None:
    model, tok = tiny
    config = GuideConfig(out_dir=str(tmp_path), tasks_per_step=1, group_size=4, max_tokens=16, total_steps=1,
                         mode="mix", reproducible_rollouts=True)
    trainer = GuideTrainer(config, model, tok)
    trainer.backend = ScriptedTokenBackend(hint_policy(answers_for("MathHints-v0", range(0, 2))), tok)
    trajs = trainer.sample(0)
    assert [bool(t.metadata.get("hinted")) for t in trajs] == [True, True, False, False]
    assert trainer.score(trajs).tolist() == [1.0, 1.0, 0.0, 0.0]


# -- Scaf-GRPO -----------------------------------------------------------------------------------------
def scaf(tmp_path: Path, tiny: Any, policy: Any, **kw: Any) -> ScafGRPOTrainer:
    model, tok = tiny
    settings: dict[str, Any] = dict(tasks_per_step=2, group_size=4, max_tokens=16, total_steps=10,
                                    micro_batch_size=8, reproducible_rollouts=True)
    config = ScafGRPOConfig(out_dir=str(tmp_path), **{**settings, **kw})
    trainer = ScafGRPOTrainer(config, model, tok)
    trainer.backend = ScriptedTokenBackend(policy, tok)
    return trainer


def test_scaf_warmup_then_one_success_replaces_one_failure(tmp_path: Path, tiny: Any) -> None:
    answers = answers_for("MathHints-v0", range(0, 10))
    trainer = scaf(tmp_path, tiny, hint_policy(answers, needs="Planning Hints:", every=1))
    assert trainer.config.warmup == 2  # 15% of 10 steps, rounded up
    for step in (0, 1):  # warm-up: no hints, the zero-reward groups stay
        trainer.step = step
        trajs = trainer.sample(step)
        assert not any(t.metadata.get("hinted") for t in trajs)
        assert trainer.score(trajs).sum() == 0 and trainer.hint_log == []
    trainer.step = 2
    trajs = trainer.sample(2)
    rewards = trainer.score(trajs)
    groups = trainer.group_ids(trajs)
    for g in groups.unique():
        r = rewards[groups == g]
        assert len(r) == 4 and float(r.sum()) == 1.0  # exactly one success in a replaced group
        members = [t for t, gi in zip(trajs, groups.tolist(), strict=True) if gi == int(g)]
        assert members[0].metadata.get("hinted") and members[0].metadata["hint_tier"] == "planning"  # first slot
        assert sum(bool(t.metadata.get("hinted")) for t in members) == 1
        tried = [(h["tier"], h["k"]) for h in trainer.hint_log if h["group"] == int(g)]
        assert tried[-1] == ("planning", 1) and {tier for tier, _ in tried[:-1]} == {"knowledge"}
    # Advantages are recomputed on the new group: +1.5 for the success, -0.5 for each failure.
    batch = trainer.build_batch(trajs)
    per_seq = batch["advantages"].sum(1) / batch["loss_mask"].sum(1)
    expected = torch.tensor([1.5, -0.5, -0.5, -0.5] * 2)
    assert torch.allclose(per_seq, expected, atol=1e-3)
    # The hinted sample trains on q + hint (its ratio's numerator and denominator share the context).
    first = trajs[0]
    record = trainer.training_record(first)
    assert first.tokens is not None and record is not None and record.token_ids == first.tokens.token_ids


def test_scaf_hint_ladder_is_knowledge_then_planning_then_solution(tmp_path: Path, tiny: Any) -> None:
    seen: list[str] = []

    def never(chat: Chat) -> str:
        seen.append([m.content for m in chat if m.role == "user"][-1])
        return "\\boxed{-1}"

    trainer = scaf(tmp_path, tiny, never, guidance_warmup_steps=0, tasks_per_step=1)
    trajs = trainer.sample(0)
    assert float(trainer.score(trajs).sum()) == 0.0  # the ladder ran out: the group stays as it was
    tiers = [h["tier"] for h in trainer.hint_log]
    ladder = trainer.ladder(int(trajs[0].seed or 0))
    assert [(h["tier"], h["k"]) for h in trainer.hint_log] == ladder
    assert tiers == sorted(tiers, key=TIERS.index) and set(tiers) == set(TIERS)
    hinted = seen[4:]  # after the 4 unhinted rollouts
    assert hinted[0].startswith("Question: ") and "\nKnowledge Hints: " in hinted[0]
    for prev, cur, (p_tier, _), (c_tier, _) in zip(hinted, hinted[1:], ladder, ladder[1:], strict=False):
        if p_tier == c_tier:  # cumulative within a tier: level k contains level k - 1
            assert prev.split("Hints: ", 1)[1] in cur.split("Hints: ", 1)[1]


def test_configs_validate() -> None:
    with pytest.raises(ValueError):
        ScafGRPOConfig(warmup_frac=1.5)
    with pytest.raises(ValueError):
        GuideConfig(first_hint_level=0)
    with pytest.raises(ValueError):
        GuideConfig(beta=0.1)
    with pytest.raises(ValueError):
        MRTConfig(variant="dpo")  # type: ignore[arg-type]
    for name in ("guide", "scaf-grpo", "mrt"):
        config_cls, _ = TRAINERS[name]
        import dataclasses

        assert all(f.metadata.get("help") for f in dataclasses.fields(config_cls)), name


# -- MRT -----------------------------------------------------------------------------------------------
QUESTION = "Compute ((2 + 3) * 4) - 5."
GOOD = "2 + 3 = 5\n\n5 * 4 = 20\n\n20 - 5 = 15"
LATE = "Let me think.\n\nHmm, carefully.\n\n2 + 3 = 5, 5 * 4 = 20, 20 - 5 = 15"
K = 4
CORRECT_OF_K = {0: 0, 1: 1, 2: 2, 3: 4}  # forced answers right out of K, by steps written so far


def chain_policy() -> Any:
    """Forced answer after a prefix with s computed steps: right on CORRECT_OF_K[s] of every K calls."""
    calls = itertools.count()

    def policy(chat: Chat) -> str:
        partial = chat[-1].content.split("\n\nTime is up.")[0]
        steps = partial.count("=")
        return "\\boxed{15}" if next(calls) % K < CORRECT_OF_K[steps] else "\\boxed{7}"

    return policy


def correct(text: str) -> bool:
    return "\\boxed{15}" in text


def test_mrt_progress_and_regret_by_hand() -> None:
    chat = [Message("user", QUESTION)]
    episodes = split_episodes(GOOD)
    assert episodes == ["2 + 3 = 5\n\n", "5 * 4 = 20\n\n", "20 - 5 = 15"] and "".join(episodes) == GOOD
    assert split_episodes("a\n\nb\n\nc\n\nd", max_episodes=2) == ["a\n\nb\n\n", "c\n\nd"]
    j = estimate_j(ScriptedBackend(chain_policy()), chat, episodes, correct, k=K)
    assert j == [0.0, 0.25, 0.5, 1.0]
    assert progress(j) == [0.25, 0.25, 0.5]
    assert cumulative_regret(j) == pytest.approx(0.75 + 0.5 + 0.0)
    j_late = estimate_j(ScriptedBackend(chain_policy()), chat, split_episodes(LATE), correct, k=K)
    assert j_late == [0.0, 0.0, 0.0, 1.0] and progress(j_late) == [0.0, 0.0, 1.0]
    assert cumulative_regret(j_late) == pytest.approx(2.0)


def test_mrt_star_keeps_only_progress_maximising_correct_traces() -> None:
    chat = [Message("user", QUESTION)]
    traces = [GOOD, LATE, "2 + 3 = 5\n\n5 * 4 = 20\n\n20 - 5 = 14", GOOD]
    js = [estimate_j(ScriptedBackend(chain_policy()), chat, split_episodes(t), correct, k=K) for t in traces]
    outcome = [t.endswith("= 15") for t in traces]
    assert star_filter(outcome, js) == [0, 3]  # LATE is correct but wastes episodes; #2 is wrong
    assert star_filter([False] * 4, js) == []


def test_mrt_termination_baseline_advantages_are_zero_mean() -> None:
    """A = R - R_termination: at every prefix the forced (terminated) answers' advantages average
    to exactly 0, so the baseline only credits what continuing adds; a trace's own per-episode
    advantages are R - J(z_0..j-1)."""
    chat = [Message("user", QUESTION)]
    episodes = split_episodes(GOOD)
    j = estimate_j(ScriptedBackend(chain_policy()), chat, episodes, correct, k=K)
    backend = ScriptedBackend(chain_policy())
    for i in range(len(episodes) + 1):
        prefix = "".join(episodes[:i])
        from plyground.trainers.mrt import forced_chat
        from plyground.types import SamplingParams

        comps = backend.generate([forced_chat(chat, prefix)], SamplingParams(max_tokens=8, n=K))[0]
        adv = [float(correct(c.text)) - j[i] for c in comps]
        assert sum(adv) == pytest.approx(0.0, abs=1e-12)
    assert termination_advantages(1.0, j) == [1.0, 0.75, 0.5]


def test_mrt_token_advantages_add_the_episode_progress(tmp_path: Path, tiny: Any) -> None:
    model, tok = tiny
    config = MRTConfig(out_dir=str(tmp_path), env_id="Arithmetic-v0", env_kwargs={"digits": 1, "num_operands": 2},
                       tasks_per_step=1, group_size=2, max_tokens=24, total_steps=1, j_samples=2, progress_weight=0.5,
                       reproducible_rollouts=True)
    trainer = MRTTrainer(config, model, tok)
    answer = trainer.gold(int(config.seed * 1_000_003))

    def reasoning(chat: Chat) -> str:
        if chat[-1].role == "assistant":  # a forced answer: right once the second paragraph is written
            return f"\\boxed{{{answer}}}" if "step two" in chat[-1].content else "\\boxed{-5}"
        return f"step one\n\nstep two\n\n\\boxed{{{answer}}}"

    trainer.backend = ScriptedTokenBackend(reasoning, tok)
    trajs = trainer.sample(0)
    t = trajs[0]
    assert t.metadata["mrt_J"] == [0.0, 0.0, 1.0, 1.0] and t.metadata["mrt_progress"] == [0.0, 1.0, 0.0]
    assert t.metadata["mrt_regret"] == pytest.approx(1.0)
    batch = trainer.build_batch(trajs)
    row = trainer.last_trajectories.index(t)
    m = batch["loss_mask"][row] > 0
    values = sorted({round(float(v), 4) for v in batch["advantages"][row][m]})
    # R = 1: episode 0 -> 1 - 0 + 0.5*0, episode 1 -> 1 - 0 + 0.5*1, episode 2 -> 1 - 1 + 0.
    assert values == [0.0, 1.0, 1.5]


# -- CLI smoke runs ------------------------------------------------------------------------------------
def run_cli(algo: str, config: str, out: Path, *sets: str) -> dict[str, Any]:
    from rich.console import Console

    from plyground.cli import cmd_train

    args = argparse.Namespace(algo=algo, config=str(CONFIGS / config), env=None, model=None, out=str(out),
                              set=list(sets), resume=False, json=True)
    assert cmd_train(args, Console(file=open("/dev/null", "w"))) == 0  # noqa: SIM115
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return lines[-1]


@pytest.mark.parametrize(
    ("algo", "config", "sets", "keys"),
    [
        ("guide", "guide_mathhints_tiny.yaml", ["max_tokens=6"], ["guide/hinted_frac"]),
        ("scaf-grpo", "scaf_grpo_mathhints_tiny.yaml", ["max_tokens=6", "guidance_warmup_steps=0",
                                                        "max_hint_level=2"], ["scaf/replaced_groups"]),
        ("mrt", "mrt_arithmetic_tiny.yaml", ["max_tokens=8", "j_samples=2", "force_max_tokens=4"],
         ["mrt/cumulative_regret"]),
        ("mrt", "mrt_arithmetic_tiny.yaml", ["variant=star", "max_tokens=8", "j_samples=2", "force_max_tokens=4"],
         ["mrt/star_kept_frac", "losses/nll"]),
    ],
)
def test_cli_smoke(tmp_path: Path, algo: str, config: str, sets: list[str], keys: list[str]) -> None:
    last = run_cli(algo, config, tmp_path, "total_steps=1", "tasks_per_step=1", "group_size=2",
                   "live_table=false", *sets)
    assert last["step"] == 1
    for key in keys:
        assert key in last, (key, sorted(last))
    assert re.match(r"step_\d+", next((tmp_path / "checkpoints").glob("step_*")).name)


def test_hinted_resamples_draw_other_numbers_on_other_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    import plyground.rollout.collector as collector
    from plyground.trainers.guide import play

    seeds: list[int | None] = []
    monkeypatch.setattr(collector, "collect_sync", lambda *a, **k: seeds.append(a[3].sampling.seed) or [])
    config = GuideConfig(env_id="GuessNumber-v0")

    def seed_for(rank: int, world_size: int, rollout_index: int) -> int | None:
        play(types.SimpleNamespace(config=config, backend=None, rank=rank, world_size=world_size), [], rollout_index, salt=1)  # type: ignore[arg-type]
        return seeds[-1]

    # One process samples as before (shard = rollout index); two processes never share a seed.
    assert seed_for(0, 1, 3) == (config.seed * 7919 + 3 * 104_729 + 1) % 2**31
    two = [seed_for(r, 2, i) for i in range(4) for r in range(2)]
    assert len(set(two)) == len(two)
