"""Token-in, token-out bookkeeping for multi-turn episodes.

The model is trained on the exact tokens it saw and produced, never on a re-tokenisation of the
text: re-tokenising a sampled answer can give different ids (BPE is not injective), which would
silently make the log-probabilities used for the update disagree with the ones sampled.

``TokenLedger`` grows one id list turn by turn. Before each generation it renders the chat with
the tokenizer's chat template and appends only the new part (environment and template tokens,
loss mask 0); after it, the model's sampled ids (mask 1) and the template's closing tokens (mask 0).
Two checks keep it honest:

- at every turn, the template's rendering of the chat so far must extend the text already in the
  ledger; a template that rewrites history (drops earlier reasoning, trims whitespace, inserts a
  date) fails here, naming the turn;
- ``verify(chat)`` compares the ledger with the tokenizer's tokenisation of the whole rendered
  chat: every template/environment token must be exactly the tokenizer's, and every model span must
  decode to the text the chat holds. A mismatch names the turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from plyground.errors import TokenMismatchError
from plyground.types import Chat, Completion, TokenRecord


def render_text(tokenizer: Any, chat: Chat, add_generation_prompt: bool) -> str:
    """The chat template's text for ``chat``."""
    return str(
        tokenizer.apply_chat_template(
            [m.as_openai() for m in chat], tokenize=False, add_generation_prompt=add_generation_prompt
        )
    )


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return str(tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclass
class _Segment:
    start: int  # index into ids
    end: int
    model: bool
    turn: int


@dataclass
class TokenLedger:
    """Accumulates an episode's token ids, loss mask and sampling log-probabilities."""

    tokenizer: Any
    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str = ""
    _segments: list[_Segment] = field(default_factory=list)
    _eos_ids: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        eos = getattr(self.tokenizer, "eos_token_id", None)
        self._eos_ids = frozenset([eos] if isinstance(eos, int) else (eos or []))

    # -- building --------------------------------------------------------------------------
    def prompt(self, chat: Chat, turn: int) -> list[int]:
        """Append the template/environment tokens up to the generation prompt; return all ids."""
        self._extend_from_template(render_text(self.tokenizer, chat, add_generation_prompt=True), turn)
        return list(self.ids)

    def add_completion(self, completion: Completion, turn: int) -> str:
        """Append the model's sampled ids (mask 1). Returns the message text for the chat: the
        decoded ids without a final end-of-turn token, so that the template renders back to exactly
        what the model produced."""
        ids = list(completion.token_ids)
        if not ids:
            raise TokenMismatchError(
                f"turn {turn}: the backend returned no token ids; token tracking needs a backend "
                "that returns them (hf, or a server with return_token_ids)"
            )
        logprobs = list(completion.logprobs) if len(completion.logprobs) == len(ids) else [0.0] * len(ids)
        start = len(self.ids)
        self.ids.extend(ids)
        self.mask.extend([1] * len(ids))
        self.logprobs.extend(logprobs)
        self._segments.append(_Segment(start, len(self.ids), True, turn))
        body = ids[:-1] if ids[-1] in self._eos_ids else ids
        self.text += _decode(self.tokenizer, ids)
        return _decode(self.tokenizer, body)

    def close_turn(self, chat: Chat, turn: int) -> None:
        """Append the template's closing tokens after the model's message (mask 0)."""
        self._extend_from_template(render_text(self.tokenizer, chat, add_generation_prompt=False), turn)

    def _extend_from_template(self, rendered: str, turn: int) -> None:
        if not rendered.startswith(self.text):
            at = next((i for i, (a, b) in enumerate(zip(rendered, self.text, strict=False)) if a != b), None)
            at = min(len(rendered), len(self.text)) if at is None else at
            raise TokenMismatchError(
                f"turn {turn}: the chat template re-renders earlier turns differently, so the "
                f"accumulated tokens no longer match it (first difference at character {at}: "
                f"template has {rendered[at:at + 40]!r}, accumulated has {self.text[at:at + 40]!r})"
            )
        delta = rendered[len(self.text) :]
        if not delta:
            return
        ids = _encode(self.tokenizer, delta)
        start = len(self.ids)
        self.ids.extend(ids)
        self.mask.extend([0] * len(ids))
        self.logprobs.extend([0.0] * len(ids))
        self._segments.append(_Segment(start, len(self.ids), False, turn))
        self.text = rendered

    # -- checking --------------------------------------------------------------------------
    def verify(self, chat: Chat) -> None:
        """Check the ledger against the tokenizer's own tokenisation of the whole chat."""
        rendered = render_text(self.tokenizer, chat, add_generation_prompt=False)
        if rendered != self.text:
            self._extend_from_template(rendered, self._segments[-1].turn if self._segments else 0)
            if rendered != self.text:  # the ledger holds more than the chat renders to
                raise TokenMismatchError(
                    f"the ledger holds {len(self.text) - len(rendered)} characters the chat does not"
                )
        encoded = self.tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
        ref_ids: list[int] = list(encoded["input_ids"])
        offsets: list[tuple[int, int]] = [tuple(o) for o in encoded["offset_mapping"]]
        char = 0
        for seg in self._segments:
            seg_text = _decode(self.tokenizer, self.ids[seg.start : seg.end])
            seg_end = char + len(seg_text)
            if rendered[char:seg_end] != seg_text:
                raise TokenMismatchError(
                    f"turn {seg.turn}: {'model' if seg.model else 'template'} tokens decode to "
                    f"{seg_text[:60]!r} but the chat renders {rendered[char:seg_end][:60]!r} there"
                )
            if not seg.model:
                inside = [i for i, (a, b) in enumerate(offsets) if a >= char and b <= seg_end and b > a]
                expected = [ref_ids[i] for i in inside]
                got = self.ids[seg.start : seg.end]
                # A tokenizer token that straddles a model/template boundary is re-tokenisation
                # drift caused by the model's text, not a template error: compare the interior only.
                if expected != got and not _straddle_explains(expected, got):
                    raise TokenMismatchError(
                        f"turn {seg.turn}: template tokens {got[:12]} differ from the tokenizer's "
                        f"rendering of the chat {expected[:12]} (text {seg_text[:60]!r})"
                    )
            char = seg_end

    def record(self) -> TokenRecord:
        return TokenRecord(token_ids=list(self.ids), loss_mask=list(self.mask), logprobs=list(self.logprobs))


def _straddle_explains(expected: list[int], got: list[int]) -> bool:
    """True when ``expected`` is ``got`` less tokens at its ends that merged with a neighbour."""
    if not expected:
        return len(got) <= 2
    for lo in range(len(got)):
        if got[lo : lo + len(expected)] == expected:
            return lo <= 1 and len(got) - (lo + len(expected)) <= 1
    return False
