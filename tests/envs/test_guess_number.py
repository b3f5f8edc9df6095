from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plyground.envs import EnvSnapshot, TextEnv
from plyground.envs.guess_number import BisectionPolicy, GuessNumberEnv, GuessNumberState


def play(env: GuessNumberEnv, policy: BisectionPolicy, **reset_kwargs: object) -> list[tuple]:
    obs, _ = env.reset(**reset_kwargs)  # type: ignore[arg-type]
    policy.reset()
    steps = []
    while not env.done:
        steps.append(env.step(policy.act(obs)))
        obs = steps[-1][0]
    return steps


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100, 1000])
def test_bisection_finds_every_target_within_log2_guesses(n: int) -> None:
    bound = math.ceil(math.log2(n + 1))
    env, policy = GuessNumberEnv(n=n, max_turns=bound), BisectionPolicy(n=n)
    for target in range(1, n + 1, max(1, n // 100)):
        steps = play(env, policy, options={"target": target})
        obs, reward, terminated, truncated, info = steps[-1]
        assert (reward, terminated, truncated, info["success"]) == (1.0, True, False, True), (target, obs)
        assert obs == f"Correct! The number was {target}."
        assert len(steps) <= bound
        assert all(step[1] == 0.0 and not step[4]["success"] for step in steps[:-1])


def test_bisection_reads_the_range_from_the_reset_observation() -> None:
    env, policy = GuessNumberEnv(n=37, max_turns=6), BisectionPolicy(n=999)
    steps = play(env, policy, seed=5)
    assert steps[-1][4]["success"]


@pytest.mark.parametrize(
    ("action", "guess"),
    [
        ("42", 42),
        ("I guess 42", 42),
        ("Action: 42", 42),
        ("My guess is 42.", 42),
        ("Between 1-100 I pick 37", 37),
        ("  7\n", 7),
        ("100", 100),
        ("1", 1),
    ],
)
def test_lenient_parse_takes_the_last_integer(action: str, guess: int) -> None:
    env = GuessNumberEnv()
    env.reset(options={"target": 64})
    _, _, _, _, info = env.step(action)
    assert info == {"guess": guess, "valid_action": True, "success": False}


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("", "Invalid guess: your reply contains no integer. Reply with an integer from 1 to 100."),
        ("garbage!!", "Invalid guess: your reply contains no integer. Reply with an integer from 1 to 100."),
        ("42.5", "Invalid guess: 42.5 is not a whole number. Reply with an integer from 1 to 100."),
        ("0", "Invalid guess: 0 is out of range; the number is from 1 to 100."),
        ("101", "Invalid guess: 101 is out of range; the number is from 1 to 100."),
        ("-5", "Invalid guess: -5 is out of range; the number is from 1 to 100."),
        ("9" * 5000, "Invalid guess: 99999999999999999... is out of range; the number is from 1 to 100."),
    ],
)
def test_invalid_action_says_what_was_wrong_and_counts_as_a_turn(action: str, message: str) -> None:
    env = GuessNumberEnv()
    env.reset(options={"target": 64})
    obs, reward, terminated, truncated, info = env.step(action)
    assert obs == f"{message} You have 9 guesses left."
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info == {"guess": None, "valid_action": False, "success": False}
    assert env.turn == 1


def test_feedback_and_truncation() -> None:
    env = GuessNumberEnv(n=100, max_turns=3)
    obs, info = env.reset(options={"target": 64})
    assert obs == "I am thinking of an integer between 1 and 100. You have 3 guesses. What is your first guess?"
    assert info == {"guess": None, "success": False, "valid_action": True}
    assert env.step("50")[:4] == ("Higher. The number is greater than 50. You have 2 guesses left.", 0.0, False, False)
    assert env.step("80")[:4] == ("Lower. The number is less than 80. You have 1 guess left.", 0.0, False, False)
    assert env.step("70")[:4] == (
        "Lower. The number is less than 70. You are out of guesses. The number was 64.",
        0.0,
        False,
        True,
    )
    with pytest.raises(RuntimeError, match="finished episode"):
        env.step("64")


def test_a_correct_last_guess_terminates_rather_than_truncates() -> None:
    env = GuessNumberEnv(max_turns=1)
    env.reset(options={"target": 3})
    assert env.step("3")[1:4] == (1.0, True, False)


def test_instructions_state_the_range_the_turns_and_the_format() -> None:
    text = GuessNumberEnv(n=20, max_turns=5).instructions
    assert "between 1 and 20" in text and "5 guesses" in text and "single integer" in text


def test_seeded_targets_are_reproducible_and_cover_the_range() -> None:
    env = GuessNumberEnv(n=10)
    targets = []
    for seed in range(200):
        env.reset(seed=seed)
        targets.append(env.target)
        env.reset(seed=seed)
        assert env.target == targets[-1]
    assert set(targets) == set(range(1, 11))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n": 0}, "n must be >= 1, got 0"), ({"max_turns": 0}, "max_turns must be >= 1, got 0")],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        GuessNumberEnv(**kwargs)


def test_bad_target_option() -> None:
    with pytest.raises(ValueError, match=r"^target must be in 1\.\.100, got 101$"):
        GuessNumberEnv().reset(options={"target": 101})


def test_restore_accepts_a_native_or_a_replay_snapshot() -> None:
    env = GuessNumberEnv(render_mode="ansi")
    env.reset(seed=1)
    mid = env.step("50")[0]
    native, replay = env.snapshot(), TextEnv.snapshot(env)
    assert isinstance(native, GuessNumberState) and isinstance(replay, EnvSnapshot)
    env.step("25")
    assert env.restore(native) == mid and env.turn == 1 and env.render() == mid
    env.step("25")
    assert env.restore(replay) == mid and env.turn == 1 and env.render() == mid
    with pytest.raises(TypeError, match=r"^GuessNumberEnv\.restore expects a GuessNumberState, got dict$"):
        env.restore({})


# Guesses in and out of range, malformed text, and the occasional win.
ACTIONS = st.lists(
    st.one_of(
        st.integers(-3, 23).map(str),
        st.sampled_from(["", "garbage!!", "I guess 7", "4.5", "Action: 12"]),
        st.text(max_size=12),
    ),
    max_size=14,
)


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), actions=ACTIONS, cut=st.integers(0, 14), native=st.booleans())
def test_restore_reproduces_observations(seed: int, actions: list[str], cut: int, native: bool) -> None:
    """Snapshot at any point, play on, restore: the same actions give the same steps again.

    Both snapshot flavours: the native one and the base class's seed-and-replay one."""
    env = GuessNumberEnv(n=20, max_turns=8)
    obs, _ = env.reset(seed=seed)
    actions = actions[: env.max_turns]
    cut = min(cut, len(actions))
    for action in actions[:cut]:
        if env.done:
            return
        obs = env.step(action)[0]
    if env.done:
        return
    state = env.snapshot() if native else TextEnv.snapshot(env)
    turn = env.turn
    later = []
    for action in actions[cut:]:
        if env.done:
            break
        later.append(env.step(action))

    env.reset(seed=seed + 1)
    env.step("3")
    restored = env.restore(state) if native else TextEnv.restore(env, state)
    assert restored == obs
    assert env.turn == turn and not env.done
    again = [env.step(action) for action in actions[cut : cut + len(later)]]
    assert again == later


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), actions=ACTIONS)
def test_native_restore_leaves_the_same_state_as_replay(seed: int, actions: list[str]) -> None:
    env = GuessNumberEnv(n=20, max_turns=8)
    env.reset(seed=seed)
    for action in actions[: env.max_turns]:
        if env.done:
            break
        env.step(action)
    native, replay = env.snapshot(), TextEnv.snapshot(env)
    a, b = GuessNumberEnv(n=20, max_turns=8), GuessNumberEnv(n=20, max_turns=8)
    a.reset(seed=seed + 7)
    b.reset(seed=seed + 9)
    assert a.restore(native) == TextEnv.restore(b, replay)
    assert (a.target, a.turn, a.done, a.snapshot().actions) == (b.target, b.turn, b.done, tuple(b.snapshot().actions))
    assert a.np_random.bit_generator.state == b.np_random.bit_generator.state
    assert a.reset()[0] == b.reset()[0] and a.target == b.target  # unseeded resets continue alike


def test_state_key_is_the_interval_left() -> None:
    env = GuessNumberEnv()
    env.reset(seed=0, options={"target": 40})
    assert env.state_key() == "1..100 after 0"
    env.step("60")
    env.step("20")
    assert env.state_key() == "21..59 after 2"
    # Another path to the same interval and turn is the same search state; the observation
    # alone ("greater than 20") would have merged it with 21..100.
    other = GuessNumberEnv()
    other.reset(seed=0, options={"target": 40})
    other.step("20")
    obs, *_ = other.step("60")
    assert other.state_key() == env.state_key() and "less than 60" in obs
