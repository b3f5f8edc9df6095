from __future__ import annotations

import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env

import plyground
from plyground.envs.arithmetic import ArithmeticEnv
from plyground.envs.guess_number import GuessNumberEnv
from plyground.errors import UnknownNameError


def test_plyground_make_returns_the_bare_env() -> None:
    env = plyground.make("GuessNumber-v0")
    assert type(env) is GuessNumberEnv and (env.n, env.max_turns) == (100, 10)
    assert type(plyground.make("Arithmetic-v0")) is ArithmeticEnv


def test_gymnasium_make_builds_the_same_env_wrapped() -> None:
    env = gymnasium.make("plyground/GuessNumber-v0")
    assert type(env.unwrapped) is GuessNumberEnv
    obs, _ = env.reset(seed=0)
    assert obs == plyground.make("GuessNumber-v0").reset(seed=0)[0]
    assert env.step("50")[4]["valid_action"]


@pytest.mark.parametrize("env_id", ["GuessNumber-v0", "Arithmetic-v0"])
def test_gymnasium_env_checker_passes(env_id: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gymnasium_check_env(gymnasium.make(f"plyground/{env_id}").unwrapped)  # render check included
    # A text env has no frame rate; every other warning counts.
    assert [str(w.message) for w in caught if "render fps" not in str(w.message)] == []


def test_unknown_id_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match=r"^Unknown environment 'GuessNumbr-v0'\. Did you mean 'GuessNumber-v0'\?"):
        plyground.make("GuessNumbr-v0")
    with pytest.raises(KeyError, match="Did you mean 'Arithmetic-v0'"):
        plyground.spec("plyground/Arithmetc-v0")


def test_kwargs_override_the_spec_defaults() -> None:
    env = plyground.make("GuessNumber-v0", n=10, max_turns=4)
    assert isinstance(env, GuessNumberEnv) and (env.n, env.max_turns) == (10, 4)
    assert "between 1 and 10" in env.reset(seed=0)[0]
    wrapped = gymnasium.make("plyground/GuessNumber-v0", n=10)
    assert wrapped.unwrapped.n == 10  # type: ignore[attr-defined]
    arithmetic = plyground.make("Arithmetic-v0", digits=1)
    assert isinstance(arithmetic, ArithmeticEnv) and arithmetic.digits == 1


def test_specs_are_listed_with_what_they_declare() -> None:
    ids = [spec.id for spec in plyground.list_envs()]
    assert ids == sorted(ids) and {"GuessNumber-v0", "Arithmetic-v0"} <= set(ids)
    spec = plyground.spec("plyground/GuessNumber-v0")
    assert (spec.kind, spec.max_turns, spec.reward_range) == ("multi-turn", 10, (0.0, 1.0))
    assert plyground.spec("Arithmetic-v0").kind == "single-turn"


def test_gymnasium_make_kwargs_change_the_horizon() -> None:
    env = gymnasium.make("plyground/GuessNumber-v0", max_turns=20)
    env.reset(seed=0)
    for _ in range(19):
        assert not env.step("garbage")[3]
    assert env.step("garbage")[3]  # truncated at the 20th turn, not the registered 10th
