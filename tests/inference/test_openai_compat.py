"""OpenAIBackend against real HTTP servers on 127.0.0.1: our server over a fake backend (no torch),
small scripted apps for retries, timeouts and concurrency, and the tiny model in a subprocess."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import pytest
from fake_backend import BOS, FakeBackend
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from live_servers import serve_in_thread, server_backend_over

from plyground.errors import BackendError
from plyground.inference.base import Backend, make_backend
from plyground.inference.openai_compat import OpenAIBackend, _finish_reason, default_render
from plyground.inference.router import free_port
from plyground.inference.server import create_app, start_server
from plyground.types import Completion, Message, SamplingParams


def _chat_body(text: str = "ok", n: int = 1) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            for i in range(n)
        ],
    }


class Scripted:
    """An app whose /v1/chat/completions answers with the next status in ``statuses`` (the last
    one repeats), records request bodies, and tracks how many requests are in flight."""

    def __init__(
        self, statuses: Sequence[int] = (200,), delay_s: float = 0.0, choices: int | None = None
    ) -> None:
        self.statuses = list(statuses)
        self.delay_s = delay_s
        self.choices = choices
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = self.max_in_flight = 0
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self.handle)
        self.app.get("/v1/models")(lambda: {"object": "list", "data": []})

    async def handle(self, request: Request) -> JSONResponse:
        body = await request.json()
        status = self.statuses[min(len(self.bodies), len(self.statuses) - 1)]
        self.bodies.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        if status != 200:
            return JSONResponse(
                {"error": {"message": f"scripted {status}", "type": "x", "code": None}}, status
            )
        n = self.choices if self.choices is not None else body.get("n", 1)
        return JSONResponse(_chat_body(f"seed={body.get('seed')}", n))


CHATS = [
    [Message("user", "What is 2 + 2?")],
    [Message("system", "Be terse."), Message("user", "Say hi.")],
]


@pytest.fixture(scope="module")
def fake() -> FakeBackend:
    return FakeBackend()


@pytest.fixture(scope="module")
def fake_url(fake: FakeBackend) -> Iterator[str]:
    with serve_in_thread(create_app(fake, model_name="m")) as url:
        yield url


def _same(a: Completion, b: Completion) -> None:
    assert a.text == b.text
    assert a.token_ids == b.token_ids
    assert a.prompt_token_ids == b.prompt_token_ids
    assert a.finish_reason == b.finish_reason
    assert a.logprobs == pytest.approx(b.logprobs)


def test_is_a_registered_backend() -> None:
    backend = make_backend("openai", model="m", base_url="http://127.0.0.1:9/v1")
    assert isinstance(backend, OpenAIBackend) and isinstance(backend, Backend)
    assert backend.name == "openai"


def test_chat_mode_matches_the_backend(fake: FakeBackend, fake_url: str) -> None:
    params = SamplingParams(max_tokens=64, temperature=0)
    with OpenAIBackend("m", base_url=fake_url) as backend:
        got = backend.generate(CHATS, params)
    want = fake.generate(CHATS, params)
    assert [len(g) for g in got] == [1, 1]
    for g, w in zip(got, want, strict=True):
        _same(g[0], w[0])
    assert got[0][0].logprobs  # logprobs=True is the default


def test_completions_mode(fake: FakeBackend, fake_url: str) -> None:
    params = SamplingParams(max_tokens=5, temperature=0)
    with OpenAIBackend("m", base_url=fake_url, mode="completions", render=fake.render) as backend:
        got = backend.generate(CHATS, params)
        ids = backend.generate_ids([[BOS, 70, 71]], params)
    for g, w in zip(got, fake.generate(CHATS, params), strict=True):
        _same(g[0], w[0])
        assert g[0].finish_reason == "length" and len(g[0].token_ids) == 5
    _same(ids[0][0], fake.generate_ids([[BOS, 70, 71]], params)[0][0])

    # Without a render, a one-message chat goes as raw text (the server adds BOS).
    with OpenAIBackend("m", base_url=fake_url, mode="completions") as backend:
        [[c]] = backend.generate([CHATS[0]], params)
    assert c.prompt_token_ids == fake.tokenizer.encode("What is 2 + 2?")


def test_default_render() -> None:
    assert default_render([Message("user", "raw text")]) == "raw text"
    assert default_render(CHATS[1]) == "System: Be terse.\n\nUser: Say hi.\n\nAssistant:"


def test_n_seed_and_no_logprobs(fake_url: str) -> None:
    params = SamplingParams(max_tokens=64, temperature=1.0, n=3, seed=5, logprobs=False)
    with OpenAIBackend("m", base_url=fake_url) as backend:
        for mode in ("chat", "completions"):
            backend.mode = mode  # type: ignore[assignment]
            got = backend.generate(CHATS, params)
            assert [len(g) for g in got] == [3, 3]
            assert len({c.text for c in got[0]}) == 3
            assert all(c.logprobs == [] and c.token_ids for g in got for c in g)


def test_generate_inside_a_running_loop_and_across_loops(fake: FakeBackend, fake_url: str) -> None:
    params = SamplingParams(max_tokens=64, temperature=0)
    want = fake.generate(CHATS, params)
    backend = OpenAIBackend("m", base_url=fake_url)

    async def sync_call_in_loop() -> list[list[Completion]]:
        return backend.generate(CHATS, params)

    async def async_call() -> list[list[Completion]]:
        return await backend.agenerate(CHATS, params)

    try:
        for got in (asyncio.run(sync_call_in_loop()), asyncio.run(async_call()), asyncio.run(async_call())):
            assert [c[0].text for c in got] == [c[0].text for c in want]
    finally:
        backend.close()


def test_unknown_model_is_a_clear_404(fake_url: str) -> None:
    with (
        OpenAIBackend("nope", base_url=fake_url, backoff_s=0.01) as backend,
        pytest.raises(BackendError) as info,
    ):
        backend.generate(CHATS[:1], SamplingParams())
    message = str(info.value)
    assert "HTTP 404" in message and "'nope'" in message and fake_url in message
    assert "attempts" not in message  # a 404 is not retried


def test_health(fake_url: str) -> None:
    assert OpenAIBackend("m", base_url=fake_url).health()
    assert not OpenAIBackend("m", base_url=f"http://127.0.0.1:{free_port()}/v1").health(timeout_s=1)


def test_nothing_listening_fails_fast_and_clearly() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = OpenAIBackend("some-model", base_url=url, max_retries=2, backoff_s=0.01, timeout_s=2)
    t = time.monotonic()
    with pytest.raises(BackendError) as info:
        backend.generate(CHATS, SamplingParams())
    assert time.monotonic() - t < 5
    message = str(info.value)
    assert f"cannot connect to {url} (is the server running?)" in message
    assert "'some-model'" in message and "gave up after 3 attempts" in message
    assert info.value.tag().startswith("backend: ")
    backend.close()


def test_timeout_is_reported() -> None:
    scripted = Scripted(delay_s=1.0)
    with serve_in_thread(scripted.app) as url:
        backend = OpenAIBackend("m", base_url=url, timeout_s=0.3, max_retries=0)
        with pytest.raises(BackendError, match=r"timed out after 0\.3 s"):
            backend.generate(CHATS[:1], SamplingParams())
        backend.close()


@pytest.mark.parametrize(
    ("statuses", "ok", "requests"),
    [
        ([503, 503, 200], True, 3),
        ([429, 200], True, 2),
        ([500, 502, 504, 500], False, 4),  # max_retries=3: four attempts, then give up
        ([400, 200], False, 1),
        ([401, 200], False, 1),
        ([422, 200], False, 1),
    ],
)
def test_retries(statuses: list[int], ok: bool, requests: int) -> None:
    scripted = Scripted(statuses)
    with serve_in_thread(scripted.app) as url, OpenAIBackend("m", base_url=url, backoff_s=0.01) as backend:
        if ok:
            [[c]] = backend.generate(CHATS[:1], SamplingParams(seed=3))
            assert c.text == "seed=3"
        else:
            with pytest.raises(BackendError) as info:
                backend.generate(CHATS[:1], SamplingParams())
            assert f"HTTP {statuses[requests - 1]}" in str(info.value)
            assert f"scripted {statuses[requests - 1]}" in str(info.value)
    assert len(scripted.bodies) == requests


def test_concurrency_limit_and_request_fields() -> None:
    scripted = Scripted(delay_s=0.05)
    chats = [[Message("user", f"q{i}")] for i in range(10)]
    params = SamplingParams(max_tokens=7, temperature=0.5, top_p=0.9, stop=["\n"], seed=1, n=1)
    with serve_in_thread(scripted.app) as url:
        with OpenAIBackend("m", base_url=url, max_concurrency=3) as backend:
            assert len(backend.generate(chats, params)) == 10
        assert scripted.max_in_flight == 3
        body = scripted.bodies[0]
        assert {k: body[k] for k in ("model", "max_tokens", "temperature", "top_p", "n", "stop", "logprobs")} == {
            "model": "m", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "n": 1, "stop": ["\n"],
            "logprobs": True,
        }  # fmt: skip
        # Each prompt of a seeded call has its own seed (prompt 0 keeps the call's).
        assert sorted(b["seed"] for b in scripted.bodies) == [1 + 7919 * i for i in range(10)]
        assert "return_token_ids" not in body
        with OpenAIBackend("m", base_url=url, return_token_ids=True) as backend:
            backend.generate(chats[:1], SamplingParams(logprobs=False))
        assert scripted.bodies[-1]["return_token_ids"] is True
        assert "logprobs" not in scripted.bodies[-1]


def test_servers_that_ignore_n_are_topped_up() -> None:
    scripted = Scripted(choices=1)  # llama.cpp-like: always one choice
    with serve_in_thread(scripted.app) as url, OpenAIBackend("m", base_url=url) as backend:
        [got] = backend.generate(CHATS[:1], SamplingParams(n=3, seed=10))
    assert [c.text for c in got] == ["seed=10", "seed=11", "seed=12"]
    assert [b["n"] for b in scripted.bodies] == [3, 2, 1]


def test_finish_reason_mapping() -> None:
    assert _finish_reason("length") == "length"
    assert _finish_reason("stop") == "stop"
    assert _finish_reason("tool_calls") == "stop"
    assert _finish_reason("content_filter") == "stop"
    assert _finish_reason(None) == "stop"
    assert _finish_reason("abort") == "error"


# -- the real tiny model in a server subprocess ---------------------------------------------------


@pytest.fixture(scope="module")
def tiny_server() -> Iterator[tuple[str, Any]]:
    hf = pytest.importorskip("plyground.inference.hf", reason="plyground.inference.hf is not available")
    # Load the in-process copy while the server subprocess boots: both spend seconds importing torch.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        loading = pool.submit(hf.HFBackend, model="tiny")
        with start_server("tiny", timeout_s=120) as url:
            yield url, loading.result()


def test_tiny_server_matches_the_backend(tiny_server: tuple[str, Any]) -> None:
    url, tiny = tiny_server
    params = SamplingParams(max_tokens=10, temperature=0)
    want = tiny.generate(CHATS, params)
    chat_backend = OpenAIBackend("tiny", base_url=url)
    text_backend = OpenAIBackend("tiny", base_url=url, mode="completions", render=tiny.render)
    try:
        assert chat_backend.health()
        for backend in (chat_backend, text_backend):
            got = backend.generate(CHATS, params)
            for g, w in zip(got, want, strict=True):
                assert g[0].text == w[0].text
                assert g[0].token_ids == w[0].token_ids
                assert g[0].prompt_token_ids == w[0].prompt_token_ids
                assert g[0].finish_reason == w[0].finish_reason
                assert g[0].logprobs == pytest.approx(w[0].logprobs, abs=1e-4)

        sampled = chat_backend.generate(CHATS[:1], SamplingParams(max_tokens=8, temperature=1.0, n=3))[0]
        assert len(sampled) == 3
        assert all(len(c.logprobs) == len(c.token_ids) > 0 for c in sampled)
    finally:
        chat_backend.close()
        text_backend.close()


def test_start_server_reports_a_dead_server() -> None:
    with (
        pytest.raises(BackendError, match="exited with code 2") as info,
        start_server("tiny", extra_args=["--no-such-flag"], timeout_s=30),
    ):
        pass
    assert "unrecognized arguments: --no-such-flag" in str(info.value)  # the server's own words


def test_start_server_gives_up_after_timeout() -> None:
    t = time.monotonic()
    with (
        pytest.raises(BackendError, match=r"did not answer .*/health within 0\.5 s"),
        start_server(timeout_s=0.5),
    ):
        pass
    assert time.monotonic() - t < 15


def test_a_non_openai_answer_is_a_backend_error() -> None:
    app = FastAPI()
    app.post("/v1/chat/completions")(lambda: HTMLResponse("<html>proxy login</html>"))
    with (
        serve_in_thread(app) as url,
        OpenAIBackend("m", base_url=url) as backend,
        pytest.raises(BackendError) as info,
    ):
        backend.generate(CHATS[:1], SamplingParams())
    assert f"unexpected response from {url}" in str(info.value)


def test_a_seeded_call_gives_repeated_prompts_their_own_seeds(fake_url: str) -> None:
    # A GRPO group sends one prompt several times with one seed: the copies must not share it,
    # or a seeded server returns the same sample for each.
    params = SamplingParams(max_tokens=64, temperature=1.0, seed=11)
    with OpenAIBackend("m", base_url=fake_url) as backend:
        for mode in ("chat", "completions"):
            backend.mode = mode  # type: ignore[assignment]
            got = backend.generate([CHATS[0]] * 3, params)
            assert len({g[0].text for g in got}) == 3
            assert backend.generate([CHATS[0]] * 3, params) == got  # still reproducible
    scripted = Scripted()
    with serve_in_thread(scripted.app) as url, OpenAIBackend("m", base_url=url) as backend:
        got = backend.generate([CHATS[0]] * 3, params)
    assert [g[0].text for g in got] == ["seed=11", f"seed={11 + 7919}", f"seed={11 + 2 * 7919}"]


# -- one seed per prompt (``seeds=``) -------------------------------------------------------------


def _seed_in(completion: Completion) -> str:
    """The seed the fake backend behind the server saw for this sample (its reply names it)."""
    match = re.search(r"seed (\S+) done", completion.text)
    assert match is not None, completion.text
    return match.group(1)


def test_per_prompt_seeds_go_in_each_request_body() -> None:
    scripted = Scripted()
    chats = [[Message("user", f"q{i}")] for i in range(4)]
    seeds = [5, None, 2**62 + 3, 5]  # the collector's seeds are 63-bit
    with serve_in_thread(scripted.app) as url, OpenAIBackend("m", base_url=url) as backend:
        got = backend.generate(chats, SamplingParams(seed=1), seeds=seeds)
        assert [g[0].text for g in got] == ["seed=5", "seed=None", f"seed={2**62 + 3}", "seed=5"]
        by_prompt = {b["messages"][0]["content"]: b for b in scripted.bodies}
        assert [by_prompt[f"q{i}"].get("seed", "absent") for i in range(4)] == [5, "absent", 2**62 + 3, 5]
        # Without seeds= the call's seed is spread as before: prompt i gets seed + 7919 i.
        got = backend.generate(chats[:2], SamplingParams(seed=1))
        assert [g[0].text for g in got] == ["seed=1", f"seed={1 + 7919}"]
        got = backend.generate(chats[:2], SamplingParams())
        assert [g[0].text for g in got] == ["seed=None", "seed=None"]


def test_per_prompt_seeds_keep_the_top_up_shift() -> None:
    scripted = Scripted(choices=1)  # a server that ignores n
    with serve_in_thread(scripted.app) as url, OpenAIBackend("m", base_url=url) as backend:
        got = backend.generate(CHATS, SamplingParams(n=3, seed=0), seeds=[10, 50])
    assert [[c.text for c in g] for g in got] == [
        ["seed=10", "seed=11", "seed=12"],
        ["seed=50", "seed=51", "seed=52"],
    ]


def test_per_prompt_seeds_in_every_mode_and_method(fake_url: str) -> None:
    params = SamplingParams(max_tokens=64, temperature=1.0, seed=99)
    seeds = [7, 8, None]
    chats = [CHATS[0], CHATS[0], CHATS[1]]
    with OpenAIBackend("m", base_url=fake_url) as backend:
        for mode in ("chat", "completions"):
            backend.mode = mode  # type: ignore[assignment]
            got = backend.generate(chats, params, seeds=seeds)
            assert [_seed_in(g[0]) for g in got] == ["7", "8", "None"]
            got = asyncio.run(backend.agenerate(chats, params, seeds=seeds))
            assert [_seed_in(g[0]) for g in got] == ["7", "8", "None"]
        ids = [[BOS, 70, 71], [BOS, 70, 71], [BOS, 72]]
        got = backend.generate_ids(ids, params, seeds=seeds)
        assert [_seed_in(g[0]) for g in got] == ["7", "8", "None"]
        got = asyncio.run(backend.agenerate_ids(ids, params, seeds=seeds))
        assert [_seed_in(g[0]) for g in got] == ["7", "8", "None"]


def test_per_prompt_seeds_must_match_the_prompts() -> None:
    scripted = Scripted()
    params = SamplingParams(seed=1)
    with serve_in_thread(scripted.app) as url, OpenAIBackend("m", base_url=url) as backend:
        with pytest.raises(ValueError, match="1 seeds for 2 prompts"):
            backend.generate(CHATS, params, seeds=[1])
        with pytest.raises(ValueError, match="3 seeds for 1 prompts"):
            backend.generate_ids([[1, 2]], params, seeds=[1, 2, 3])
        with pytest.raises(ValueError, match="0 seeds for 2 prompts"):
            asyncio.run(backend.agenerate(CHATS, params, seeds=[]))
        with pytest.raises(ValueError, match="1 seeds for 2 prompts"):
            asyncio.run(backend.agenerate_ids([[1], [2]], params, seeds=[4]))
    assert scripted.bodies == []  # nothing was sent




def test_server_backend_passes_per_prompt_seeds_through(fake_url: str) -> None:
    params = SamplingParams(max_tokens=64, temperature=1.0, seed=99)
    chats = [CHATS[0], CHATS[0], CHATS[1]]
    ids = [[BOS, 70, 71], [BOS, 70, 71], [BOS, 72]]
    seeds = [7, 2**62 + 1, None]
    want = ["7", str(2**62 + 1), "None"]
    with server_backend_over(fake_url) as backend:
        assert [_seed_in(g[0]) for g in backend.generate(chats, params, seeds=seeds)] == want
        assert [_seed_in(g[0]) for g in backend.generate_ids(ids, params, seeds=seeds)] == want
        assert [_seed_in(g[0]) for g in asyncio.run(backend.agenerate(chats, params, seeds=seeds))] == want
        assert [_seed_in(g[0]) for g in asyncio.run(backend.agenerate_ids(ids, params, seeds=seeds))] == want
        # Without seeds= a seeded call spreads its seed as OpenAIBackend does: the two copies of
        # CHATS[0] are independent draws, not the same sample twice.
        assert [_seed_in(g[0]) for g in backend.generate(chats, params)] == ["99", str(99 + 7919), str(99 + 2 * 7919)]
        assert [_seed_in(g[0]) for g in backend.generate_ids(ids, replace(params, seed=None))] == ["None"] * 3
        with pytest.raises(ValueError, match="2 seeds for 3 prompts"):
            backend.generate(chats, params, seeds=[1, 2])
        with pytest.raises(ValueError, match="2 seeds for 3 prompts"):
            asyncio.run(backend.agenerate_ids(ids, params, seeds=[1, 2]))
