"""``hf``: sample from a local transformers causal LM, on CPU or one GPU.

The sampling loop is written out here (prefill, then one token at a time with a KV cache) rather than
delegated to ``model.generate``, so that the log-probabilities returned are exactly the ones the
trainers need: log-softmax of the model's raw logits at the sampled token (see
:meth:`HFBackend.generate_ids`).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from plyground.errors import BackendError
from plyground.inference.base import ThreadedAsyncMixin
from plyground.types import Chat, Completion, FinishReason, Message, SamplingParams


@dataclass
class _Row:
    """One sequence being sampled: prompt ``index``, sample ``sample`` of ``params.n``."""

    index: int
    sample: int
    prompt: list[int]
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish: FinishReason | None = None
    hit_eos: bool = False


_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}  # fmt: skip


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A torch dtype from a name as command lines give it (``bfloat16``, ``bf16``, ...); ``auto``
    and None mean the checkpoint's own."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    key = dtype.strip().lower().removeprefix("torch.")
    if key == "auto":
        return None
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)} or auto")
    return _DTYPES[key]


def _resolve_device(device: str | torch.device | None, model: Any, loaded_by_name: bool) -> torch.device:
    if device is None:
        if not loaded_by_name:
            # A model handed in (e.g. shared with a trainer) stays where its owner put it.
            return next(model.parameters()).device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(f"device {device!r} asked for but CUDA is not available; using the CPU", stacklevel=3)
        return torch.device("cpu")
    return resolved


def _message_dict(message: Message | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(message, Message):
        return message.as_openai()
    return {"role": message["role"], "content": message["content"]}


class HFBackend(ThreadedAsyncMixin):
    """A :class:`~plyground.inference.base.TokenBackend` over a local transformers model.

    ``model`` is a name for :func:`plyground.inference.models.load_model` (``"default"`` = the
    embedded SmolLM2-135M-Instruct, ``"tiny"``, a local folder) or a ``PreTrainedModel`` together
    with its ``tokenizer``. A model passed in is used as is, not copied, so a trainer that updates it
    in place needs no weight sync. Calls from several threads are serialised by a lock, because a
    model and its KV cache are not thread-safe.
    """

    name = "hf"

    def __init__(
        self,
        model: str | Any = "default",
        tokenizer: Any = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        max_batch_size: int = 16,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        dtype = parse_dtype(dtype)
        loaded_by_name = isinstance(model, str)
        if isinstance(model, str):
            from plyground.inference.models import load_model

            spec = model
            model, loaded_tokenizer = load_model(spec, dtype=dtype)
            tokenizer = tokenizer if tokenizer is not None else loaded_tokenizer
            self.model_name = str(getattr(model.config, "name_or_path", "") or spec)
        else:
            if tokenizer is None:
                raise ValueError("HFBackend(model=<PreTrainedModel>) needs its tokenizer too")
            if dtype is not None:
                model = model.to(dtype)
            self.model_name = str(getattr(model.config, "name_or_path", "") or type(model).__name__)
        self.device = _resolve_device(device, model, loaded_by_name)
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.eos_token_ids: set[int] = self._find_eos_ids()
        if not self.eos_token_ids:
            raise BackendError(
                f"model {self.model_name!r} has no EOS token in its tokenizer or generation config"
            )
        pad = tokenizer.pad_token_id
        # Pad ids are masked out, so any valid id works; EOS is the conventional choice.
        self.pad_token_id: int = int(pad) if pad is not None else min(self.eos_token_ids)
        self._lock = threading.RLock()
        # transformers renamed `past_key_values` to `cache` (5.x, old name deprecated); support both.
        forward_args = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward_args else "past_key_values"

    def _find_eos_ids(self) -> set[int]:
        ids: set[int] = set()
        generation_config = getattr(self.model, "generation_config", None)
        configured = getattr(generation_config, "eos_token_id", None)
        if isinstance(configured, int):
            ids.add(configured)
        elif configured is not None:
            ids.update(int(i) for i in configured)
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return ids

    # -- rendering ---------------------------------------------------------------------------------

    def render_text(
        self, chat: Sequence[Message | Mapping[str, Any]], add_generation_prompt: bool = True
    ) -> str:
        """The chat as the model sees it, through the tokenizer's chat template."""
        messages = [_message_dict(m) for m in chat]
        with self._lock:
            try:
                text = self.tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=add_generation_prompt
                )
            except ValueError as exc:  # no chat template on this tokenizer
                raise BackendError(f"cannot render a chat for {self.model_name!r}: {exc}") from exc
        return str(text)

    def render(
        self, chat: Sequence[Message | Mapping[str, Any]], add_generation_prompt: bool = True
    ) -> list[int]:
        """Token ids of :meth:`render_text` (special tokens come from the template, none are added)."""
        text = self.render_text(chat, add_generation_prompt=add_generation_prompt)
        with self._lock:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return [int(i) for i in ids]

    # -- generation --------------------------------------------------------------------------------

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions per chat, in order; chats are rendered with the chat template."""
        return self.generate_ids([self.render(chat) for chat in chats], params)

    async def agenerate_ids(
        self, prompts: Sequence[list[int]], params: SamplingParams
    ) -> list[list[Completion]]:
        """:meth:`generate_ids` in a worker thread."""
        return await asyncio.to_thread(self.generate_ids, prompts, params)

    def generate_ids(self, prompts: Sequence[list[int]], params: SamplingParams) -> list[list[Completion]]:
        """Sample ``params.n`` continuations of each token-id prompt; one inner list per prompt.

        - ``token_ids``: what the model produced, including the EOS token when it produced one.
        - ``logprobs[i]``: ``log_softmax(raw logits)[token_ids[i]]``, the log-probability under the
          model itself (temperature 1, no top-p), which is what policy-gradient ratios need; it is
          not the probability under the temperature/top-p-adjusted sampler. Empty when
          ``params.logprobs`` is false.
        - ``text``: decoded without special tokens (so without EOS), cut before the first of
          ``params.stop``. Sampling halts at the token that completes a stop string; that token is
          kept in ``token_ids`` and ``logprobs`` (the model did sample it), only ``text`` is cut.
        - ``finish_reason``: ``"stop"`` for EOS or a stop string, ``"length"`` at ``max_tokens``.

        ``temperature == 0`` is greedy. ``params.seed`` makes a call reproducible (same prompts and
        params give the same samples); without it the global torch RNG is used. Prompts are left
        padded and batched ``max_batch_size`` sequences at a time; padding does not change results.
        """
        prompts = [[int(t) for t in p] for p in prompts]
        for i, prompt in enumerate(prompts):
            if not prompt:
                raise BackendError(f"prompt {i} is empty: a causal LM needs at least one token")
        rows = [_Row(index=i, sample=s, prompt=p) for i, p in enumerate(prompts) for s in range(params.n)]
        # Similar lengths together means less padding; sorted() is stable, so the order is deterministic.
        ordered = sorted(rows, key=lambda r: len(r.prompt))
        with self._lock:
            generator: torch.Generator | None = None
            if params.seed is not None:
                generator = torch.Generator(device=self.device)
                generator.manual_seed(params.seed)
            was_training = self.model.training
            self.model.eval()
            try:
                for start in range(0, len(ordered), self.max_batch_size):
                    self._sample_batch(ordered[start : start + self.max_batch_size], params, generator)
            except (RuntimeError, IndexError) as exc:
                raise BackendError(f"{self.model_name}: generation failed: {exc}") from exc
            finally:
                self.model.train(was_training)
            results: list[list[Completion]] = [[] for _ in prompts]
            for row in rows:
                results[row.index].append(self._to_completion(row, params))
        return results

    @torch.no_grad()
    def _sample_batch(
        self, rows: list[_Row], params: SamplingParams, generator: torch.Generator | None
    ) -> None:
        from transformers import DynamicCache

        width = max(len(r.prompt) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, row in enumerate(rows):
            input_ids[b, width - len(row.prompt) :] = torch.tensor(row.prompt, dtype=torch.long)
            mask[b, width - len(row.prompt) :] = 1
        # Positions count real tokens only, so a left-padded prompt sees the same RoPE positions as alone.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        input_ids, mask, positions = (t.to(self.device) for t in (input_ids, mask, positions))
        try:
            cache = DynamicCache(config=self.model.config)
        except TypeError:  # transformers < 4.56
            cache = DynamicCache()
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_arg: cache},
        )
        logits = out.logits[:, -1, :].float()
        next_pos = positions[:, -1] + 1
        active = list(rows)
        while True:
            tokens, token_logprobs = self._choose(logits, params, generator)
            still: list[int] = []
            for b, (row, token, logprob) in enumerate(zip(active, tokens, token_logprobs, strict=True)):
                row.tokens.append(token)
                row.logprobs.append(logprob)
                if token in self.eos_token_ids:
                    row.finish, row.hit_eos = "stop", True
                elif params.stop and self._stop_index(row.tokens, params.stop) is not None:
                    row.finish = "stop"
                elif len(row.tokens) >= params.max_tokens:
                    row.finish = "length"
                else:
                    still.append(b)
            if not still:
                return
            next_tokens = torch.tensor([tokens[b] for b in still], dtype=torch.long, device=self.device)
            if len(still) < len(active):
                # Drop finished rows from the batch so they cost nothing in later steps.
                keep = torch.tensor(still, dtype=torch.long, device=self.device)
                cache.batch_select_indices(keep)
                mask, next_pos = mask[keep], next_pos[keep]
                active = [active[b] for b in still]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            out = self.model(
                input_ids=next_tokens[:, None],
                attention_mask=mask,
                position_ids=next_pos[:, None],
                use_cache=True,
                **{self._cache_arg: cache},
            )
            logits = out.logits[:, -1, :].float()
            next_pos = next_pos + 1

    @staticmethod
    def _choose(
        logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
    ) -> tuple[list[int], list[float]]:
        """Pick one token per row; return it with its log-probability under the raw logits."""
        logprobs = torch.log_softmax(logits, dim=-1)
        if params.temperature == 0:
            chosen = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits / params.temperature, dim=-1)
            if params.top_p < 1.0:
                sorted_probs, order = probs.sort(dim=-1, descending=True)
                # Keep the smallest prefix whose mass reaches top_p (the top token always survives).
                drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= params.top_p
                sorted_probs = sorted_probs.masked_fill(drop, 0.0)
                probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
            chosen = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        picked = logprobs.gather(-1, chosen[:, None]).squeeze(-1)
        return [int(t) for t in chosen.tolist()], [float(x) for x in picked.tolist()]

    def _decode(self, tokens: list[int]) -> str:
        return str(self.tokenizer.decode(tokens, skip_special_tokens=True))

    def _stop_index(self, tokens: list[int], stops: list[str]) -> int | None:
        """Where the earliest stop string starts in the decoded text, or None."""
        text = self._decode(tokens)
        found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
        return min(found) if found else None

    def _to_completion(self, row: _Row, params: SamplingParams) -> Completion:
        visible = row.tokens[:-1] if row.hit_eos else row.tokens
        text = self._decode(visible)
        if params.stop and not row.hit_eos:
            cut = self._stop_index(visible, params.stop)
            if cut is not None:
                text = text[:cut]
        return Completion(
            text=text,
            token_ids=list(row.tokens),
            logprobs=list(row.logprobs) if params.logprobs else [],
            prompt_token_ids=list(row.prompt),
            finish_reason=row.finish or "length",
        )

    def close(self) -> None:
        """Release cached GPU memory. The model itself is kept: it may be shared with a trainer."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def __repr__(self) -> str:
        return f"HFBackend(model={self.model_name!r}, device={str(self.device)!r})"
