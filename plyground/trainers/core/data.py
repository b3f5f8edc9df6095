"""Turning chats and (prompt, response) pairs into token records with a loss mask."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from plyground.types import TokenRecord


def _render(tokenizer: Any, messages: Sequence[dict[str, str]], add_generation_prompt: bool) -> str:
    return str(
        tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)
    )


def _encode(tokenizer: Any, text: str) -> list[int]:
    return [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]] if text else []


def _response_mask(ids: list[int], eos_id: int | None) -> list[int]:
    """1 up to and including the first end-of-turn token, 0 after (the template's trailing newline
    is never sampled by the model)."""
    mask = []
    done = False
    for token in ids:
        mask.append(0 if done else 1)
        if token == eos_id:
            done = True
    return mask


def messages_to_record(tokenizer: Any, messages: Sequence[dict[str, str]]) -> TokenRecord:
    """A chat as one token record: assistant replies (with their end-of-turn token) are mask 1,
    everything else mask 0. Rendered turn by turn, so each span is exactly what the template gives;
    a template that rewrites earlier turns is refused."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    mask: list[int] = []
    text = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or i == 0:
            continue
        prompt = _render(tokenizer, messages[:i], add_generation_prompt=True)
        full = _render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not prompt.startswith(text) or not full.startswith(prompt):
            raise ValueError(f"message {i}: the chat template re-renders earlier turns; cannot build a loss mask")
        head = _encode(tokenizer, prompt[len(text) :])
        reply = _encode(tokenizer, full[len(prompt) :])
        ids += head + reply
        mask += [0] * len(head) + _response_mask(reply, eos)
        text = full
    tail = _encode(tokenizer, _render(tokenizer, messages, add_generation_prompt=False)[len(text) :])
    ids += tail
    mask += [0] * len(tail)
    return TokenRecord(token_ids=ids, loss_mask=mask, logprobs=[0.0] * len(ids))


def prompt_response_record(tokenizer: Any, prompt: Sequence[dict[str, str]], response: str) -> TokenRecord:
    """The prompt chat (mask 0) followed by ``response`` as the assistant's reply (mask 1)."""
    return messages_to_record(tokenizer, [*prompt, {"role": "assistant", "content": response}])
