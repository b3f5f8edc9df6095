"""A deterministic fake TokenBackend (no torch) shared by the server and client tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

from plyground.types import Chat, Completion, SamplingParams

BOS, EOS = 256, 257


class CharTokenizer:
    """One token per byte-sized character, plus BOS and EOS: enough of a tokenizer for a fake."""

    bos_token_id, eos_token_id = BOS, EOS

    def __len__(self) -> int:
        return 258

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [ord(c) if ord(c) < 256 else ord("?") for c in text]
        return [BOS, *ids] if add_special_tokens else ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        specials = {BOS: "<s>", EOS: "</s>"}
        return "".join(("" if skip_special_tokens else specials[i]) if i in specials else chr(i) for i in ids)


class FakeBackend:
    """A deterministic TokenBackend: the reply depends only on the prompt, the sample index (when
    temperature > 0) and the seed; it honours max_tokens, stop and logprobs like a real one."""

    name = "fake"
    model_name = "fake-model"

    def __init__(self, delay_s: float = 0.0, fail_on: str | None = None) -> None:
        self.tokenizer = CharTokenizer()
        self.calls: list[tuple[int, SamplingParams]] = []
        self.delay_s = delay_s
        self.fail_on = fail_on
        self._lock = threading.Lock()

    def render(self, chat: Chat, add_generation_prompt: bool = True) -> list[int]:
        text = "".join(f"<{m.role}>{m.content}\n" for m in chat)
        return self.tokenizer.encode(text + ("<assistant>" if add_generation_prompt else ""))

    def _reply(self, prompt: list[int], sample: int, params: SamplingParams) -> Completion:
        text = f"reply {sum(prompt) % 997}"
        if params.temperature > 0:
            text += f" sample {sample} seed {params.seed}"
        text += " done."
        ids = [*self.tokenizer.encode(text, add_special_tokens=False), EOS]
        finish = "stop"
        for stop in params.stop:
            cut = text.find(stop)
            if cut >= 0:
                ids, text = ids[: cut + len(stop)], text[:cut]
        if len(ids) > params.max_tokens:
            ids, finish = ids[: params.max_tokens], "length"
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
        logprobs = [-0.1 * (1 + k % 5) for k in range(len(ids))] if params.logprobs else []
        return Completion(text, list(ids), logprobs, list(prompt), finish)  # type: ignore[arg-type]

    def generate_ids(self, prompts: Sequence[list[int]], params: SamplingParams) -> list[list[Completion]]:
        with self._lock:
            self.calls.append((len(prompts), params))
        if self.fail_on is not None and any(self.fail_on in self.tokenizer.decode(p) for p in prompts):
            raise RuntimeError("the fake backend was told to fail")
        time.sleep(self.delay_s)
        return [[self._reply(list(p), j, params) for j in range(params.n)] for p in prompts]

    async def agenerate_ids(
        self, prompts: Sequence[list[int]], params: SamplingParams
    ) -> list[list[Completion]]:
        return await asyncio.to_thread(self.generate_ids, prompts, params)

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[list[Completion]]:
        return self.generate_ids([self.render(c) for c in chats], params)

    async def agenerate(self, chats: Sequence[Chat], params: SamplingParams) -> list[list[Completion]]:
        return await asyncio.to_thread(self.generate, chats, params)

    def close(self) -> None:
        pass
