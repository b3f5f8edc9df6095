"""An agent loop that plays plyground envs inside verl's multi-turn rollout.

Written against verl's agent-loop API (``verl/experimental/agent_loop/agent_loop.py``):
``AgentLoopBase.__init__(trainer_config, server_manager, tokenizer, processor, dataset_cls,
dataset_config, **kwargs)``, ``async run(sampling_params, **dataset_fields) -> AgentLoopOutput``,
``await self.apply_chat_template(messages, remove_system_prompt=...)`` for prompt ids,
``await self.server_manager.generate(request_id, prompt_ids=..., sampling_params=...)`` returning a
``TokenOutput`` (``token_ids``, ``log_probs``), and ``@register(name)`` so that a dataset row whose
``agent_name`` is that name is run by the class (``hydra.utils.instantiate`` by qualified name).

When verl is installed, importing this module registers ``PlygroundAgentLoop`` as
``"plyground_agent"``. Each dataset row says which env to play in ``extra_info`` (``env_id``,
``seed``, ``env_kwargs``, ``options``); :func:`verl_rows` builds such rows. The episode becomes one
response: the model's tokens (mask 1, with their log-probabilities) interleaved with the env's
observations as user turns (mask 0), cut at ``rollout.response_length``; ``reward_score`` is the
episode's total reward, and ``extra_fields`` carry success, turns and actions.

verl is not a dependency (it pulls vLLM/SGLang and Ray); :func:`make_agent_loop_class` builds the
same class on any base with verl's signatures, which is how the tests check the contract.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import uuid4

from plyground.envs import make
from plyground.rollout.agent import parse_action

AGENT_NAME = "plyground_agent"
INSTALL_HINT = "pip install verl  (needs vLLM or SGLang and Ray; see verl's install guide)"


class PlygroundAgentLoopMixin:
    """The loop itself; mixed into a subclass of verl's ``AgentLoopBase``.

    Expects from the base: ``self.config`` (trainer config), ``self.tokenizer``,
    ``self.server_manager`` and ``async self.apply_chat_template``. ``output_cls`` is verl's
    ``AgentLoopOutput``.
    """

    output_cls: Any = None
    action_parser: Callable[[str], str] = staticmethod(parse_action)
    config: Any
    tokenizer: Any
    server_manager: Any
    # Provided by verl's AgentLoopBase (declared only: a method here would shadow the base's).
    apply_chat_template: Callable[..., Awaitable[list[int]]]

    def _response_length(self) -> int:
        try:
            return int(self.config.actor_rollout_ref.rollout.response_length)
        except AttributeError:
            return 1024

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> Any:
        extra = dict(kwargs.get("extra_info") or {})
        env_id = extra.get("env_id") or kwargs.get("env_id")
        if not env_id:
            raise ValueError("plyground agent loop: the dataset row needs extra_info['env_id'] (see verl_rows)")
        env = make(str(env_id), **dict(extra.get("env_kwargs") or {}))
        loop = asyncio.get_running_loop()
        budget = self._response_length()
        try:
            seed = extra.get("seed")
            obs, info = await loop.run_in_executor(
                None, lambda: env.reset(seed=None if seed is None else int(seed), options=extra.get("options"))
            )
            messages: list[dict[str, Any]] = []
            if env.instructions:
                messages.append({"role": "system", "content": env.instructions})
            messages.append({"role": "user", "content": obs})
            prompt_ids = list(await self.apply_chat_template(messages))
            response_ids: list[int] = []
            response_mask: list[int] = []
            logprobs: list[float] = []
            total, success, turns, actions = 0.0, False, 0, []
            request_id = uuid4().hex
            done = False
            while not done and len(response_ids) < budget and turns < env.max_turns:
                out = await self.server_manager.generate(
                    request_id, prompt_ids=prompt_ids + response_ids, sampling_params=sampling_params
                )
                ids = list(out.token_ids)
                response_ids += ids
                response_mask += [1] * len(ids)
                got = list(out.log_probs) if getattr(out, "log_probs", None) else [0.0] * len(ids)
                logprobs += got[: len(ids)] + [0.0] * (len(ids) - len(got))
                reply = self.tokenizer.decode(ids, skip_special_tokens=True)
                action = self.action_parser(reply)
                actions.append(action)
                obs, reward, terminated, truncated, info = await loop.run_in_executor(None, env.step, action)
                turns += 1
                total += reward
                success = bool(info.get("success", False))
                done = terminated or truncated
                messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": obs}]
                if not done:
                    user_ids = list(await self.apply_chat_template(
                        [{"role": "user", "content": obs}], remove_system_prompt=True
                    ))
                    response_ids += user_ids
                    response_mask += [0] * len(user_ids)
                    logprobs += [0.0] * len(user_ids)
        finally:
            env.close()
        return self.output_cls(
            prompt_ids=prompt_ids,
            response_ids=response_ids[:budget],
            response_mask=response_mask[:budget],
            response_logprobs=logprobs[:budget],
            multi_modal_data={},
            reward_score=float(total),
            num_turns=2 * turns + 1,
            metrics={},
            extra_fields={"env_id": env_id, "success": success, "turns": turns, "actions": actions,
                          "truncated_response": len(response_ids) > budget},
        )


def make_agent_loop_class(
    base: type, output_cls: Any, register: Callable[[str], Callable[[type], type]] | None = None,
    name: str = AGENT_NAME, class_name: str = "PlygroundAgentLoop",
) -> type:
    """Build the agent-loop class on ``base`` (verl's ``AgentLoopBase`` or a stand-in with its
    signatures) and register it with ``register`` (verl's ``register``) under ``name``."""
    cls = type(class_name, (PlygroundAgentLoopMixin, base), {
        "output_cls": output_cls, "__module__": __name__, "__qualname__": class_name,
        "__doc__": "Plays the plyground env named by each row's extra_info['env_id'] (plyground.bridges.verl).",
    })
    if register is not None:
        cls = register(name)(cls)
    return cls


def verl_rows(
    env_id: str, episodes: int, seed: int = 0, agent_name: str = AGENT_NAME, split: str = "train",
    **env_kwargs: Any,
) -> list[dict[str, Any]]:
    """Dataset rows (write them to Parquet for verl's ``data.train_files``) that run ``env_id``
    episodes ``seed .. seed + episodes - 1`` through the plyground agent loop."""
    instructions = make(env_id, **env_kwargs).instructions
    return [
        {
            "data_source": f"plyground/{env_id}",
            "agent_name": agent_name,
            "prompt": [{"role": "system", "content": instructions}],
            "ability": "agent",
            "reward_model": {"style": "rule", "ground_truth": ""},
            "extra_info": {"env_id": env_id, "seed": s, "env_kwargs": dict(env_kwargs), "split": split,
                           "index": s - seed},
        }
        for s in range(seed, seed + episodes)
    ]


try:  # register with verl when it is installed
    from verl.experimental.agent_loop.agent_loop import AgentLoopBase as _Base
    from verl.experimental.agent_loop.agent_loop import AgentLoopOutput as _Output
    from verl.experimental.agent_loop.agent_loop import register as _register
except Exception:  # verl absent (the usual case here) or an incompatible version
    PlygroundAgentLoop: type | None = None
else:  # pragma: no cover - needs verl
    PlygroundAgentLoop = make_agent_loop_class(_Base, _Output, _register)
