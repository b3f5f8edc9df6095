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
from plyground.inference.base import ThreadedAsyncMixin, mix_seed
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
    seed: int | None = None  # this sequence's own random stream; None: the global RNG


def _exponential_race(probs: torch.Tensor, generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """One draw per row from ``probs`` (unnormalised, non-negative): ``argmax_k probs[k] / E[k]``
    with ``E`` i.i.d. Exp(1) from the row's own generator (None: the global RNG).

    The winner is token ``k`` with probability ``probs[k] / sum(probs)``. Unlike inverse-CDF
    sampling (``torch.multinomial``), which walks a running sum over the vocabulary, the choice
    turns on a ratio between the top two scores, so the rounding noise of a batched forward pass
    almost never changes it: that is what lets a seeded row sample the same alone and in a batch.
    """
    noise = torch.empty_like(probs)
    for b, generator in enumerate(generators):
        noise[b].uniform_(generator=generator)
    # -log(u) > 0 for u in [0, 1); u == 0 gives inf and a score of 0, never NaN.
    noise.log_().neg_()
    return (probs / noise).argmax(dim=-1)


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

    ``sync_every`` is how many tokens the decode loop samples, on the device, between two looks
    from the host at which rows have finished (default: 1 on a CPU, where looking costs nothing,
    8 on a GPU). Greedy and seeded results do not depend on it; a larger value trades a few wasted
    decode steps per batch for fewer host-device synchronisations.
    """

    name = "hf"

    def __init__(
        self,
        model: str | Any = "default",
        tokenizer: Any = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        max_batch_size: int = 16,
        sync_every: int | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if sync_every is not None and sync_every < 1:
            raise ValueError(f"sync_every must be >= 1, got {sync_every}")
        self.sync_every = sync_every
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

    def generate(
        self, chats: Sequence[Chat], params: SamplingParams, seeds: Sequence[int | None] | None = None
    ) -> list[list[Completion]]:
        """``params.n`` completions per chat, in order; chats are rendered with the chat template.
        ``seeds`` as in :meth:`generate_ids`."""
        return self.generate_ids([self.render(chat) for chat in chats], params, seeds=seeds)

    async def agenerate_ids(
        self, prompts: Sequence[list[int]], params: SamplingParams, seeds: Sequence[int | None] | None = None
    ) -> list[list[Completion]]:
        """:meth:`generate_ids` in a worker thread."""
        return await asyncio.to_thread(self.generate_ids, prompts, params, seeds)

    @staticmethod
    def prompt_seeds(seed: int | None, count: int) -> list[int | None]:
        """The per-prompt seeds that a call with ``params.seed = seed`` over ``count`` prompts uses.

        ``generate_ids(prompts, replace(params, seed=s))`` samples exactly as
        ``generate_ids(prompts, replace(params, seed=None), seeds=prompt_seeds(s, len(prompts)))``.
        A server that merges seeded requests into one call passes each request's share this way.
        Prompt ``i`` gets its own stream (mixed from ``seed`` and ``i``), so repeated prompts in one
        seeded call (a GRPO group) are still independent draws.
        """
        return [None if seed is None else mix_seed(seed, i) for i in range(count)]

    def generate_ids(
        self,
        prompts: Sequence[list[int]],
        params: SamplingParams,
        seeds: Sequence[int | None] | None = None,
    ) -> list[list[Completion]]:
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

        ``temperature == 0`` is greedy. Seeds: ``seeds[i]`` (one per prompt, None = unseeded) or,
        when ``seeds`` is not given, ``params.seed`` spread over the prompts by
        :meth:`prompt_seeds`; ``seeds`` wins over ``params.seed``. Every seeded sequence (prompt,
        sample ``j`` of ``n``) draws from its own random stream, made from its prompt seed and
        ``j`` only, so its sample does not depend on what else is in the call: batch size, the
        other prompts, their seeds or lengths (prompts are left padded), ``max_batch_size``.
        Unseeded sequences draw from the global torch RNG.

        What is guaranteed, exactly: the random numbers a seeded sequence consumes (one uniform per
        vocabulary entry per token, from a ``torch.Generator`` on this backend's device) and how a
        token is chosen from them (an exponential race, see :func:`_exponential_race`). Padding and
        batch size do not change the maths, but a batched forward pass may round differently from
        a single one (logprobs agree to about 1e-5); a token can then differ only where the two
        best race scores, or greedy the two best logits, are within that rounding of each other.
        ``tests/inference/test_seeded_batching.py`` checks on CPU float32 that the tiny model gives
        the same tokens alone and batched. Streams come from the device's generator, so a seed
        reproduces on the same device type, not across CPU and CUDA.
        """
        prompts = [[int(t) for t in p] for p in prompts]
        for i, prompt in enumerate(prompts):
            if not prompt:
                raise BackendError(f"prompt {i} is empty: a causal LM needs at least one token")
        if seeds is None:
            seeds = self.prompt_seeds(params.seed, len(prompts))
        elif len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        rows = [
            _Row(index=i, sample=s, prompt=p, seed=None if seed is None else mix_seed(int(seed), s))
            for i, (p, seed) in enumerate(zip(prompts, seeds, strict=True))
            for s in range(params.n)
        ]
        # Similar lengths together means less padding; sorted() is stable, so the order is deterministic.
        ordered = sorted(rows, key=lambda r: len(r.prompt))
        with self._lock:
            generators = self._generators(ordered, params)
            was_training = self.model.training
            self.model.eval()
            try:
                for start in range(0, len(ordered), self.max_batch_size):
                    stop = start + self.max_batch_size
                    self._sample_batch(ordered[start:stop], params, generators[start:stop])
            except (RuntimeError, IndexError) as exc:
                raise BackendError(f"{self.model_name}: generation failed: {exc}") from exc
            finally:
                self.model.train(was_training)
            results: list[list[Completion]] = [[] for _ in prompts]
            for row in rows:
                results[row.index].append(self._to_completion(row, params))
        return results

    def _generators(self, rows: list[_Row], params: SamplingParams) -> list[torch.Generator | None]:
        """Each seeded row's own generator, on this backend's device; None for the global RNG."""
        out: list[torch.Generator | None] = []
        for row in rows:
            generator = None
            if row.seed is not None and params.temperature > 0:
                generator = torch.Generator(device=self.device)
                generator.manual_seed(row.seed)
            out.append(generator)
        return out

    def _sync_interval(self) -> int:
        if self.sync_every is not None:
            return self.sync_every
        # On a GPU every look at the sampled tokens stalls the queue of kernels; on a CPU it is
        # free, and looking every token lets finished rows leave the batch at once.
        return 1 if self.device.type == "cpu" else 8

    @torch.no_grad()
    def _sample_batch(
        self, rows: list[_Row], params: SamplingParams, generators: list[torch.Generator | None]
    ) -> None:
        """Decode ``rows`` together, writing their tokens, logprobs and finish reasons.

        Sampled tokens stay on the device; the host copies the new ones every
        :meth:`_sync_interval` tokens to find which rows finished (EOS, a stop string) and drops
        those from the batch. Between looks a finished row keeps decoding; what it produces past
        its finish is thrown away, and a seeded row's random stream is its own, so greedy and
        seeded results are the same for any interval (unseeded rows share the global RNG, whose
        draws then depend on how long finished rows stayed).
        """
        from transformers import DynamicCache

        device = self.device
        count, max_tokens = len(rows), params.max_tokens
        width = max(len(r.prompt) for r in rows)
        input_ids = torch.full((count, width), self.pad_token_id, dtype=torch.long)
        # The attention mask for the whole decode, filled in advance: one slice per step, no concat.
        mask = torch.ones((count, width + max_tokens), dtype=torch.long)
        for b, row in enumerate(rows):
            input_ids[b, width - len(row.prompt) :] = torch.tensor(row.prompt, dtype=torch.long)
            mask[b, : width - len(row.prompt)] = 0
        # Positions count real tokens only, so a left-padded prompt sees the same RoPE positions as alone.
        positions = (mask[:, :width].cumsum(-1) - 1).clamp(min=0)
        input_ids, mask, positions = (t.to(device) for t in (input_ids, mask, positions))
        try:
            cache = DynamicCache(config=self.model.config)
        except TypeError:  # transformers < 4.56
            cache = DynamicCache()
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask[:, :width],
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_arg: cache},
        )
        logits = out.logits[:, -1, :].float()
        next_pos = positions[:, -1] + 1
        tokens = torch.empty((count, max_tokens), dtype=torch.long, device=device)
        logprobs = torch.empty((count, max_tokens), dtype=torch.float32, device=device)
        interval = self._sync_interval()
        active = list(range(count))  # batch position -> index into rows
        slots = torch.arange(count, device=device)  # the same, on the device, to index the buffers
        ends: dict[int, tuple[int, FinishReason, bool]] = {}  # row -> (length, reason, hit_eos)
        seen: list[list[int]] = [[] for _ in rows]  # host copies, kept only to look for stop strings
        checked = 0
        step = 0
        while True:
            chosen, picked = self._choose(logits, params, generators)
            tokens[slots, step] = chosen
            logprobs[slots, step] = picked
            step += 1
            if step == max_tokens or step - checked >= interval:
                new = tokens[slots, checked:step].tolist()  # the one host sync per interval
                still: list[int] = []
                for b, row_tokens in enumerate(new):
                    end = self._find_end(seen[active[b]], checked, row_tokens, params)
                    if end is not None:
                        ends[active[b]] = end
                    else:
                        still.append(b)
                checked = step
                if not still or step == max_tokens:
                    break
                if len(still) < len(active):
                    # Drop finished rows from the batch so they cost nothing in later steps.
                    keep = torch.tensor(still, dtype=torch.long, device=device)
                    cache.batch_select_indices(keep)
                    mask, next_pos, slots, chosen = mask[keep], next_pos[keep], slots[keep], chosen[keep]
                    generators = [generators[b] for b in still]
                    active = [active[b] for b in still]
            out = self.model(
                input_ids=chosen[:, None],
                attention_mask=mask[:, : width + step],
                position_ids=next_pos[:, None],
                use_cache=True,
                **{self._cache_arg: cache},
            )
            logits = out.logits[:, -1, :].float()
            next_pos = next_pos + 1
        all_tokens, all_logprobs = tokens[:, :step].tolist(), logprobs[:, :step].tolist()
        for r, row in enumerate(rows):
            length, reason, hit_eos = ends.get(r, (max_tokens, "length", False))
            row.tokens = all_tokens[r][:length]
            row.logprobs = all_logprobs[r][:length]
            row.finish, row.hit_eos = reason, hit_eos

    def _find_end(
        self, seen: list[int], offset: int, new: list[int], params: SamplingParams
    ) -> tuple[int, FinishReason, bool] | None:
        """Where a row finished among its tokens ``offset, offset + 1, ...`` (``new``), as (length,
        reason, hit EOS), or None. ``seen`` holds its tokens before ``offset`` and is extended."""
        if not params.stop:
            for k, token in enumerate(new):
                if token in self.eos_token_ids:
                    return offset + k + 1, "stop", True
            return None
        # Stop strings need the text, which needs every token so far.
        seen.extend(new)
        for k, token in enumerate(new):
            length = offset + k + 1
            if token in self.eos_token_ids:
                return length, "stop", True
            if self._stop_index(seen[:length], params.stop) is not None:
                return length, "stop", False
        return None

    @staticmethod
    def _choose(
        logits: torch.Tensor, params: SamplingParams, generators: Sequence[torch.Generator | None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pick one token per row (row ``b`` draws from ``generators[b]``); return the tokens and
        their log-probabilities under the raw logits, both left on the device."""
        logprobs = torch.log_softmax(logits, dim=-1)
        if params.temperature == 0:
            chosen = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits / params.temperature, dim=-1)
            if params.top_p < 1.0:
                sorted_probs, order = probs.sort(dim=-1, descending=True, stable=True)
                # Keep the smallest prefix whose mass reaches top_p (the top token always survives).
                drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= params.top_p
                sorted_probs = sorted_probs.masked_fill(drop, 0.0)
                probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
            chosen = _exponential_race(probs, generators)
        picked = logprobs.gather(-1, chosen[:, None]).squeeze(-1)
        return chosen, picked

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
