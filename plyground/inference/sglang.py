"""``SGLangBackend``: launch ``python -m sglang.launch_server`` replicas, route, push weights.

Chats go to SGLang's OpenAI-compatible ``/v1/chat/completions`` (text and per-token logprobs).
Token-id prompts (``generate_ids``) go to the native ``POST /generate`` with ``input_ids``,
``sampling_params`` and ``return_logprob: true``; the sampled ids are read from ``output_ids``
where the server returns them, else from ``meta_info.output_token_logprobs`` (a list of
``[logprob, token_id, text]``), and the finish reason from ``meta_info.finish_reason.type``.

Weight sync: the checkpoint is saved (``save_pretrained`` / state dict / folder path) and every
replica loads it with ``POST /update_weights_from_disk {"model_path": path}``, which answers
``{"success": bool, "message": str}``.

These request and response fields follow SGLang's native API documentation; they are exercised
here only against a fake server in the tests (no GPU, no SGLang install on these machines).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import httpx

from plyground.errors import BackendError
from plyground.inference.router import Replica
from plyground.inference.vllm import ServerBackend
from plyground.types import Completion, FinishReason, SamplingParams

__all__ = ["SGLangBackend", "parse_generate_response", "sglang_command"]


def sglang_command(
    model_path: str,
    port: int | str = "{port}",
    host: str = "127.0.0.1",
    served_model_name: str | None = None,
    mem_fraction_static: float | None = None,
    context_length: int | None = None,
    dtype: str | None = None,
    tp_size: int | None = None,
    random_seed: int | None = None,
    extra_args: Sequence[str] = (),
    python: str | None = None,
) -> list[str]:
    """The ``python -m sglang.launch_server`` command line for one replica."""
    cmd = [python or sys.executable, "-m", "sglang.launch_server", "--model-path", model_path,
           "--host", host, "--port", str(port)]  # fmt: skip
    if served_model_name:
        cmd += ["--served-model-name", served_model_name]
    if mem_fraction_static is not None:
        if not 0 < mem_fraction_static <= 1:
            raise ValueError(f"mem_fraction_static must be in (0, 1], got {mem_fraction_static}")
        cmd += ["--mem-fraction-static", f"{mem_fraction_static:g}"]
    if context_length is not None:
        cmd += ["--context-length", str(context_length)]
    if dtype:
        cmd += ["--dtype", dtype]
    if tp_size is not None:
        cmd += ["--tp-size", str(tp_size)]
    if random_seed is not None:
        cmd += ["--random-seed", str(random_seed)]
    return [*cmd, *extra_args]


def _finish(meta: dict[str, Any]) -> FinishReason:
    reason = meta.get("finish_reason")
    kind = reason.get("type") if isinstance(reason, dict) else reason
    if kind == "length":
        return "length"
    if kind in ("abort", "error"):
        return "error"
    return "stop"


def parse_generate_response(item: dict[str, Any], prompt_ids: list[int]) -> Completion:
    """One ``/generate`` result -> :class:`Completion`."""
    meta = item.get("meta_info") or {}
    triples = meta.get("output_token_logprobs") or []
    logprobs = [float(t[0]) for t in triples if t and t[0] is not None]
    ids = item.get("output_ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        ids = [int(t[1]) for t in triples if t and len(t) > 1]
    return Completion(
        text=str(item.get("text") or ""),
        token_ids=list(ids),
        logprobs=logprobs,
        prompt_token_ids=list(prompt_ids),
        finish_reason=_finish(meta),
    )


class SGLangBackend(ServerBackend):
    """SGLang server replicas as one backend (see the module docstring)."""

    name = "sglang"

    def __init__(
        self,
        model: str,
        *,
        mem_fraction_static: float | None = None,
        context_length: int | None = None,
        dtype: str | None = None,
        tp_size: int | None = None,
        extra_args: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        self.mem_fraction_static = mem_fraction_static
        self.context_length = context_length
        self.dtype = dtype
        self.tp_size = tp_size
        self.extra_args = list(extra_args)
        super().__init__(model, **kwargs)

    def server_command(self, port: int) -> list[str]:
        return sglang_command(
            self.model,
            port=port,
            host=self.host,
            served_model_name=self.model_name,
            mem_fraction_static=self.mem_fraction_static,
            context_length=self.context_length,
            dtype=self.dtype,
            tp_size=self.tp_size,
            extra_args=self.extra_args,
        )

    # -- token-id prompts through the native API ---------------------------------------------------
    async def _one_ids(self, prompt: list[int], params: SamplingParams) -> list[Completion]:
        sampling: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            sampling["stop"] = list(params.stop)
        sampling_params: dict[str, Any] | list[dict[str, Any]] = sampling
        if params.seed is not None:
            sampling["sampling_seed"] = params.seed
            if params.n > 1:
                # Copies under one seed would be one draw n times: copy i gets seed + i, the rule
                # OpenAIBackend's top-up requests follow.
                sampling_params = [{**sampling, "sampling_seed": (params.seed + i) % 2**63} for i in range(params.n)]

        async def call(replica: Replica) -> list[Completion]:
            # n samples as a batch of n copies of the prompt (each gets its own draw).
            body = {
                "input_ids": [list(prompt)] * params.n if params.n > 1 else list(prompt),
                "sampling_params": sampling_params,
                "return_logprob": bool(params.logprobs),
            }
            async with httpx.AsyncClient(timeout=self.request_timeout_s) as client:
                response = await client.post(f"{replica.server.root_url}/generate", json=body)
            if response.status_code != 200:
                raise BackendError(f"sglang /generate -> HTTP {response.status_code}: {response.text[:300]}")
            data = response.json()
            items = data if isinstance(data, list) else [data]
            return [parse_generate_response(item, prompt) for item in items]

        router = self._require_router()
        return await router.call(
            call,
            lookup=router.sticky.lookup_keys(prompt),
            register=lambda out: [router.sticky.continuation_key(prompt, c) for c in out],
        )


    # -- weights -----------------------------------------------------------------------------------
    def _push_to_replica(self, replica: Replica, sync: dict[str, Any]) -> None:
        answer = self._post(replica, "/update_weights_from_disk", {"model_path": sync["path"]})
        if isinstance(answer, dict) and answer.get("success") is False:
            raise BackendError(f"sglang replica {replica.index} refused the weights: {answer.get('message')}")
