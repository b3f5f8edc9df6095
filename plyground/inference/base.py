"""The ``Backend`` protocol every inference backend implements, and the backend registry.

A backend turns chats into completions: ``generate(chats, params) -> list[list[Completion]]``,
one inner list of ``params.n`` completions per chat, in order. ``agenerate`` is the same, awaitable;
the rollout collector uses it to keep many episodes in flight against one backend.

Backends that own a tokenizer (``hf``) also accept token-id prompts through ``generate_ids`` so the
rollout can feed the model exactly the tokens it accumulated (token-in, token-out).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from plyground.errors import UnknownNameError
from plyground.types import Chat, Completion, SamplingParams


def mix_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed for the stream that ``parts`` name under ``seed`` (a prompt's index, or a
    request's env seed, episode, sample and turn): distinct inputs give unrelated streams."""
    digest = hashlib.blake2b("/".join(map(str, (seed, *parts))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@runtime_checkable
class Backend(Protocol):
    """Anything that samples completions for chats."""

    name: str

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[list[Completion]]:
        ...

    async def agenerate(self, chats: Sequence[Chat], params: SamplingParams) -> list[list[Completion]]:
        ...

    def close(self) -> None:
        ...


@runtime_checkable
class TokenBackend(Backend, Protocol):
    """A backend with a local tokenizer that can also sample from token-id prompts."""

    tokenizer: Any

    def generate_ids(self, prompts: Sequence[list[int]], params: SamplingParams) -> list[list[Completion]]:
        ...

    async def agenerate_ids(
        self, prompts: Sequence[list[int]], params: SamplingParams
    ) -> list[list[Completion]]:
        ...


class ThreadedAsyncMixin:
    """``agenerate`` for a blocking backend: runs ``generate`` in a worker thread."""

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[list[Completion]]:
        raise NotImplementedError  # provided by the backend class this is mixed into

    async def agenerate(self, chats: Sequence[Chat], params: SamplingParams) -> list[list[Completion]]:
        return await asyncio.to_thread(self.generate, chats, params)


BackendFactory = Callable[..., Backend]
_BACKENDS: dict[str, str | BackendFactory] = {
    "hf": "plyground.inference.hf:HFBackend",
    "openai": "plyground.inference.openai_compat:OpenAIBackend",
    "vllm": "plyground.inference.vllm:VLLMBackend",
    "sglang": "plyground.inference.sglang:SGLangBackend",
    "plyground-server": "plyground.inference.server:PlygroundServerBackend",
}


def register_backend(name: str, factory: str | BackendFactory) -> None:
    """Register a backend under ``name``; ``factory`` is ``"module:attr"`` or a callable."""
    _BACKENDS[name] = factory


def list_backends() -> list[str]:
    return sorted(_BACKENDS)


def backend_factory(name: str) -> BackendFactory:
    """The class or function registered as ``name`` (its module imported, nothing built): to
    check arguments against its signature before building."""
    if name not in _BACKENDS:
        raise UnknownNameError("backend", name, _BACKENDS)
    factory = _BACKENDS[name]
    if isinstance(factory, str):
        import importlib

        module_name, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
    assert callable(factory)
    return factory


def make_backend(name: str, **kwargs: Any) -> Backend:
    """Build a registered backend, e.g. ``make_backend("hf", model="tiny")``."""
    return backend_factory(name)(**kwargs)
