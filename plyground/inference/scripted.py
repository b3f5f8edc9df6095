"""A backend that answers with a Python policy instead of a model.

For expert/scripted policies (behaviour-cloning data, baselines), for measuring the harness's own
overhead, and for tests that need exact replies. Given a tokenizer it also behaves as a
``TokenBackend``: replies come back as token ids ending in the end-of-turn token, as a model's would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from plyground.types import Chat, Completion, FinishReason, Message, SamplingParams

Policy = Callable[[Chat], str]


class ScriptedBackend:
    """Answers each chat with ``policy(chat)``; log-probabilities are 0 (a deterministic policy).

    Use :func:`scripted_backend` to get the token-id variant when a tokenizer is at hand."""

    name = "scripted"

    def __init__(self, policy: Policy, tokenizer: Any = None, model_name: str = "scripted") -> None:
        self.policy = policy
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.calls = 0

    def _complete(self, chat: Chat, prompt_ids: list[int], params: SamplingParams) -> Completion:
        text = self.policy(chat)
        finish: FinishReason = "stop"
        if self.tokenizer is None:
            return Completion(text=text, finish_reason=finish)
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(ids) >= params.max_tokens:
            ids, finish = ids[: params.max_tokens], "length"
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
        else:
            ids.append(self.tokenizer.eos_token_id)
        return Completion(text, ids, [0.0] * len(ids), list(prompt_ids), finish)

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[list[Completion]]:
        self.calls += 1
        out = []
        for chat in chats:
            prompt_ids: list[int] = []
            if self.tokenizer is not None:
                prompt_ids = _render_ids(self.tokenizer, chat)
            out.append([self._complete(chat, prompt_ids, params) for _ in range(params.n)])
        return out

    async def agenerate(self, chats: Sequence[Chat], params: SamplingParams) -> list[list[Completion]]:
        await asyncio.sleep(0)
        return self.generate(chats, params)

    def close(self) -> None:
        pass


class ScriptedTokenBackend(ScriptedBackend):
    """``ScriptedBackend`` with the token-id interface (``TokenBackend``); needs a tokenizer.
    A token-id prompt is decoded and, for ChatML templates, split back into messages."""

    def __init__(self, policy: Policy, tokenizer: Any, model_name: str = "scripted") -> None:
        if tokenizer is None:
            raise ValueError("ScriptedTokenBackend needs a tokenizer")
        super().__init__(policy, tokenizer, model_name)

    def generate_ids(self, prompts: Sequence[list[int]], params: SamplingParams) -> list[list[Completion]]:
        self.calls += 1
        return [
            [self._complete(_parse_chatml(self.tokenizer.decode(p)), p, params) for _ in range(params.n)]
            for p in prompts
        ]

    async def agenerate_ids(self, prompts: Sequence[list[int]], params: SamplingParams) -> list[list[Completion]]:
        await asyncio.sleep(0)
        return self.generate_ids(prompts, params)


def scripted_backend(policy: Policy, tokenizer: Any = None) -> ScriptedBackend:
    """The scripted backend, with token ids when ``tokenizer`` is given."""
    return ScriptedTokenBackend(policy, tokenizer) if tokenizer is not None else ScriptedBackend(policy)


def _render_ids(tokenizer: Any, chat: Chat) -> list[int]:
    text = tokenizer.apply_chat_template([m.as_openai() for m in chat], tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _parse_chatml(text: str) -> Chat:
    """Recover the chat from a ChatML prompt (``<|im_start|>role\\ncontent<|im_end|>``) so the
    policy sees messages, not ids. Other templates give one user message with the whole text."""
    if "<|im_start|>" not in text:
        return [Message("user", text)]
    chat: Chat = []
    for block in text.split("<|im_start|>")[1:]:
        role, _, rest = block.partition("\n")
        content = rest.split("<|im_end|>")[0]
        if role in ("system", "user", "assistant", "tool") and (rest.count("<|im_end|>") or content):
            chat.append(Message(role, content))  # type: ignore[arg-type]
    if chat and chat[-1].role == "assistant" and not chat[-1].content:
        chat.pop()  # the open generation prompt
    return chat
