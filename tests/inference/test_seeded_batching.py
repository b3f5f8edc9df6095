"""Per-prompt seeds in one batch, the device-side decode loop, and the server batching seeded requests.

What is checked exactly (tokens, texts, finish reasons) and what only to float noise (logprobs): a
batched forward pass may round differently from a single one, see ``HFBackend.generate_ids``.
On CPU float32 the tiny model gives the same tokens for a seeded prompt alone and batched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import httpx
import pytest
import torch
from fake_backend import FakeBackend
from test_hf import CHAT, OTHER, assert_same

from plyground.inference.hf import HFBackend, _exponential_race
from plyground.inference.server import create_app
from plyground.types import Completion, Message, SamplingParams

SHORT = [Message("user", "Hi")]
SAMPLED = SamplingParams(max_tokens=12, temperature=1.0, top_p=0.9, n=2)


def tokens(results: list[list[Completion]]) -> list[list[list[int]]]:
    return [[c.token_ids for c in r] for r in results]


# -- the sampler ----------------------------------------------------------------------------------


def test_exponential_race_samples_the_distribution() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.0, 0.2]]).repeat(4000, 1)
    generators = [torch.Generator().manual_seed(i) for i in range(4000)]
    drawn = _exponential_race(probs, generators)
    counts = torch.bincount(drawn, minlength=4).double() / len(drawn)
    assert counts[2] == 0  # a zero-probability token is never drawn
    # 4000 draws: the standard error of each frequency is under 0.008.
    assert torch.allclose(counts, probs[0].double(), atol=0.03)
    # Unnormalised weights (what top-p leaves) are drawn in proportion.
    half = _exponential_race(probs * 0.5, generators)
    assert torch.bincount(half, minlength=4)[2] == 0


def test_a_row_draw_depends_only_on_its_generator() -> None:
    probs = torch.softmax(torch.randn(3, 50, generator=torch.Generator().manual_seed(0)), dim=-1)
    alone = _exponential_race(probs[1:2], [torch.Generator().manual_seed(7)])
    batched = _exponential_race(
        probs, [torch.Generator().manual_seed(1), torch.Generator().manual_seed(7), None]
    )
    assert batched[1] == alone[0]


# -- HFBackend --------------------------------------------------------------------------------------


def test_seeded_prompt_is_the_same_alone_and_batched(tiny_backend: HFBackend) -> None:
    chat, other, short = (tiny_backend.render(c) for c in (CHAT, OTHER, SHORT))
    assert len(other) != len(chat) != len(short)  # different lengths, so left padding differs
    for params in (SAMPLED, replace(SAMPLED, temperature=1.3, top_p=1.0), replace(SAMPLED, temperature=0.0)):
        alone = tiny_backend.generate_ids([chat], params, seeds=[11])[0]
        # Batched with an unseeded prompt, a prompt with another seed, and a longer and a shorter one.
        batched = tiny_backend.generate_ids([other, chat, short], params, seeds=[None, 11, 5])
        assert_same([alone], [batched[1]])
        # ... and whatever the chunking into batches.
        one_by_one = HFBackend(tiny_backend.model, tiny_backend.tokenizer, max_batch_size=1)
        assert_same([alone], [one_by_one.generate_ids([short, chat], params, seeds=[3, 11])[1]])
        short_alone = tiny_backend.generate_ids([short], params, seeds=[5])[0]
        assert_same([short_alone], [batched[2]])


def test_call_seed_is_spread_over_prompts(tiny_backend: HFBackend) -> None:
    prompts = [tiny_backend.render(CHAT), tiny_backend.render(OTHER)]
    by_params = tiny_backend.generate_ids(prompts, replace(SAMPLED, seed=4))
    by_seeds = tiny_backend.generate_ids(prompts, SAMPLED, seeds=HFBackend.prompt_seeds(4, 2))
    assert_same(by_params, by_seeds)
    # Explicit seeds win over params.seed.
    assert_same(
        by_seeds,
        tiny_backend.generate_ids(prompts, replace(SAMPLED, seed=99), seeds=HFBackend.prompt_seeds(4, 2)),
    )
    assert HFBackend.prompt_seeds(None, 3) == [None, None, None]
    with pytest.raises(ValueError, match="2 seeds for 1 prompts"):
        tiny_backend.generate_ids(prompts[:1], SAMPLED, seeds=[1, 2])


def test_repeated_prompts_in_a_seeded_call_are_independent(tiny_backend: HFBackend) -> None:
    # A GRPO group puts the same first prompt in one call several times under one seed.
    prompt = tiny_backend.render(CHAT)
    params = SamplingParams(max_tokens=12, temperature=1.0, seed=0)
    group = [r[0].token_ids for r in tiny_backend.generate_ids([prompt] * 4, params)]
    assert len({tuple(t) for t in group}) > 1
    again = [r[0].token_ids for r in tiny_backend.generate_ids([prompt] * 4, params)]
    assert group == again


def test_unseeded_rows_use_the_global_rng(tiny_backend: HFBackend) -> None:
    prompt = tiny_backend.render(CHAT)
    params = SamplingParams(max_tokens=12, temperature=1.0)
    torch.manual_seed(0)
    first = tiny_backend.generate_ids([prompt, prompt], params)
    torch.manual_seed(0)
    assert tokens(first) == tokens(tiny_backend.generate_ids([prompt, prompt], params))
    assert first[0][0].token_ids != first[1][0].token_ids


@pytest.mark.parametrize("sync_every", [2, 5, 64])
def test_results_do_not_depend_on_how_often_the_host_looks(tiny_backend: HFBackend, sync_every: int) -> None:
    every_token = HFBackend(tiny_backend.model, tiny_backend.tokenizer, sync_every=1)
    lazy = HFBackend(tiny_backend.model, tiny_backend.tokenizer, sync_every=sync_every)
    greedy = every_token.generate([CHAT], SamplingParams(max_tokens=12, temperature=0.0))[0][0]
    # Two EOS ids and a stop string taken from the greedy text, so rows finish at different steps
    # and for each reason.
    for backend in (every_token, lazy):
        backend.eos_token_ids = {greedy.token_ids[3], greedy.token_ids[7]}
    stop = greedy.text[len(tiny_backend.tokenizer.decode(greedy.token_ids[:5])) :][:2]
    chats = [CHAT, OTHER, SHORT]
    for params in (
        SamplingParams(max_tokens=16, temperature=0.0),
        SamplingParams(max_tokens=16, temperature=0.0, stop=[stop] if stop.strip() else []),
        SamplingParams(max_tokens=16, temperature=1.0, n=3, seed=1),
        SamplingParams(max_tokens=16, temperature=0.8, top_p=0.9, n=2, seed=2, stop=["e"]),
    ):
        expected = every_token.generate(chats, params)
        assert_same(expected, lazy.generate(chats, params))
        reasons = {c.finish_reason for r in expected for c in r}
        assert reasons <= {"stop", "length"}
    finished = lazy.generate([CHAT], SamplingParams(max_tokens=16, temperature=0.0))[0][0]
    first = min(k for k, t in enumerate(greedy.token_ids) if t in lazy.eos_token_ids)
    assert finished.finish_reason == "stop" and finished.token_ids == greedy.token_ids[: first + 1]


def _reference_greedy(backend: HFBackend, prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
    """transformers' own greedy ``generate`` over the same left-padded batch, cut after EOS."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[backend.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = backend.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_tokens,
            do_sample=False,
            eos_token_id=sorted(backend.eos_token_ids),
            pad_token_id=backend.pad_token_id,
        )
    result = []
    for row in out[:, width:].tolist():
        ends = [k for k, t in enumerate(row) if t in backend.eos_token_ids]
        result.append(row[: ends[0] + 1] if ends else row)
    return result


def test_greedy_matches_transformers_generate(tiny_backend: HFBackend) -> None:
    prompts = [tiny_backend.render(c) for c in (CHAT, OTHER, SHORT)]
    greedy = tiny_backend.generate([CHAT], SamplingParams(max_tokens=8, temperature=0.0))[0][0]
    # An EOS the tiny model really produces, so generate's own stopping is compared too.
    backend = HFBackend(tiny_backend.model, tiny_backend.tokenizer, sync_every=4)
    backend.eos_token_ids = {greedy.token_ids[5]}
    ours = backend.generate_ids(prompts, SamplingParams(max_tokens=20, temperature=0.0))
    assert [r[0].token_ids for r in ours] == _reference_greedy(backend, prompts, 20)
    assert ours[0][0].finish_reason == "stop"
    singles = [_reference_greedy(backend, [p], 20)[0] for p in prompts]
    assert [r[0].token_ids for r in ours] == singles


# -- the server ------------------------------------------------------------------------------------


class SeededFake(FakeBackend):
    """The fake, taking one seed per prompt like ``HFBackend`` does."""

    @staticmethod
    def prompt_seeds(seed: int | None, count: int) -> list[int | None]:
        return HFBackend.prompt_seeds(seed, count)

    def generate_ids(  # type: ignore[override]
        self, prompts: Sequence[list[int]], params: SamplingParams, seeds: Sequence[int | None] | None = None
    ) -> list[list[Completion]]:
        seeds = list(seeds) if seeds is not None else self.prompt_seeds(params.seed, len(prompts))
        with self._lock:
            self.calls.append((len(prompts), params))
        return [
            [self._reply(list(p), j, replace(params, seed=s)) for j in range(params.n)]
            for p, s in zip(prompts, seeds, strict=True)
        ]


async def _post_all(app: Any, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return list(await asyncio.gather(*(c.post("/v1/completions", json=b) for b in bodies)))


def test_server_batches_seeded_requests_with_the_others() -> None:
    fake = SeededFake()
    app = create_app(fake, model_name="m", max_batch_size=32, batch_window_ms=50)
    bodies: list[dict[str, Any]] = [{"prompt": f"p{i}", "seed": i, "max_tokens": 64} for i in range(6)]
    bodies += [{"prompt": ["a", "b"], "seed": 9, "max_tokens": 64}, {"prompt": "u", "max_tokens": 64}]
    responses = asyncio.run(_post_all(app, bodies))
    assert all(r.status_code == 200 for r in responses)
    # Nine prompts, six seeds and an unseeded one, equal otherwise: one backend call (two at most,
    # should the window close early on a loaded machine), not one per seeded request.
    assert sum(size for size, _ in fake.calls) == 9 and len(fake.calls) <= 2
    for body, response in zip(bodies, responses, strict=True):
        raw = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        ids = [fake.tokenizer.encode(p) for p in raw]
        params = SamplingParams(max_tokens=64, seed=body.get("seed"))
        alone = SeededFake().generate_ids(ids, params)
        assert [c["text"] for c in response.json()["choices"]] == [r[0].text for r in alone]


def test_server_keeps_seeded_requests_alone_without_per_prompt_seeds() -> None:
    fake = FakeBackend()
    app = create_app(fake, model_name="m", batch_window_ms=50)
    asyncio.run(_post_all(app, [{"prompt": f"p{i}", "seed": i} for i in range(3)]))
    assert sorted(size for size, _ in fake.calls) == [1, 1, 1]


class CountingHF(HFBackend):
    """The tiny backend, counting its calls."""

    calls: list[int]

    def generate_ids(
        self,
        prompts: Sequence[list[int]],
        params: SamplingParams,
        seeds: Sequence[int | None] | None = None,
    ) -> list[list[Completion]]:
        self.calls.append(len(prompts))
        return super().generate_ids(prompts, params, seeds)


def test_server_seeded_requests_on_the_tiny_model(tiny_backend: HFBackend) -> None:
    backend = CountingHF(tiny_backend.model, tiny_backend.tokenizer)
    backend.calls = []
    app = create_app(backend, model_name="tiny", batch_window_ms=100)
    tok = tiny_backend.tokenizer
    texts = ["The sky is", "Once upon a time there was a", "1 2 3", "Hello"]
    bodies = [
        {"prompt": tok.encode(t), "max_tokens": 10, "seed": 40 + i, "n": 2} for i, t in enumerate(texts)
    ]
    bodies.append({"prompt": tok.encode("unseeded"), "max_tokens": 10})
    responses = asyncio.run(_post_all(app, bodies))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert sum(backend.calls) == 5 and len(backend.calls) <= 2
    for body, response in zip(bodies[:4], responses, strict=False):
        params = SamplingParams(max_tokens=10, n=2, seed=body["seed"])
        alone = tiny_backend.generate_ids([body["prompt"]], params)[0]
        assert [c["token_ids"] for c in response.json()["choices"]] == [c.token_ids for c in alone]
