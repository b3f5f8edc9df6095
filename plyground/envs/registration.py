"""The environment registry: ``register``, ``make``, ``spec``, ``list_envs``.

Every id registered here is also registered with Gymnasium under the ``plyground/`` namespace, so
``gymnasium.make("plyground/GuessNumber-v0")`` and ``plyground.make("GuessNumber-v0")`` build the
same env. ``plyground.make`` returns the bare ``TextEnv`` (the rollout needs its ``instructions``
and ``snapshot``); ``gymnasium.make`` returns it wrapped as Gymnasium does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium

from plyground.envs.core import TextEnv
from plyground.errors import UnknownNameError

NAMESPACE = "plyground"


@dataclass(frozen=True)
class EnvSpec:
    """What the registry knows about an env. Every field is used by something:

    - ``entry_point``: ``"module:Class"`` or a callable returning a ``TextEnv``.
    - ``kind``: ``"multi-turn"`` or ``"single-turn"``, shown by ``plyground envs``.
    - ``max_turns``: the default horizon, shown by ``plyground envs`` (the env itself truncates
      at its ``max_turns``, so a constructor argument can change it).
    - ``reward_range``: shown by ``plyground envs``; the env checker asserts rewards stay inside.
    - ``components``: real parts the env needs (``"stockfish"``, ``"chromium"``); listed, and
      checked by ``make`` so a missing one fails before the episode starts.
    - ``nondeterministic``: the checker skips its determinism checks.
    - ``kwargs``: default constructor arguments; ``make(**kwargs)`` overrides them.
    """

    id: str
    entry_point: str | Callable[..., TextEnv]
    kind: str = "multi-turn"
    max_turns: int | None = None
    reward_range: tuple[float, float] = (-float("inf"), float("inf"))
    components: tuple[str, ...] = ()
    nondeterministic: bool = False
    description: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Callable[..., TextEnv]:
        if callable(self.entry_point):
            return self.entry_point
        module_name, _, attr = self.entry_point.partition(":")
        return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]


_REGISTRY: dict[str, EnvSpec] = {}


def register(
    id: str,
    entry_point: str | Callable[..., TextEnv],
    *,
    kind: str = "multi-turn",
    max_turns: int | None = None,
    reward_range: tuple[float, float] = (-float("inf"), float("inf")),
    components: tuple[str, ...] = (),
    nondeterministic: bool = False,
    description: str = "",
    **kwargs: Any,
) -> EnvSpec:
    """Register an env under ``id`` here and as ``plyground/<id>`` with Gymnasium.

    Extra keyword arguments become the env's default constructor arguments.
    """
    if "/" in id:
        raise ValueError(f"env ids carry no namespace (it is added for Gymnasium): {id!r}")
    spec = EnvSpec(
        id=id,
        entry_point=entry_point,
        kind=kind,
        max_turns=max_turns,
        reward_range=reward_range,
        components=tuple(components),
        nondeterministic=nondeterministic,
        description=description,
        kwargs=dict(kwargs),
    )
    _REGISTRY[id] = spec
    gym_id = f"{NAMESPACE}/{id}"
    if gym_id in gymnasium.registry:
        del gymnasium.registry[gym_id]
    gymnasium.register(
        id=gym_id,
        entry_point=_gym_entry_point(id),
        # No TimeLimit wrapper: a TextEnv truncates itself at its own max_turns, which a
        # constructor argument may change; a wrapper would keep the registered horizon.
        max_episode_steps=None,
        nondeterministic=nondeterministic,
        kwargs=dict(kwargs),
    )
    return spec


def _gym_entry_point(env_id: str) -> Callable[..., TextEnv]:
    def build(**kwargs: Any) -> TextEnv:
        return _construct(spec(env_id), kwargs)

    build.__name__ = f"make_{env_id.replace('-', '_')}"
    return build


def spec(id: str) -> EnvSpec:
    """The spec of a registered env; unknown ids fail with a "did you mean" hint."""
    env_id = id.removeprefix(f"{NAMESPACE}/")
    if env_id not in _REGISTRY:
        raise UnknownNameError("environment", env_id, _REGISTRY)
    return _REGISTRY[env_id]


def make(id: str, **kwargs: Any) -> TextEnv:
    """Build a registered env; ``kwargs`` override the spec's defaults."""
    env_spec = spec(id)
    return _construct(env_spec, {**env_spec.kwargs, **kwargs})


def _construct(env_spec: EnvSpec, kwargs: dict[str, Any]) -> TextEnv:
    env = env_spec.load()(**kwargs)
    if not isinstance(env, TextEnv):
        raise TypeError(f"{env_spec.id}: entry point built {type(env).__name__}, not a TextEnv")
    if env.spec is None:
        # So that the env knows its registered id (the rollout records it on trajectories).
        env.spec = gymnasium.spec(f"{NAMESPACE}/{env_spec.id}")
    return env


def list_envs() -> list[EnvSpec]:
    """All registered specs, sorted by id."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
