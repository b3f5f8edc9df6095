"""``plyground train``: the sub-parser's help names every registered algorithm, and the docs do not
claim the parser refuses some of them."""

from __future__ import annotations

from pathlib import Path

from plyground.cli import build_parser
from plyground.trainers import TRAINERS

ROOT = Path(__file__).resolve().parents[1]


def _train_parser():  # type: ignore[no-untyped-def]
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["train"]  # type: ignore[attr-defined]


def test_train_help_names_every_registered_algorithm() -> None:
    algo = next(a for a in _train_parser()._actions if a.dest == "algo")
    listed = {name.strip() for name in algo.help.split(":", 1)[1].split(",")}
    assert listed == set(TRAINERS)
    assert algo.choices is None  # any registered name reaches cmd_train (which suggests close ones)


def test_the_train_command_summary_does_not_name_a_subset() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    summary = next(a.help for a in sub._choices_actions if a.dest == "train")  # type: ignore[attr-defined]
    named = {name for name in TRAINERS if f" {name}" in summary or f"{name}," in summary}
    assert named in (set(), set(TRAINERS)), summary  # all of them or none, never "sft, grpo, dpo or ppo"


def test_train_parser_accepts_guide_scaf_grpo_and_mrt() -> None:
    for name in ("guide", "scaf-grpo", "mrt"):
        assert _train_parser().parse_args([name]).algo == name


def test_trainer_docs_do_not_claim_the_parser_refuses_algorithms() -> None:
    text = (ROOT / "docs" / "trainers.md").read_text()
    assert 'choices=["sft", "grpo", "dpo", "ppo"]' not in text
    assert "rollout_backend" in text and "rollout_backend" in (ROOT / "docs" / "scale.md").read_text()
