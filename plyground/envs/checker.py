"""``check_env``: does an environment keep the ``TextEnv`` contract?

``check_env`` runs small named checks, Gymnasium style; each can also be called on its own. A
failing check raises ``AssertionError`` whose message starts with the check's name and the env's
(``"check_determinism failed on GuessNumber-v0: ..."``); an exception the env raises inside a check
is reported the same way. Wrappers are looked through: the checks drive ``env.unwrapped``.

The checks play the env with a fixed probe policy: a random pick (seeded by ``seed``) from
``info["admissible_actions"]`` where the env gives them, else from ``PROBE_ACTIONS``.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any, ParamSpec

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import env_checker as gym_checker
from gymnasium.utils import passive_env_checker as gym_passive

from plyground.envs.core import TextEnv
from plyground.envs.registration import NAMESPACE, spec
from plyground.errors import UnknownNameError

# Actions that make sense in some env or other: a number, a boxed answer, a command, a word.
PROBE_ACTIONS = ("1", "50", "\\boxed{7}", "yes", "go north", "look", "hello", "0")
# Actions no env should choke on: empty, junk, very long, non-ASCII.
MALFORMED_ACTIONS = ("", "garbage!!", "x" * 10_000, "Ünïcödé 漢字 🙂 \u200b\n\t")

P = ParamSpec("P")
Step = tuple[str, float, bool, bool, dict[str, Any]]


def check_env(
    env: gym.Env[Any, Any],
    seed: int = 0,
    nondeterministic: bool = False,
    reward_range: tuple[float, float] | None = None,
) -> None:
    """Run every check on ``env``; raise ``AssertionError`` naming the first that fails.

    ``nondeterministic`` skips the comparisons of two equally seeded runs (determinism, and the
    observations after a restore). ``reward_range`` defaults to the registry spec's when the env
    was built by ``gymnasium.make``, else to ``env.reward_range``.
    """
    check_gymnasium_api(env, nondeterministic)
    check_text_api(env, seed)
    check_malformed_actions(env, seed)
    check_horizon(env, seed)
    check_reward_range(env, seed, reward_range)
    if not nondeterministic:
        check_determinism(env, seed)
    check_snapshot_restore(env, seed, nondeterministic)


def _named(check: Callable[P, None]) -> Callable[P, None]:
    """Make every failure of ``check`` an ``AssertionError`` that names the check and the env."""

    @functools.wraps(check)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            check(*args, **kwargs)
        except Exception as exc:
            env = args[0] if args else kwargs.get("env")
            detail = str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"
            raise AssertionError(f"{check.__name__} failed on {_env_name(env)}: {detail}") from exc

    return run


# -- the checks ----------------------------------------------------------------------------------
@_named
def check_gymnasium_api(env: gym.Env[Any, Any], nondeterministic: bool = False) -> None:
    """Gymnasium's own checker, with its warnings counted as failures."""
    base = _unwrap(env)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if not nondeterministic:
            gym_checker.check_env(base, skip_render_check=True)
        else:  # its steps that do not compare two seeded runs
            gym_passive.check_action_space(base.action_space)
            gym_passive.check_observation_space(base.observation_space)
            gym_checker.check_reset_return_type(base)
            gym_checker.check_reset_options(base)
            gym_passive.env_reset_passive_checker(base)
            gym_passive.env_step_passive_checker(base, base.action_space.sample())
            gym_checker.check_returned_data_not_reused(base)
    gym_warnings = [str(w.message) for w in caught if "WARN: " in str(w.message)]  # gymnasium.logger
    assert not gym_warnings, f"Gymnasium's checker warned: {gym_warnings}"


@_named
def check_text_api(env: gym.Env[Any, Any], seed: int = 0) -> None:
    """String spaces, observations and actions; ``info`` keys; instructions; a horizon."""
    base = _unwrap(env)
    assert isinstance(base.observation_space, spaces.Text), "observation_space is not a Text space"
    assert isinstance(base.action_space, spaces.Text), "action_space is not a Text space"
    assert isinstance(base.instructions, str) and base.instructions.strip(), "instructions are empty"
    assert isinstance(base.max_turns, int) and base.max_turns >= 1, f"max_turns is {base.max_turns!r}"
    obs, info = base.reset(seed=seed)
    _assert_observation(base, obs, info, "reset")
    rng = np.random.default_rng(seed)
    while True:
        obs, reward, terminated, truncated, info = base.step(_probe(rng, info))
        _assert_observation(base, obs, info, "step")
        assert isinstance(reward, float), f"step reward is {type(reward).__name__}, not float"
        assert type(terminated) is bool and type(truncated) is bool, "terminated/truncated are not bools"
        if terminated or truncated:
            return


@_named
def check_malformed_actions(env: gym.Env[Any, Any], seed: int = 0) -> None:
    """Empty, junk, very long and non-ASCII actions: no exception, an answer, and the turn counts."""
    base = _unwrap(env)
    for action in MALFORMED_ACTIONS:
        base.reset(seed=seed)
        obs, _, _, _, info = base.step(action)
        shown = repr(action[:20] + ("..." if len(action) > 20 else ""))
        assert isinstance(obs, str), f"action {shown} gave a {type(obs).__name__} observation"
        assert base.turn == 1, f"action {shown} did not count as a turn (turn = {base.turn})"
        if info.get("valid_action") is False:
            assert obs.strip(), f"action {shown} was refused with an empty observation"


@_named
def check_horizon(env: gym.Env[Any, Any], seed: int = 0) -> None:
    """An episode ends within ``max_turns`` steps, and truncation comes only at ``max_turns``."""
    base = _unwrap(env)
    _, info = base.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for step in range(1, base.max_turns + 1):
        _, _, terminated, truncated, info = base.step(_probe(rng, info))
        assert not truncated or step == base.max_turns, f"truncated at step {step} of {base.max_turns}"
        if terminated or truncated:
            return
    raise AssertionError(f"the episode did not end within max_turns = {base.max_turns} steps")


@_named
def check_reward_range(
    env: gym.Env[Any, Any], seed: int = 0, reward_range: tuple[float, float] | None = None
) -> None:
    """Rewards are finite and inside the spec's ``reward_range`` (probe episodes, malformed actions)."""
    base = _unwrap(env)
    low, high = reward_range if reward_range is not None else _spec_reward_range(env)
    rewards = [step[1] for s in range(seed, seed + 3) for step in _rollout(base, s)[2]]
    for action in MALFORMED_ACTIONS:
        base.reset(seed=seed)
        rewards.append(base.step(action)[1])
    for reward in rewards:
        assert not math.isnan(reward), "a reward is NaN"
        assert low <= reward <= high, f"reward {reward} is outside reward_range ({low}, {high})"


@_named
def check_determinism(env: gym.Env[Any, Any], seed: int = 0) -> None:
    """The same seed and the same actions give the same observations, rewards and endings."""
    base = _unwrap(env)
    first_obs, _, first = _rollout(base, seed)
    second_obs, _, second = _rollout(base, seed)
    assert first_obs == second_obs, f"reset(seed={seed}) gave different observations"
    _assert_same_steps(first, second, "a second seeded run")


@_named
def check_snapshot_restore(env: gym.Env[Any, Any], seed: int = 0, nondeterministic: bool = False) -> None:
    """``restore`` at a midpoint returns that observation, and the same actions then replay the
    same steps; a snapshot is not changed by later play and can be restored twice."""
    base = _unwrap(env)
    _, actions, _ = _rollout(base, seed)
    mid = len(actions) // 2
    obs, _ = base.reset(seed=seed)
    for action in actions[:mid]:
        obs = base.step(action)[0]
    state = base.snapshot()
    after = [base.step(action) for action in actions[mid:]]
    for attempt in ("first", "second"):
        base.reset(seed=seed + 1)  # wander off before coming back
        restored = base.restore(state)
        assert isinstance(restored, str), f"restore returned {type(restored).__name__}, not str"
        if nondeterministic:
            continue
        assert restored == obs, f"{attempt} restore at step {mid} gave {restored[:80]!r}, not {obs[:80]!r}"
        again = [base.step(action) for action in actions[mid:]]
        _assert_same_steps(after, again, f"the {attempt} restore at step {mid}")


# -- helpers -------------------------------------------------------------------------------------
def _unwrap(env: gym.Env[Any, Any]) -> TextEnv:
    base = env.unwrapped
    assert isinstance(base, TextEnv), f"{type(base).__name__} is not a TextEnv"
    return base


def _env_name(env: Any) -> str:
    spec = getattr(env, "spec", None)
    if spec is not None:
        return str(spec.id).removeprefix(f"{NAMESPACE}/")
    unwrapped = getattr(env, "unwrapped", env)
    return type(unwrapped).__name__


def _spec_reward_range(env: gym.Env[Any, Any]) -> tuple[float, float]:
    gym_spec = env.spec or env.unwrapped.spec
    if gym_spec is not None and gym_spec.id.startswith(f"{NAMESPACE}/"):
        try:
            return spec(gym_spec.id).reward_range
        except UnknownNameError:
            pass
    low, high = _unwrap(env).reward_range
    return float(low), float(high)


def _probe(rng: np.random.Generator, info: dict[str, Any]) -> str:
    """The probe policy: an admissible action where the env lists them, else a probe action."""
    admissible = info.get("admissible_actions")
    choices = list(admissible) if admissible else PROBE_ACTIONS
    return str(choices[int(rng.integers(len(choices)))])


def _rollout(base: TextEnv, seed: int) -> tuple[str, list[str], list[Step]]:
    """One probe episode from ``reset(seed=seed)``: the first observation, the actions, the steps."""
    obs, info = base.reset(seed=seed)
    rng = np.random.default_rng(seed)
    actions: list[str] = []
    steps: list[Step] = []
    for _ in range(base.max_turns):
        actions.append(_probe(rng, info))
        steps.append(base.step(actions[-1]))
        info = steps[-1][4]
        if steps[-1][2] or steps[-1][3]:
            break
    return obs, actions, steps


def _assert_observation(base: TextEnv, obs: Any, info: Any, where: str) -> None:
    assert isinstance(obs, str), f"{where} returned a {type(obs).__name__} observation, not str"
    assert obs in base.observation_space, f"{where} observation is not in observation_space"
    assert isinstance(info, dict), f"{where} info is a {type(info).__name__}, not dict"
    for key in ("success", "valid_action"):
        assert key in info, f"{where} info lacks {key!r}"


def _assert_same_steps(expected: list[Step], actual: list[Step], what: str) -> None:
    assert len(expected) == len(actual), f"{what} took {len(actual)} steps, expected {len(expected)}"
    for i, (a, b) in enumerate(zip(expected, actual, strict=True), start=1):
        assert a[0] == b[0], f"{what}: step {i} observation {b[0][:80]!r} != {a[0][:80]!r}"
        assert a[1:4] == b[1:4], f"{what}: step {i} (reward, terminated, truncated) {b[1:4]} != {a[1:4]}"
