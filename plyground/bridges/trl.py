"""plyground envs for TRL's ``GRPOTrainer(environment_factory=...)`` (its multi-turn tool loop).

Written against trl 1.16's contract (``trl/trainer/grpo_trainer.py``), which is:

- ``environment_factory`` is a zero-argument callable (or a ``{name: callable}`` dict, each
  example then naming its env in an ``environment`` column); the trainer builds one instance per
  rollout and reuses instances across batches, calling ``reset`` before each rollout;
- ``reset(**example)`` receives the dataset row (``prompt`` and every other column) and returns a
  string appended to the last user message, or ``None``;
- every public method other than ``reset`` / ``get_reward`` is a tool: the model calls it by name
  with JSON arguments; its signature, type hints and Google-style docstring become the tool schema
  (``transformers.utils.get_json_schema``);
- ``get_reward()`` (optional) is called once per finished rollout and is a reward source of
  weight 1, logged under the env class's name.

Here each plyground env becomes a class with one tool (``act`` by default) that takes the action
string and returns the next observation. ``reset`` reads ``seed`` (and ``options``) from the row
when present; ``get_reward`` returns the episode's total reward (or success, ``reward="success"``).

    from plyground.bridges.trl import environment_factory, trl_dataset
    trainer = GRPOTrainer(model, args=GRPOConfig(...), train_dataset=trl_dataset("GuessNumber-v0", 64),
                          environment_factory=environment_factory("GuessNumber-v0"))
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from plyground.envs import make
from plyground.envs.core import TextEnv

INSTALL_HINT = "pip install trl  (or: pip install 'plyground[adapters]')"

_EPISODE_OVER = "The episode is over; no more actions are taken. Stop calling tools and give your final answer."


class PlygroundToolEnv:
    """Base of the generated env classes: one plyground env, played through one tool.

    Subclasses made by :func:`environment_factory` fix ``env_id``, ``env_kwargs``, the tool's
    name and the reward mode; instances are what TRL's ``environment_factory`` returns.
    """

    env_id: str = ""
    env_kwargs: dict[str, Any] = {}  # noqa: RUF012 - overridden per generated class, never mutated
    reward_mode: str = "total"
    instructions_in_reset: bool = True

    def __init__(self) -> None:
        self.env: TextEnv = make(self.env_id, **self.env_kwargs)
        self.total_reward = 0.0
        self.success = False
        self.done = False
        self.turns = 0
        self.actions: list[str] = []

    def reset(self, **example: Any) -> str | None:
        """Start an episode for one dataset row; the first observation goes into the prompt."""
        seed = example.get("seed")
        options = example.get("options") or None
        obs, info = self.env.reset(seed=None if seed is None else int(seed), options=options)
        self.total_reward, self.success, self.done, self.turns = 0.0, bool(info.get("success")), False, 0
        self.actions = []
        prompt = example.get("prompt")
        has_system = isinstance(prompt, list) and any(
            isinstance(m, dict) and m.get("role") == "system" for m in prompt
        )
        if self.instructions_in_reset and not has_system and self.env.instructions:
            return f"{self.env.instructions}\n\n{obs}"
        return obs

    def _act(self, action: str) -> str:
        if self.done:
            return _EPISODE_OVER
        self.actions.append(action)
        obs, reward, terminated, truncated, info = self.env.step(str(action))
        self.turns += 1
        self.total_reward += reward
        self.success = bool(info.get("success", False))
        self.done = terminated or truncated
        if self.done:
            return f"{obs}\n\n[episode finished: reward {self.total_reward:g}, success {self.success}]"
        return obs

    def get_reward(self) -> float:
        return float(self.success) if self.reward_mode == "success" else float(self.total_reward)

    def _close(self) -> None:
        # Private on purpose: TRL exposes every public method but reset/get_reward as a tool.
        self.env.close()


def _tool(name: str, description: str) -> Callable[..., str]:
    # ``self`` stays unannotated: transformers' get_json_schema reads every annotation of the method.
    def act(self, action: str) -> str:  # type: ignore[no-untyped-def]
        return self._act(action)  # type: ignore[no-any-return]

    act.__doc__ = (
        f"{description}\n\n"
        "Args:\n"
        "    action: The action to take, as text (the environment's instructions say what is valid).\n\n"
        "Returns:\n"
        "    The environment's observation after the action."
    )
    act.__name__ = act.__qualname__ = name
    return act


def environment_factory(
    env_id: str,
    tool_name: str = "act",
    tool_description: str | None = None,
    reward: str = "total",
    instructions_in_reset: bool = True,
    **env_kwargs: Any,
) -> type[PlygroundToolEnv]:
    """A TRL ``environment_factory`` for the registered plyground env ``env_id``.

    Returns a class (a zero-argument callable, as TRL wants); its name (``<Env>_TRLEnv``) is what
    TRL logs the env's reward under. ``reward``: ``"total"`` (sum of the episode's rewards) or
    ``"success"`` (1.0 when solved). ``instructions_in_reset``: when the row's prompt has no system
    message, ``reset`` puts the env's instructions before the first observation.
    """
    if reward not in ("total", "success"):
        raise ValueError(f"reward must be 'total' or 'success', got {reward!r}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", tool_name) or tool_name in ("reset", "get_reward"):
        raise ValueError(f"tool_name must be a Python identifier other than reset/get_reward, got {tool_name!r}")
    make(env_id, **env_kwargs).close()  # fail now on an unknown id or bad arguments
    description = tool_description or f"Take one action in the {env_id} environment."
    class_name = re.sub(r"\W", "_", env_id) + "_TRLEnv"
    namespace: dict[str, Any] = {
        "env_id": env_id,
        "env_kwargs": dict(env_kwargs),
        "reward_mode": reward,
        "instructions_in_reset": instructions_in_reset,
        tool_name: _tool(tool_name, description),
        "__module__": __name__,
        "__doc__": f"The plyground env {env_id} as a TRL environment (tool: {tool_name}).",
    }
    return type(class_name, (PlygroundToolEnv,), namespace)


def trl_dataset(
    env_id: str, episodes: int, seed: int = 0, system_prompt: bool = True, **env_kwargs: Any
) -> Any:
    """A ``datasets.Dataset`` of ``episodes`` rows for GRPOTrainer: ``prompt`` (the env's
    instructions as a system message, when ``system_prompt``, and an empty user message that
    ``reset`` fills with the first observation) and ``seed`` (``seed .. seed + episodes - 1``)."""
    from datasets import Dataset

    instructions = make(env_id, **env_kwargs).instructions
    head = [{"role": "system", "content": instructions}] if system_prompt and instructions else []
    rows = [[*head, {"role": "user", "content": ""}] for _ in range(episodes)]
    return Dataset.from_dict({"prompt": rows, "seed": list(range(seed, seed + episodes))})
