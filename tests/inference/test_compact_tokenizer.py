"""compact_tokenizer: the corpus tokenizes as before, other text still round-trips, chats render."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plyground.inference.models import compact_tokenizer, default_tokenizer, tiny_model

CORPUS = [
    "You are in a maze. Reply with one move: up, down, left or right. The goal is at (3, 3).",
    "Is it an animal? Yes. Is it a cat? No.",
    "\\boxed{7} Let me check 3 + 4 again.",
]
_FULL = default_tokenizer()
_SMALL = compact_tokenizer(_FULL, CORPUS)


@pytest.fixture(scope="module")
def pair() -> tuple[object, object]:
    return _FULL, _SMALL


def _tokens(tok: object, text: str) -> list[str]:
    return tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"])  # type: ignore[attr-defined]


def test_corpus_tokens_unchanged_and_vocab_small(pair: tuple[object, object]) -> None:
    full, small = pair
    assert len(small) < 600 < len(full)  # type: ignore[arg-type]
    for text in CORPUS:
        assert _tokens(small, text) == _tokens(full, text)


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=60))
def test_any_text_decodes_as_with_the_full_vocabulary(text: str) -> None:
    # Exactly the original's round trip: SmolLM2 itself has no token for 21 of the 256 bytes.
    ids = _SMALL(text, add_special_tokens=False)["input_ids"]
    assert max(ids, default=0) < len(_SMALL)
    assert _SMALL.decode(ids) == _FULL.decode(_FULL(text, add_special_tokens=False)["input_ids"])


def test_chat_template_and_special_tokens(pair: tuple[object, object], tmp_path: object) -> None:
    full, small = pair
    chat = [{"role": "user", "content": "move up"}, {"role": "assistant", "content": "up"}]
    assert small.apply_chat_template(chat, tokenize=False) == full.apply_chat_template(chat, tokenize=False)  # type: ignore[attr-defined]
    for name in ("eos_token", "bos_token", "pad_token"):
        assert getattr(small, name) == getattr(full, name)
    assert small.eos_token_id < len(small)  # type: ignore[attr-defined,operator]
    # It survives what trainers do with tokenizers: copies, save and reload.
    from transformers import AutoTokenizer

    copy.deepcopy(small).save_pretrained(str(tmp_path))
    again = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert _tokens(again, CORPUS[0]) == _tokens(small, CORPUS[0])


def test_tiny_model_takes_the_compact_vocabulary(pair: tuple[object, object]) -> None:
    _, small = pair
    model, tok = tiny_model(tokenizer=small)
    assert tok is small and model.config.vocab_size == len(small)  # type: ignore[arg-type]
    assert model.config.eos_token_id == small.eos_token_id  # type: ignore[attr-defined]


def test_rejects_non_bpe() -> None:
    class Fake:
        class backend_tokenizer:
            @staticmethod
            def to_str() -> str:
                return '{"model": {"type": "WordLevel"}, "pre_tokenizer": {"type": "Whitespace"}, "added_tokens": []}'

    with pytest.raises(ValueError, match="byte-level BPE"):
        compact_tokenizer(Fake(), ["x"])
