"""The learning-curve scripts (examples/grpo_curve.py, examples/hint_zero_groups.py) and the TRL
step benchmark: plumbing checks (fast) and a shortened GRPO curve that must rise (slow)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

import plyground
from plyground.types import Message

ROOT = Path(__file__).resolve().parents[2]


def _load(path: Path, name: str) -> ModuleType:
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def curve() -> ModuleType:
    return _load(ROOT / "examples" / "grpo_curve.py", "grpo_curve")


@pytest.fixture(scope="module")
def hints() -> ModuleType:
    return _load(ROOT / "examples" / "hint_zero_groups.py", "hint_zero_groups")


def test_arithmetic_expert_is_always_right(curve: ModuleType) -> None:
    env = plyground.make("Arithmetic-v0", **curve.ENV_KWARGS)
    for seed in range(200):
        obs, _ = env.reset(seed=seed)
        reply = curve.arithmetic_expert([Message("system", env.instructions), Message("user", obs)])
        _, reward, terminated, _, info = env.step(reply)
        assert terminated and info["success"] and reward == 1.0, (obs, reply)
    with pytest.raises(ValueError):
        curve.arithmetic_expert([Message("user", "What is 1 + 2 + 3?")])


def test_curve_config_loads_and_eval_seeds_are_held_out(curve: ModuleType, tmp_path: Path) -> None:
    config = curve.grpo_config(3, tmp_path, {"total_steps": 2})
    assert config.env_id == curve.ENV_ID and config.env_kwargs == curve.ENV_KWARGS and config.seed == 3
    # GRPO plays seeds seed * 1_000_003 + k; the warm-up expert seed * 1_000_003 + 500_000 + k.
    assert curve.EVAL_SEED_BASE > 3 * 1_000_003 + 500_000 + 100_000
    with pytest.raises(ValueError, match="unknown GRPOConfig fields"):
        curve.grpo_config(0, tmp_path, {"not_a_field": 1})


def test_hint_tasks_split_easy_and_hard_with_a_restating_hint(hints: ModuleType) -> None:
    easy, hard = hints.make_tasks()
    assert len(easy) == len(hard) == 600
    assert sum(t.prompt.count(" ") == 2 for t in easy) == 300  # one-operand problems: half of the draws
    env = plyground.make("MathHints-v0", tasks=hard)
    obs, info = env.reset(seed=0, options={"task": hard[300 + 7 * 30 + 2 * 10 + 8], "hint_level": 1})
    assert obs == "Question: What is seven times eight?\nPlanning Hints: Compute 7 * 8."
    assert info["hint_tier"] == "planning"
    # The expert answers the easy questions, hinted or not, and the word problems have no digits.
    for task in easy:
        reply = hints.hint_expert([Message("user", f"Question: {task.prompt}\nPlanning Hints: x")])
        assert reply == f"\\boxed{{{task.answer}}}"
    assert not any(ch.isdigit() for task in hard for ch in task.prompt)


def test_each_method_logs_the_zero_reward_fraction(hints: ModuleType, tmp_path: Path) -> None:
    args = hints.parse_args(["--steps", "1", "--tasks-per-step", "2", "--group-size", "2", "--hidden-size", "32",
                             "--num-layers", "1", "--out", str(tmp_path)])
    for method in hints.METHODS:
        model, tok = hints.small_model(0, 32, 1)
        trainer = hints.method_trainer(method, 0, 1, tmp_path, model, tok, args)
        metrics = trainer.train_step()
        assert 0.0 <= metrics["env/zero_reward_group_frac"] <= 1.0
    summary = hints.summarise(
        [{"warm": {"easy": 0.5, "hard": 0.0},
          "grpo": {"steps": [{"env/zero_reward_group_frac": z} for z in (1.0, 0.5, 0.25)],
                   "final": {"easy": 0.5, "hard": 0.0}}}], ("grpo",), 3)
    assert summary["after_step"] == 1 and summary["grpo"]["mean_after_warmup"] == pytest.approx(0.375)


def test_trl_benchmark_poses_the_prompts_plyground_plays() -> None:
    bench = _load(ROOT / "benchmarks" / "grpo_step_vs_trl.py", "grpo_step_vs_trl")
    args = bench.parse_args(["--prompts", "2", "--steps", "1", "--warmup", "1"])
    rows = bench.step_prompts(args)
    assert len(rows) == 4
    env = plyground.make(bench.ENV_ID, **bench.ENV_KWARGS)
    for r in range(2):
        for i in range(2):
            obs, _ = env.reset(seed=bench.SEED * 1_000_003 + r * 2 + i)
            assert rows[r * 2 + i]["prompt"] == [
                {"role": "system", "content": env.instructions}, {"role": "user", "content": obs}]


@pytest.mark.slow
def test_grpo_curve_run_records_held_out_evaluations(curve: ModuleType, tmp_path: Path) -> None:
    """A shortened curve (one seed, small model): warm-up, GRPO steps and held-out evaluations run
    end to end and are recorded. (No claim that success rises: at this budget it did not, see
    docs/results/grpo_curve.md.)"""
    result = curve.main(["--seeds", "0", "--sft-steps", "10", "--sft-examples", "32", "--grpo-steps", "4",
                         "--eval-every", "2", "--eval-episodes", "16", "--hidden-size", "64",
                         "--out", str(tmp_path), "--table", str(tmp_path / "t.md")])
    run = result["runs"][0]
    assert [p["step"] for p in run["eval"]] == [0, 2, 4]
    assert all(0.0 <= p["greedy_success"] <= 1.0 and 0.0 <= p["sampled_success"] <= 1.0 for p in run["eval"])
    assert [m["step"] for m in run["train"]] == [1, 2, 3, 4]
    assert all("env/zero_reward_group_frac" in m for m in run["train"])
    assert (tmp_path / "curve.json").exists() and "| mean | 4 |" in (tmp_path / "t.md").read_text()
    model, tok = curve.small_model(0, hidden_size=32, num_layers=1)
    rate, trajs = curve.evaluate(model, tok, 4, 0.0, 4)
    assert len(trajs) == 4 and rate == sum(t.success for t in trajs) / 4
    assert {t.seed for t in trajs} == {curve.EVAL_SEED_BASE + i for i in range(4)}
