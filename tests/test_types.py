from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plyground.types import (
    Completion,
    Message,
    SamplingParams,
    Task,
    TokenRecord,
    Trajectory,
    Turn,
    Verdict,
    read_trajectories,
    write_jsonl,
)

# What JSON carries unchanged: no NaN (it is not equal to itself), no tuples (they come back lists).
floats = st.floats(allow_nan=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | floats | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)
json_dicts = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
token_ids = st.lists(st.integers(0, 200_000), max_size=8)

completions = st.builds(
    Completion,
    text=st.text(),
    token_ids=token_ids,
    logprobs=st.lists(st.floats(max_value=0, allow_nan=False), max_size=8),
    prompt_token_ids=token_ids,
    finish_reason=st.sampled_from(["stop", "length", "error"]),
)
turns = st.builds(
    Turn,
    observation=st.text(),
    action=st.text(),
    reward=floats,
    completion=st.none() | completions,
    info=json_dicts,
)
token_records = st.builds(
    TokenRecord,
    token_ids=token_ids,
    loss_mask=st.lists(st.integers(0, 1), max_size=8),
    logprobs=st.lists(st.floats(max_value=0, allow_nan=False), max_size=8),
)
trajectories = st.builds(
    Trajectory,
    env_id=st.text(min_size=1, max_size=20),
    task_id=st.none() | st.text(max_size=10),
    seed=st.none() | st.integers(0, 2**63 - 1),
    turns=st.lists(turns, max_size=3),
    total_reward=floats,
    success=st.booleans(),
    metadata=json_dicts,
    tokens=st.none() | token_records,
    error=st.none() | st.text(max_size=20),
)
tasks = st.builds(
    Task,
    id=st.text(),
    prompt=st.text(),
    answer=st.none() | st.text(),
    hints=st.lists(st.text(), max_size=3),
    metadata=json_dicts,
)
verdicts = st.builds(
    Verdict,
    score=floats,
    correct=st.booleans(),
    reason=st.text(),
    error=st.none() | st.text(),
    elapsed_s=st.floats(min_value=0, allow_nan=False),
)
sampling_params = st.builds(
    SamplingParams,
    max_tokens=st.integers(1, 100_000),
    temperature=st.floats(min_value=0, max_value=10),
    top_p=st.floats(min_value=0, max_value=1, exclude_min=True),
    n=st.integers(1, 64),
    stop=st.lists(st.text(min_size=1), max_size=3),
    seed=st.none() | st.integers(0, 2**32),
    logprobs=st.booleans(),
)


@settings(max_examples=80, deadline=None)
@given(trajectory=trajectories)
def test_trajectory_round_trips_exactly(trajectory: Trajectory) -> None:
    back = Trajectory.from_json(trajectory.to_json())
    assert back == trajectory
    assert all(isinstance(t, Turn) for t in back.turns)
    assert all(t.completion is None or isinstance(t.completion, Completion) for t in back.turns)
    assert back.tokens is None or isinstance(back.tokens, TokenRecord)
    assert back.to_json() == trajectory.to_json()


@settings(max_examples=60, deadline=None)
@given(record=st.one_of(tasks, verdicts, sampling_params, completions, token_records))
def test_records_round_trip_exactly(record: Any) -> None:
    assert type(record).from_json(record.to_json()) == record


def test_message_round_trip_and_openai_form() -> None:
    message = Message("user", "hi ✓")
    assert Message.from_json(message.to_json()) == message
    assert message.as_openai() == {"role": "user", "content": "hi ✓"}


def test_infinite_floats_survive_and_unknown_keys_are_ignored() -> None:
    verdict = Verdict(score=-math.inf, correct=False)
    assert Verdict.from_json(verdict.to_json()) == verdict
    data = json.loads(Task("a", "q").to_json()) | {"added_later": 1}
    assert Task.from_dict(data) == Task("a", "q")


def test_jsonl_skips_a_torn_last_line(tmp_path: Any) -> None:
    path = str(tmp_path / "t.jsonl")
    records = [Trajectory("E-v0", turns=[Turn("o", "a", 1.0, Completion("a", [1], [-0.5]))]), Trajectory("E-v0")]
    write_jsonl(path, records)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"env_id": "E-v0", "tur')
    assert read_trajectories(path) == records


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, "max_tokens must be >= 1, got 0"),
        ({"temperature": -0.1}, "temperature must be >= 0, got -0.1"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\], got 0.0"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\], got 1.5"),
        ({"n": 0}, "n must be >= 1, got 0"),
    ],
)
def test_sampling_params_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        SamplingParams(**kwargs)


@settings(max_examples=50, deadline=None)
@given(
    bad=st.one_of(
        st.builds(dict, max_tokens=st.integers(max_value=0)),
        st.builds(dict, temperature=st.floats(max_value=0, exclude_max=True)),
        st.builds(dict, top_p=st.floats(max_value=0) | st.floats(min_value=1, exclude_min=True)),
        st.builds(dict, n=st.integers(max_value=0)),
    )
)
def test_sampling_params_rejects_every_out_of_range_value(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SamplingParams(**bad)
