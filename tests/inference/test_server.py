"""The OpenAI-compatible server: routes, shapes, logprobs, token ids, errors and batching.

Most checks run against a deterministic fake TokenBackend (no torch); the last ones against the
real ``HFBackend("tiny")``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fake_backend import BOS, FakeBackend
from fastapi.testclient import TestClient

from plyground.inference.base import TokenBackend
from plyground.inference.server import create_app
from plyground.types import Chat, Message, SamplingParams

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]


@pytest.fixture()
def fake() -> FakeBackend:
    return FakeBackend()


@pytest.fixture()
def client(fake: FakeBackend):
    with TestClient(create_app(fake, model_name="m")) as c:
        yield c


def _chat(messages: list[dict[str, str]]) -> Chat:
    return [Message(role=m["role"], content=m["content"]) for m in messages]  # type: ignore[arg-type]


def test_fake_is_a_token_backend(fake: FakeBackend) -> None:
    assert isinstance(fake, TokenBackend)


def test_health_and_models(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["m"]
    assert body["data"][0]["object"] == "model"


def test_chat_completion_shape(client: TestClient, fake: FakeBackend) -> None:
    r = client.post("/v1/chat/completions", json={"model": "m", "messages": CHAT, "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "m"
    assert isinstance(body["created"], int)
    [choice] = body["choices"]
    expected = fake.generate([_chat(CHAT)], SamplingParams(temperature=0, logprobs=False))[0][0]
    assert choice["index"] == 0
    assert choice["message"] == {"role": "assistant", "content": expected.text}
    assert choice["finish_reason"] == "stop"
    assert choice["logprobs"] is None
    assert choice["token_ids"] == expected.token_ids
    assert body["prompt_token_ids"] == fake.render(_chat(CHAT))
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(body["prompt_token_ids"])
    assert usage["completion_tokens"] == len(choice["token_ids"])
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_chat_logprobs_n_and_stop(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions",
        json={"model": "m", "messages": CHAT, "n": 3, "logprobs": True, "top_logprobs": 1, "seed": 7},
    )
    body = r.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert len({c["message"]["content"] for c in body["choices"]}) == 3
    for choice in body["choices"]:
        content = choice["logprobs"]["content"]
        assert len(content) == len(choice["token_ids"])
        for entry in content:
            assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
            assert entry["bytes"] == list(entry["token"].encode())
            assert entry["top_logprobs"] == [{k: entry[k] for k in ("token", "logprob", "bytes")}]
            assert entry["logprob"] < 0
        # The EOS token is part of the tokens, not of the text.
        assert "".join(e["token"] for e in content) == choice["message"]["content"] + "</s>"

    r = client.post(
        "/v1/chat/completions", json={"messages": CHAT, "stop": "done", "max_tokens": 100, "temperature": 0}
    )
    assert "done" not in r.json()["choices"][0]["message"]["content"]

    r = client.post("/v1/chat/completions", json={"model": "m", "messages": CHAT, "max_completion_tokens": 3})
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert len(choice["token_ids"]) == 3


def test_chat_content_parts_and_developer_role(client: TestClient, fake: FakeBackend) -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}]},
    ]
    r = client.post("/v1/chat/completions", json={"model": "m", "messages": messages})
    assert r.status_code == 200, r.text
    assert r.json()["prompt_token_ids"] == fake.render(_chat(CHAT))

    bad = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    r = client.post("/v1/chat/completions", json={"model": "m", "messages": bad})
    assert r.status_code == 400
    assert "text content" in r.json()["error"]["message"]


def test_completions_text_prompt_legacy_logprobs(client: TestClient, fake: FakeBackend) -> None:
    r = client.post(
        "/v1/completions",
        json={"model": "m", "prompt": "Once upon", "max_tokens": 5, "logprobs": 1, "temperature": 0},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion"
    assert body["id"].startswith("cmpl-")
    [choice] = body["choices"]
    assert choice["prompt_token_ids"] == fake.tokenizer.encode("Once upon")  # BOS added, as vLLM does
    assert choice["finish_reason"] == "length"
    assert len(choice["token_ids"]) == 5
    lp = choice["logprobs"]
    assert lp["tokens"] == [fake.tokenizer.decode([t]) for t in choice["token_ids"]]
    assert len(lp["token_logprobs"]) == 5
    assert lp["text_offset"] == [0, 1, 2, 3, 4]
    assert lp["top_logprobs"] == [{t: v} for t, v in zip(lp["tokens"], lp["token_logprobs"], strict=True)]
    assert "".join(lp["tokens"]) == choice["text"]
    assert body["usage"]["prompt_tokens"] == len(choice["prompt_token_ids"])

    r = client.post("/v1/completions", json={"model": "m", "prompt": "x", "logprobs": 0})
    lp = r.json()["choices"][0]["logprobs"]
    assert lp["top_logprobs"] is None and lp["token_logprobs"]


def test_completions_token_prompts_batch_and_n(client: TestClient, fake: FakeBackend) -> None:
    prompts = [[BOS, 65, 66], [BOS, 67]]
    r = client.post("/v1/completions", json={"model": "m", "prompt": prompts, "n": 2, "temperature": 1.0})
    body = r.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert [c["prompt_token_ids"] for c in body["choices"]] == [prompts[0]] * 2 + [prompts[1]] * 2
    assert all(c["logprobs"] is None for c in body["choices"])
    assert body["usage"]["prompt_tokens"] == 5
    direct = fake.generate_ids(prompts, SamplingParams(n=2, temperature=1.0))
    assert [c["text"] for c in body["choices"]] == [c.text for group in direct for c in group]

    r = client.post("/v1/completions", json={"model": "m", "prompt": [BOS, 65]})
    assert r.json()["choices"][0]["prompt_token_ids"] == [BOS, 65]
    r = client.post("/v1/completions", json={"model": "m", "prompt": ["a", "b"]})
    assert [c["prompt_token_ids"] for c in r.json()["choices"]] == [[BOS, 97], [BOS, 98]]


def test_model_may_be_omitted_and_backend_name_is_an_alias(client: TestClient) -> None:
    assert client.post("/v1/chat/completions", json={"messages": CHAT}).status_code == 200
    r = client.post("/v1/completions", json={"model": "fake-model", "prompt": "x"})
    assert r.status_code == 200
    assert r.json()["model"] == "fake-model"


def _assert_error(r: Any, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    assert words in error["message"], error


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v1/chat/completions", {"model": "nope", "messages": CHAT}, 404, "'nope' does not exist"),
        ("/v1/completions", {"model": "nope", "prompt": "x"}, 404, "'nope' does not exist"),
        ("/v1/chat/completions", {"model": "m", "messages": CHAT, "temperature": -1}, 400, "temperature"),
        ("/v1/chat/completions", {"model": "m", "messages": CHAT, "n": 0}, 400, "n:"),
        ("/v1/chat/completions", {"model": "m", "messages": CHAT, "top_p": 0}, 400, "top_p"),
        ("/v1/chat/completions", {"model": "m", "messages": CHAT, "max_tokens": 0}, 400, "max_tokens"),
        ("/v1/chat/completions", {"model": "m", "messages": []}, 400, "messages"),
        ("/v1/chat/completions", {"model": "m"}, 400, "messages"),
        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "bot", "content": "x"}]}, 400, "role"),
        ("/v1/chat/completions", {"model": "m", "messages": CHAT, "stream": True}, 400, "streaming"),
        ("/v1/completions", {"model": "m", "prompt": "x", "stream": True}, 400, "streaming"),
        ("/v1/completions", {"model": "m", "prompt": "x", "echo": True}, 400, "echo"),
        ("/v1/completions", {"model": "m", "prompt": "x", "logprobs": 9}, 400, "logprobs"),
        ("/v1/completions", {"model": "m", "prompt": []}, 400, "empty"),
        ("/v1/completions", {"model": "m", "prompt": ""}, 200, ""),  # BOS alone is a prompt
        ("/v1/completions", {"model": "m", "prompt": [1, 99999]}, 400, "out of range"),
        ("/v1/completions", {"model": "m", "prompt": [-1]}, 400, "out of range"),
        ("/v1/completions", {"model": "m", "prompt": {"a": 1}}, 400, "prompt"),
    ],
)
def test_errors(client: TestClient, path: str, body: dict[str, object], status: int, words: str) -> None:
    r = client.post(path, json=body)
    if status == 200:
        assert r.status_code == 200, r.text
    else:
        _assert_error(r, status, words)


def test_unknown_route_and_bad_json(client: TestClient) -> None:
    _assert_error(client.get("/v1/nothing"), 404, "Not Found")
    r = client.post("/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    _assert_error(r, 400, "JSON")


def test_backend_failure_is_500_and_does_not_sink_its_batch() -> None:
    fake = FakeBackend(fail_on="poison", delay_s=0.05)
    app = create_app(fake, model_name="m", batch_window_ms=50)

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return list(
                await asyncio.gather(
                    c.post("/v1/completions", json={"model": "m", "prompt": "poison"}),
                    c.post("/v1/completions", json={"model": "m", "prompt": "fine"}),
                )
            )

    bad, good = asyncio.run(main())
    _assert_error(bad, 500, "told to fail")
    assert bad.json()["error"]["type"] == "server_error"
    assert good.status_code == 200


def test_concurrent_requests_are_batched() -> None:
    fake = FakeBackend(delay_s=0.1)
    app = create_app(fake, model_name="m", max_batch_size=32, batch_window_ms=20)
    prompts = [f"prompt {i}" for i in range(8)]

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            normal = [c.post("/v1/completions", json={"prompt": p, "temperature": 0}) for p in prompts]
            seeded = [c.post("/v1/completions", json={"prompt": "s", "seed": 1}) for _ in range(2)]
            return await asyncio.gather(*normal, *seeded)

    t = time.monotonic()
    responses = asyncio.run(main())
    elapsed = time.monotonic() - t
    assert all(r.status_code == 200 for r in responses)
    for p, r in zip(prompts, responses, strict=False):
        ids = fake.tokenizer.encode(p)
        assert r.json()["choices"][0]["prompt_token_ids"] == ids
        assert r.json()["choices"][0]["text"] == fake._reply(ids, 0, SamplingParams(temperature=0)).text
    # Eight unseeded requests with equal params share calls; each seeded one runs alone, because this
    # fake takes no per-prompt seeds (test_seeded_batching.py covers backends that do).
    unseeded = [size for size, params in fake.calls if params.seed is None]
    assert sum(unseeded) == 8 and len(unseeded) <= 3
    assert [size for size, params in fake.calls if params.seed is not None] == [1, 1]
    assert elapsed < 5.0  # generous: only a serialised, unbatched server would be far slower


def test_event_loop_is_not_blocked_by_generation() -> None:
    fake = FakeBackend(delay_s=0.5)
    app = create_app(fake, model_name="m")

    async def main() -> float:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            slow = asyncio.ensure_future(c.post("/v1/completions", json={"prompt": "x"}))
            await asyncio.sleep(0.05)
            t = time.monotonic()
            assert (await c.get("/health")).status_code == 200
            waited = time.monotonic() - t
            await slow
            return waited

    assert asyncio.run(main()) < 0.3


# -- the real tiny model --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    hf = pytest.importorskip("plyground.inference.hf", reason="plyground.inference.hf is not available")
    backend = hf.HFBackend(model="tiny")
    yield backend
    backend.close()


def test_tiny_chat_matches_backend(tiny) -> None:
    chat = [Message("user", "Name a colour.")]
    params = SamplingParams(max_tokens=12, temperature=0, logprobs=True)
    [[direct]] = tiny.generate([chat], params)
    with TestClient(create_app(tiny, model_name="tiny")) as c:
        r = c.post(
            "/v1/chat/completions",
            json={
                "model": "tiny",
                "messages": [chat[0].as_openai()],
                "max_tokens": 12,
                "temperature": 0,
                "logprobs": True,
            },
        )
    assert r.status_code == 200, r.text
    body = r.json()
    [choice] = body["choices"]
    assert choice["message"]["content"] == direct.text
    assert choice["token_ids"] == direct.token_ids
    assert body["prompt_token_ids"] == direct.prompt_token_ids == tiny.render(chat)
    got = [e["logprob"] for e in choice["logprobs"]["content"]]
    assert got == pytest.approx(direct.logprobs, abs=1e-5)
    assert choice["finish_reason"] == direct.finish_reason


def test_tiny_completions_with_token_ids(tiny) -> None:
    ids = tiny.tokenizer.encode("The sky is", add_special_tokens=False)
    params = SamplingParams(max_tokens=6, temperature=0, n=2)
    direct = tiny.generate_ids([ids], params)[0]
    with TestClient(create_app(tiny)) as c:
        r = c.post(
            "/v1/completions", json={"prompt": ids, "max_tokens": 6, "temperature": 0, "n": 2, "logprobs": 1}
        )
    choices = r.json()["choices"]
    assert [c["text"] for c in choices] == [d.text for d in direct]
    assert [c["token_ids"] for c in choices] == [d.token_ids for d in direct]
    assert all(len(c["logprobs"]["token_logprobs"]) == len(c["token_ids"]) for c in choices)


# -- weight sync ----------------------------------------------------------------------------------


def _perturbed_copy(backend: Any) -> dict[str, Any]:
    import torch

    gen = torch.Generator().manual_seed(0)
    return {k: v.detach().cpu() + 0.05 * torch.randn(v.shape, generator=gen) for k, v in backend.model.state_dict().items()}


def test_update_weights_from_disk_swaps_the_served_weights(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import save_file

    from plyground.inference.hf import HFBackend
    from plyground.inference.models import tiny_model

    model, tok = tiny_model()
    served = HFBackend(model=model, tokenizer=tok)
    new = _perturbed_copy(served)
    # A checkpoint with a tied lm_head left out, as save_pretrained writes it.
    ckpt = tmp_path / "v1"
    ckpt.mkdir()
    own = served.model.state_dict()
    tied = {k for k in own if k != "model.embed_tokens.weight" and own[k].data_ptr() == own["model.embed_tokens.weight"].data_ptr()}
    save_file({k: v.contiguous() for k, v in new.items() if k not in tied}, str(ckpt / "model.safetensors"))
    ids = tok.encode("The sky is", add_special_tokens=False)
    body = {"prompt": ids, "max_tokens": 4, "temperature": 0, "logprobs": 1}
    with TestClient(create_app(served, model_name="tiny")) as c:
        before = c.post("/v1/completions", json=body).json()["choices"][0]["logprobs"]["token_logprobs"]
        r = c.post("/update_weights_from_disk", json={"model_path": str(ckpt)})
        assert r.status_code == 200 and r.json()["success"] is True, r.text
        after = c.post("/v1/completions", json=body).json()["choices"][0]["logprobs"]["token_logprobs"]
        # A bad checkpoint is refused and leaves the served weights untouched.
        bad = tmp_path / "bad"
        bad.mkdir()
        save_file({"not.a.weight": new["model.norm.weight"]}, str(bad / "model.safetensors"))
        refused = c.post("/update_weights_from_disk", json={"model_path": str(bad)})
        missing = c.post("/update_weights_from_disk", json={"model_path": str(tmp_path / "nowhere")})
        again = c.post("/v1/completions", json=body).json()["choices"][0]["logprobs"]["token_logprobs"]
    for name, tensor in new.items():
        if name in tied:
            continue  # shares the embedding's storage, which the checkpoint set
        assert torch_allclose(served.model.state_dict()[name], tensor), name
    assert after != pytest.approx(before, abs=1e-4)
    assert refused.status_code == 400 and refused.json()["success"] is False and "does not have" in refused.json()["message"]
    assert missing.status_code == 400 and "safetensors" in missing.json()["message"]
    assert again == pytest.approx(after, abs=1e-6)


def torch_allclose(a: Any, b: Any) -> bool:
    import torch

    return bool(torch.allclose(a.detach().cpu().float(), b.float(), atol=1e-6))


def test_plyground_server_backend_pushes_trainer_weights(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The server as a subprocess behind the router: chat with token ids, then a weight push from a
    model object (saved with save_pretrained) changes what it samples to what that model samples."""
    from plyground.inference.hf import HFBackend
    from plyground.inference.models import tiny_model
    from plyground.inference.server import PlygroundServerBackend

    model, tok = tiny_model()
    local = HFBackend(model=model, tokenizer=tok)
    chat = [Message("user", "Name a colour.")]
    params = SamplingParams(max_tokens=6, temperature=0, logprobs=True)
    with PlygroundServerBackend("tiny", startup_timeout_s=120, request_timeout_s=60) as remote:
        [[first]] = remote.generate([chat], params)
        [[expected]] = local.generate([chat], params)
        assert first.token_ids == expected.token_ids and first.prompt_token_ids == expected.prompt_token_ids
        import torch

        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        sync = remote.update_weights(model, version=1)
        [[second]] = remote.generate([chat], params)
        [[expected2]] = local.generate([chat], params)
    assert sync["version"] == 1 and remote.policy_version == 1
    assert second.logprobs == pytest.approx(expected2.logprobs, abs=1e-4)
    assert second.logprobs != pytest.approx(first.logprobs, abs=1e-4)


def _staggered_calls(window_ms: float, max_wait_ms: float, count: int, gap_s: float) -> list[int]:
    """Batch sizes the backend saw for ``count`` requests sent ``gap_s`` apart to an idle server."""
    fake = FakeBackend(delay_s=0.01)
    app = create_app(fake, model_name="m", max_batch_size=64, batch_window_ms=window_ms, batch_max_wait_ms=max_wait_ms)

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:

            async def later(i: int) -> httpx.Response:
                await asyncio.sleep(i * gap_s)
                return await c.post("/v1/completions", json={"prompt": f"p{i}", "temperature": 0})

            return list(await asyncio.gather(*(later(i) for i in range(count))))

    assert all(r.status_code == 200 for r in asyncio.run(main()))
    return [size for size, _ in fake.calls]


def test_a_burst_spread_wider_than_the_window_still_makes_one_batch() -> None:
    # 8 requests 30 ms apart span 210 ms, twice the 100 ms window: the window is a gap between
    # arrivals, so the batch stays open while they keep coming (a fixed span would cut it).
    assert _staggered_calls(window_ms=100, max_wait_ms=5000, count=8, gap_s=0.03) == [8]


def test_the_batch_starts_after_max_wait_even_while_requests_keep_coming() -> None:
    sizes = _staggered_calls(window_ms=100, max_wait_ms=120, count=12, gap_s=0.03)
    assert sum(sizes) == 12 and len(sizes) >= 2


def test_a_server_backend_attaches_to_running_servers_and_leaves_them_running(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``base_urls``: two servers someone else runs (here uvicorn threads) as the replicas; requests
    are spread over both, a weight push reaches both, and close() leaves them serving."""
    import torch
    from live_servers import serve_in_thread

    from plyground.errors import BackendError
    from plyground.inference.hf import HFBackend
    from plyground.inference.models import tiny_model
    from plyground.inference.server import PlygroundServerBackend

    model, tok = tiny_model()
    local = HFBackend(model=model, tokenizer=tok)
    served = [HFBackend(model=tiny_model()[0], tokenizer=tok) for _ in range(2)]
    chats = [[Message("user", f"Name a colour, {i}.")] for i in range(6)]
    params = SamplingParams(max_tokens=4, temperature=0, logprobs=True)
    with serve_in_thread(create_app(served[0], model_name="tiny")) as url0, serve_in_thread(
        create_app(served[1], model_name="tiny")
    ) as url1:
        with PlygroundServerBackend(
            "tiny", base_urls=[url0, url1], tokenizer=tok, sync_dir=str(tmp_path / "w"), request_timeout_s=60
        ) as remote:
            assert [r.server.root_url for r in remote.replicas] == [url0.removesuffix("/v1"), url1.removesuffix("/v1")]
            remote.generate(chats, params)
            assert remote.router is not None and all(r.served > 0 for r in remote.replicas)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.05 * torch.randn_like(p))
            remote.update_weights(tiny_model()[0], version=1)
            remote.update_weights(model, version=2)
            # Only the last push stays on disk (a restarted replica gets that one).
            assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["v2"]
            got = remote.generate(chats, params)
        want = local.generate(chats, params)
        for [g], [w] in zip(got, want, strict=True):
            assert g.logprobs == pytest.approx(w.logprobs, abs=1e-4)
        # Both replicas got the new weights, and closing the backend left them serving.
        for backend in served:
            assert torch_allclose(backend.model.lm_head.weight, model.lm_head.weight.detach())
        assert httpx.get(url0.removesuffix("/v1") + "/health", timeout=5).status_code == 200
    with pytest.raises(ValueError, match="base_urls"):
        PlygroundServerBackend("tiny", base_urls=[], start=False)
    with pytest.raises(BackendError, match="no healthy server"):
        PlygroundServerBackend("tiny", base_urls=["http://127.0.0.1:9"], startup_timeout_s=0.5)
