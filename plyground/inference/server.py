"""An OpenAI-compatible HTTP server over a local :class:`TokenBackend` (``hf``).

Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions``,
``POST /v1/completions``, in OpenAI's JSON shapes, and ``POST /update_weights_from_disk`` (weight
sync, in SGLang's request and answer shape: ``{"model_path"}`` -> ``{"success", "message"}``). Like vLLM with ``return_token_ids``, every
response also carries the token ids: ``prompt_token_ids`` (top level for chat, per choice for
completions, whose request may hold several prompts) and ``token_ids`` per choice.

Requests that arrive together are batched: one worker thread collects them for a few
milliseconds, groups those with equal sampling parameters and calls ``backend.generate_ids`` once
per group. The backend therefore only ever sees one call at a time (it need not be thread-safe)
and the event loop is never blocked. A ``seed`` must give the same sample whatever else is in
flight: a backend that takes one seed per prompt (``hf``: ``generate_ids(..., seeds=...)`` and
``prompt_seeds``) gets seeded requests batched with the others that share the rest of their
parameters, each prompt with its own seed; with any other backend a seeded request runs alone.

Run it with ``python -m plyground.inference.server --model tiny --port 8000`` (or ``serve``), or
from code and tests with ``start_server``, which launches it as a subprocess and waits for health.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import logging
import math
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from plyground.errors import BackendError
from plyground.inference.base import TokenBackend
from plyground.inference.vllm import ServerBackend
from plyground.types import Chat, Completion, Message, SamplingParams

__all__ = [
    "ChatCompletionRequest",
    "CompletionRequest",
    "PlygroundServerBackend",
    "ServerProcess",
    "create_app",
    "load_weights_from_disk",
    "main",
    "serve",
    "start_server",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256
MAX_N = 128
# JSON has no -inf; vLLM clamps the same way.
_MIN_LOGPROB = -9999.0


# -- request models -------------------------------------------------------------------------------


class _OpenAIRequest(BaseModel):
    # Clients send many fields we do not use (user, presence_penalty, vLLM extensions such as
    # return_token_ids); accepting and ignoring them is what other compatible servers do.
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = False


class ChatMessageIn(BaseModel):
    """One message of a chat request; ``content`` may be a string or a list of text parts."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(_OpenAIRequest):
    """Body of ``POST /v1/chat/completions`` (the fields this server honours)."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


class CompletionRequest(_OpenAIRequest):
    """Body of ``POST /v1/completions``; ``prompt`` is text, token ids, or a list of either."""

    prompt: str | list[int] | list[list[int]] | list[str]
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool | None = False


class _APIError(Exception):
    """An error to send back as OpenAI-style JSON."""

    def __init__(
        self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code


def _error_json(status: int, message: str, type_: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"error": {"message": message, "type": type_, "code": code, "param": None}},
    )


# -- batching -------------------------------------------------------------------------------------


@dataclass
class _Job:
    prompts: list[list[int]]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[list[Completion]]]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the client went away and the request was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _takes_per_prompt_seeds(backend: Any) -> bool:
    """Whether ``backend.generate_ids`` takes ``seeds=`` (one per prompt) and says, through
    ``prompt_seeds``, how it spreads one call's seed over its prompts."""
    if not callable(getattr(backend, "prompt_seeds", None)):
        return False
    try:
        return "seeds" in inspect.signature(backend.generate_ids).parameters
    except (TypeError, ValueError):  # no signature to read
        return False


class _Batcher:
    """One worker thread that turns queued requests into few ``generate_ids`` calls.

    Results go back to each request's own event loop, so the batcher does not care which loop
    (uvicorn's, or a TestClient's per-request one) submitted the work.
    """

    def __init__(self, backend: TokenBackend, max_batch_size: int, window_s: float, max_wait_s: float | None = None) -> None:
        self.backend = backend
        self.max_batch_size = max(1, max_batch_size)
        self.window_s = max(0.0, window_s)
        self.max_wait_s = max(self.window_s, max_wait_s if max_wait_s is not None else 10 * self.window_s)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Held while the backend generates and while new weights are copied in, so that no batch
        # ever runs on half-updated weights.
        self.backend_lock = threading.Lock()
        self.per_prompt_seeds = _takes_per_prompt_seeds(backend)

    async def submit(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        self._ensure_started()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[list[Completion]]] = loop.create_future()
        self._queue.put(_Job(prompts, params, loop, future))
        return await future

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="plyground-batcher", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout=30)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch, size = [first], len(first.prompts)
            now = time.monotonic()
            hard_deadline, deadline = now + self.max_wait_s, now + self.window_s
            # Whatever queued up while the previous batch ran is taken at once. On an idle server
            # the window is a gap, not a fixed span: a burst of requests (a client's wave, parsed
            # one by one by the HTTP loop) keeps the batch open while they keep coming, up to
            # max_wait_s; a fixed 5 ms span split such waves into two full-length batches.
            while size < self.max_batch_size:
                try:
                    remaining = min(deadline, hard_deadline) - time.monotonic()
                    job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
                size += len(job.prompts)
                deadline = time.monotonic() + self.window_s
            self._dispatch([j for j in batch if not j.future.done()])

    def _dispatch(self, batch: list[_Job]) -> None:
        groups: dict[str, list[_Job]] = {}
        for job in batch:
            if job.params.seed is None:
                key = job.params.to_json()
            elif self.per_prompt_seeds:
                # The seed travels per prompt, so it need not match for requests to share a call.
                key = replace(job.params, seed=None).to_json()
            else:
                key = f"seeded-{id(job)}"
            groups.setdefault(key, []).append(job)
        for jobs in groups.values():
            self._run_group(jobs)

    def _generate(self, jobs: list[_Job]) -> list[list[Completion]]:
        prompts = [p for job in jobs for p in job.prompts]
        if len(jobs) == 1 or all(job.params.seed is None for job in jobs):
            return self.backend.generate_ids(prompts, jobs[0].params)
        # Each request's prompts get exactly the seeds the backend would give them in a call of
        # their own, so a seeded request samples the same batched or alone.
        seeds: list[int | None] = []
        for job in jobs:
            seeds.extend(self.backend.prompt_seeds(job.params.seed, len(job.prompts)))  # type: ignore[attr-defined]
        params = replace(jobs[0].params, seed=None)
        return self.backend.generate_ids(prompts, params, seeds=seeds)  # type: ignore[call-arg]

    def _run_group(self, jobs: list[_Job]) -> None:
        prompts = [p for job in jobs for p in job.prompts]
        try:
            with self.backend_lock:
                results = self._generate(jobs)
            if len(results) != len(prompts):
                raise BackendError(f"backend returned {len(results)} results for {len(prompts)} prompts")
        except Exception as exc:
            if len(jobs) > 1:
                # Find the request at fault instead of failing everything that shared its batch.
                for job in jobs:
                    self._run_group([job])
                return
            self._deliver(jobs[0], None, exc)
            return
        start = 0
        for job in jobs:
            self._deliver(job, results[start : start + len(job.prompts)], None)
            start += len(job.prompts)

    @staticmethod
    def _deliver(job: _Job, result: Any, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the submitting loop has closed
            job.loop.call_soon_threadsafe(_settle, job.future, result, error)


# -- weight sync ----------------------------------------------------------------------------------


def load_weights_from_disk(model: Any, folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Copy the tensors of ``folder``'s ``*.safetensors`` files into ``model``, in place.

    What ``save_pretrained`` writes (one file or shards) or a bare state dict saved as
    ``model.safetensors``. Every parameter must be covered except those tied to another one
    (``save_pretrained`` leaves a tied ``lm_head`` out); names the model does not have, or shapes
    that differ, are refused before anything is copied, so a bad checkpoint leaves the served
    weights as they were. Returns ``{"tensors": n, "seconds": t}``.
    """
    import torch
    from safetensors.torch import load_file

    started = time.perf_counter()
    path = Path(folder)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"no *.safetensors weights in {path}")
    incoming: dict[str, Any] = {}
    for file in files:
        incoming.update(load_file(str(file)))
    own = model.state_dict()
    unknown = sorted(set(incoming) - set(own))
    if unknown:
        raise ValueError(f"{len(unknown)} tensors the served model does not have, e.g. {unknown[:3]}")
    bad_shape = [k for k, v in incoming.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad_shape:
        k = bad_shape[0]
        raise ValueError(f"shape mismatch for {k}: {tuple(incoming[k].shape)} vs served {tuple(own[k].shape)}")
    # Tensors sharing storage with a covered one (tied embeddings) need not be in the checkpoint.
    covered = {own[k].data_ptr() for k in incoming}
    missing = sorted(k for k in own if k not in incoming and own[k].data_ptr() not in covered)
    if missing:
        raise ValueError(f"{len(missing)} served tensors missing from the checkpoint, e.g. {missing[:3]}")
    with torch.no_grad():
        for name, tensor in incoming.items():
            own[name].copy_(tensor.to(own[name].device))
    return {"tensors": len(incoming), "seconds": time.perf_counter() - started}


class WeightsRequest(BaseModel):
    """``POST /update_weights_from_disk`` body (SGLang's field name)."""

    model_config = ConfigDict(extra="ignore")
    model_path: str


# -- response building ----------------------------------------------------------------------------


def _token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    return [tokenizer.decode([int(t)]) for t in ids]


def _clean_logprob(value: float) -> float:
    return value if math.isfinite(value) else _MIN_LOGPROB


def _chat_logprobs(tokenizer: Any, completion: Completion, top_logprobs: int) -> dict[str, Any]:
    pieces = _token_strings(tokenizer, completion.token_ids)
    content = []
    for piece, lp in zip(pieces, completion.logprobs, strict=False):
        entry: dict[str, Any] = {
            "token": piece,
            "logprob": _clean_logprob(lp),
            "bytes": list(piece.encode("utf-8")),
            # Only the sampled token's log-probability is known, so it is the only "top" one.
            "top_logprobs": [],
        }
        if top_logprobs > 0:
            entry["top_logprobs"] = [{k: entry[k] for k in ("token", "logprob", "bytes")}]
        content.append(entry)
    return {"content": content}


def _legacy_logprobs(tokenizer: Any, completion: Completion, top_k: int) -> dict[str, Any]:
    pieces = _token_strings(tokenizer, completion.token_ids)[: len(completion.logprobs)]
    logprobs = [_clean_logprob(lp) for lp in completion.logprobs[: len(pieces)]]
    offsets, offset = [], 0
    for piece in pieces:
        offsets.append(offset)
        offset += len(piece)
    return {
        "tokens": pieces,
        "token_logprobs": logprobs,
        "top_logprobs": [{p: lp} for p, lp in zip(pieces, logprobs, strict=True)] if top_k > 0 else None,
        "text_offset": offsets,
    }


def _usage(prompt_tokens: int, completions: Sequence[Completion]) -> dict[str, int]:
    completion_tokens = sum(len(c.token_ids) for c in completions)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _render(backend: Any, chat: Chat) -> list[int]:
    """The prompt ids for a chat: the backend's own rendering, else the tokenizer's template."""
    if hasattr(backend, "render"):
        ids = backend.render(chat, add_generation_prompt=True)
    else:
        ids = backend.tokenizer.apply_chat_template(
            [m.as_openai() for m in chat], add_generation_prompt=True, tokenize=True
        )
        if not isinstance(ids, list):  # newer transformers return a BatchEncoding
            ids = ids["input_ids"]
    return [int(t) for t in ids]


def _message_text(message: ChatMessageIn) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    parts = []
    for part in message.content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise _APIError(400, f"only text content parts are supported, got type {part.get('type')!r}")
        parts.append(part["text"])
    return "".join(parts)


# -- the app --------------------------------------------------------------------------------------


def create_app(
    backend: TokenBackend,
    model_name: str | None = None,
    max_batch_size: int = 32,
    batch_window_ms: float = 5.0,
    batch_max_wait_ms: float = 50.0,
) -> FastAPI:
    """An OpenAI-compatible FastAPI app serving ``backend``.

    ``model_name`` is the name clients must send (default ``backend.model_name``); the backend's
    own ``model_name`` is accepted too. ``max_batch_size`` caps the prompts batched into one
    backend call (a single request with more prompts still goes as one). An idle server waits
    for company before it starts a batch: until no request has come for ``batch_window_ms``, or
    ``batch_max_wait_ms`` after the first one, or the batch is full.
    """
    backend_name = getattr(backend, "model_name", None)
    served = model_name or (str(backend_name) if backend_name else "default")
    accepted = {served} | ({str(backend_name)} if backend_name else set())
    tokenizer = backend.tokenizer
    created = int(time.time())
    batcher = _Batcher(
        backend, max_batch_size=max_batch_size, window_s=batch_window_ms / 1000, max_wait_s=batch_max_wait_ms / 1000
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(batcher.stop)

    app = FastAPI(title="plyground OpenAI-compatible server", lifespan=lifespan)
    app.state.backend = backend
    app.state.model_name = served

    @app.exception_handler(_APIError)
    async def _api_error(request: Request, exc: _APIError) -> JSONResponse:
        return _error_json(exc.status, exc.message, exc.type, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return _error_json(400, "; ".join(problems) or "invalid request", "invalid_request_error")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error_json(exc.status_code, str(exc.detail), kind)

    def check_common(body: _OpenAIRequest) -> None:
        if body.stream:
            raise _APIError(400, "streaming is not supported", code="unsupported_parameter")
        if body.model is not None and body.model not in accepted:
            raise _APIError(
                404,
                f"The model {body.model!r} does not exist; this server serves {served!r}.",
                type_="not_found_error",
                code="model_not_found",
            )

    def sampling_params(body: _OpenAIRequest, max_tokens: int | None, logprobs: bool) -> SamplingParams:
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        try:
            return SamplingParams(
                max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
                temperature=1.0 if body.temperature is None else body.temperature,
                top_p=1.0 if body.top_p is None else body.top_p,
                n=body.n or 1,
                stop=[s for s in stop if s],
                seed=body.seed,
                logprobs=logprobs,
            )
        except ValueError as exc:
            raise _APIError(400, str(exc)) from exc

    def check_ids(ids: list[int]) -> None:
        if not ids:
            raise _APIError(400, "the prompt is empty")
        try:
            vocab = len(tokenizer)
        except TypeError:
            vocab = None
        bad = [t for t in ids if t < 0 or (vocab is not None and t >= vocab)]
        if bad:
            raise _APIError(400, f"prompt token ids out of range [0, {vocab}): {bad[:5]}")

    async def generate(prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        try:
            return await batcher.submit(prompts, params)
        except ValueError as exc:
            raise _APIError(400, f"the backend rejected the request: {exc}") from exc
        except Exception as exc:
            log.exception("generation failed")
            raise _APIError(500, f"generation failed: {type(exc).__name__}: {exc}", "server_error") from exc

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    weight_version = {"loaded": 0}

    @app.post("/update_weights_from_disk", response_model=None)
    async def update_weights_from_disk(body: WeightsRequest) -> dict[str, Any] | JSONResponse:
        model = getattr(backend, "model", None)
        if model is None:
            return JSONResponse({"success": False, "message": "this backend has no local model"}, status_code=400)

        def load() -> dict[str, Any]:
            with batcher.backend_lock:
                return load_weights_from_disk(model, body.model_path)

        try:
            info = await asyncio.to_thread(load)
        except (OSError, ValueError) as exc:
            return JSONResponse({"success": False, "message": str(exc)}, status_code=400)
        weight_version["loaded"] += 1
        message = f"loaded {info['tensors']} tensors from {body.model_path} in {info['seconds']:.3f} s"
        return {"success": True, "message": message, "num_loads": weight_version["loaded"], **info}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": served, "object": "model", "created": created, "owned_by": "plyground"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> dict[str, Any]:
        check_common(body)
        params = sampling_params(body, body.max_completion_tokens or body.max_tokens, bool(body.logprobs))
        chat: Chat = [
            Message(role="system" if m.role == "developer" else m.role, content=_message_text(m))
            for m in body.messages
        ]
        try:
            prompt_ids = await asyncio.to_thread(_render, backend, chat)
        except Exception as exc:
            raise _APIError(400, f"cannot render the chat: {exc}") from exc
        check_ids(prompt_ids)
        (completions,) = await generate([prompt_ids], params)
        choices = []
        for i, c in enumerate(completions):
            choices.append(
                {
                    "index": i,
                    "message": {"role": "assistant", "content": c.text},
                    "logprobs": _chat_logprobs(tokenizer, c, body.top_logprobs or 0)
                    if body.logprobs
                    else None,
                    "finish_reason": c.finish_reason,
                    "token_ids": list(c.token_ids),
                }
            )
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.model or served,
            "choices": choices,
            "usage": _usage(len(prompt_ids), completions),
            "prompt_token_ids": prompt_ids,
        }

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> dict[str, Any]:
        check_common(body)
        if body.echo:
            raise _APIError(400, "echo is not supported", code="unsupported_parameter")
        want_logprobs = body.logprobs is not None
        params = sampling_params(body, body.max_tokens, want_logprobs)
        raw: list[Any] = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        if raw and isinstance(raw[0], int):
            raw = [raw]
        if not raw:
            raise _APIError(400, "the prompt is empty")
        prompts: list[list[int]] = []
        for p in raw:
            if isinstance(p, str):
                # As vLLM does for raw text: the tokenizer adds its usual special tokens (BOS).
                ids = await asyncio.to_thread(tokenizer.encode, p, add_special_tokens=True)
            else:
                ids = p
            ids = [int(t) for t in ids]
            check_ids(ids)
            prompts.append(ids)
        results = await generate(prompts, params)
        choices = []
        for p_index, (ids, group) in enumerate(zip(prompts, results, strict=True)):
            for j, c in enumerate(group):
                choices.append(
                    {
                        "index": p_index * params.n + j,
                        "text": c.text,
                        "logprobs": _legacy_logprobs(tokenizer, c, body.logprobs or 0)
                        if want_logprobs
                        else None,
                        "finish_reason": c.finish_reason,
                        "token_ids": list(c.token_ids),
                        "prompt_token_ids": ids,
                    }
                )
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.model or served,
            "choices": choices,
            "usage": _usage(sum(len(p) for p in prompts), [c for g in results for c in g]),
        }

    return app


# -- running it -----------------------------------------------------------------------------------


def serve(
    backend_or_model: str | TokenBackend,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_name: str | None = None,
    log_level: str = "warning",
    max_batch_size: int = 32,
    batch_window_ms: float = 5.0,
    batch_max_wait_ms: float = 50.0,
    **backend_kwargs: Any,
) -> None:
    """Serve a backend (or an ``hf`` model name/path, loaded here) until interrupted.

    With a model string the served name defaults to that string, so clients ask for the model
    by the name it was launched with; ``backend_kwargs`` (``device``, ``dtype``, ...) go to
    ``HFBackend``. Binds ``127.0.0.1`` unless told otherwise: the server has no authentication.
    """
    import uvicorn

    owned = isinstance(backend_or_model, str)
    if isinstance(backend_or_model, str):
        from plyground.inference.base import make_backend

        backend_kwargs.setdefault("max_batch_size", max_batch_size)
        backend: TokenBackend = make_backend("hf", model=backend_or_model, **backend_kwargs)  # type: ignore[assignment]
        model_name = model_name or backend_or_model
    else:
        backend = backend_or_model
    app = create_app(
        backend, model_name=model_name, max_batch_size=max_batch_size,
        batch_window_ms=batch_window_ms, batch_max_wait_ms=batch_max_wait_ms,
    )  # fmt: skip
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        if owned:
            backend.close()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``python -m plyground.inference.server`` as a subprocess, up once :meth:`start` returns.

    ``port=None`` picks a free port (and another one if that is taken before the server binds).
    The server's output goes to a temporary log whose tail is quoted when it fails to start.
    """

    def __init__(
        self,
        model: str = "tiny",
        host: str = "127.0.0.1",
        port: int | None = None,
        timeout_s: float = 120.0,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.model = model
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.extra_args = list(extra_args)
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self._log_path: str | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port/v1``, what :class:`OpenAIBackend` wants."""
        if self.port is None:
            raise RuntimeError("the server has not been started")
        return f"http://{self._client_host()}:{self.port}/v1"

    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    def start(self) -> str:
        """Launch and wait until ``/health`` answers; returns :attr:`base_url`."""
        auto_port = self.port is None
        for attempt in range(3):
            if auto_port:
                self.port = _free_port(self._client_host())
            try:
                self._launch()
                self._wait_ready()
                return self.base_url
            except BackendError as exc:
                tail = self.log_tail()
                self.stop()
                if auto_port and attempt < 2 and "address already in use" in tail.lower():
                    continue
                raise exc
        raise AssertionError("unreachable")

    def _launch(self) -> None:
        fd, self._log_path = tempfile.mkstemp(prefix="plyground-server-", suffix=".log")
        env = dict(os.environ if self.env is None else self.env)
        # The child must import this very checkout, installed or not.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        env.setdefault("PYTHONUNBUFFERED", "1")
        cmd = [
            sys.executable, "-m", "plyground.inference.server",
            "--model", self.model, "--host", self.host, "--port", str(self.port),
            *self.extra_args,
        ]  # fmt: skip
        with os.fdopen(fd, "wb") as logfile:
            self.process = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, env=env)

    def _wait_ready(self) -> None:
        import httpx

        assert self.process is not None
        url = f"http://{self._client_host()}:{self.port}/health"
        deadline = time.monotonic() + self.timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                raise BackendError(
                    f"the server for model {self.model!r} exited with code {code} before it was ready:\n"
                    f"{self.log_tail()}"
                )
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BackendError(
                    f"the server for model {self.model!r} did not answer {url} within {self.timeout_s:g} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines the server printed."""
        if not self._log_path or not os.path.exists(self._log_path):
            return ""
        with open(self._log_path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit within 10 s) and remove its log."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log_path:
            with contextlib.suppress(OSError):
                os.unlink(self._log_path)
            self._log_path = None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def start_server(
    model: str = "tiny",
    host: str = "127.0.0.1",
    port: int | None = None,
    timeout_s: float = 120.0,
    extra_args: Sequence[str] = (),
) -> Iterator[str]:
    """Run a server subprocess for ``model``; yields its base URL and stops it on exit.

    Raises :class:`BackendError`, with the server's last output, if it dies or is not healthy
    within ``timeout_s``.
    """
    server = ServerProcess(model=model, host=host, port=port, timeout_s=timeout_s, extra_args=extra_args)
    with server:
        yield server.base_url


class PlygroundServerBackend(ServerBackend):
    """Replicas of this module's own server (``python -m plyground.inference.server``) as a backend.

    The same routing, restart and weight-sync machinery as the vLLM and SGLang backends
    (:class:`~plyground.inference.vllm.ServerBackend`), over the ``hf`` model served here: for
    machines without vLLM, and for tests of the server path against a real model. Weights are
    pushed with ``POST /update_weights_from_disk``. ``device``, ``dtype`` and ``max_batch_size`` go
    to the server.
    """

    name = "plyground-server"
    return_token_ids = True

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        dtype: str | None = None,
        max_batch_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.device = device
        self.dtype = dtype
        self.max_batch_size = max_batch_size
        super().__init__(model, **kwargs)

    def server_command(self, port: int) -> list[str]:
        cmd = [sys.executable, "-m", "plyground.inference.server", "--model", self.model,
               "--model-name", self.model_name, "--host", self.host, "--port", str(port)]  # fmt: skip
        if self.device:
            cmd += ["--device", self.device]
        if self.dtype:
            cmd += ["--dtype", self.dtype]
        if self.max_batch_size:
            cmd += ["--max-batch-size", str(self.max_batch_size)]
        return cmd

    def _push_to_replica(self, replica: Any, sync: dict[str, Any]) -> None:
        answer = self._post(replica, "/update_weights_from_disk", {"model_path": sync["path"]})
        if isinstance(answer, dict) and answer.get("success") is False:
            raise BackendError(f"replica {replica.index} refused the weights: {answer.get('message')}")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m plyground.inference.server --model tiny --port 8000``."""
    parser = argparse.ArgumentParser(prog="python -m plyground.inference.server", description=__doc__)
    parser.add_argument("--model", default="default", help="hf model: 'default', 'tiny' or a path")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model-name", default=None, help="name clients use (default: --model)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--max-batch-size", type=int, default=32, help="most sequences generated together")
    parser.add_argument("--batch-window-ms", type=float, default=5.0,
                        help="an idle server starts a batch once no request has come for this long")  # fmt: skip
    parser.add_argument("--batch-max-wait-ms", type=float, default=50.0,
                        help="... or this long after the batch's first request")  # fmt: skip
    args = parser.parse_args(argv)
    kwargs = {k: v for k, v in (("device", args.device), ("dtype", args.dtype)) if v is not None}
    logging.basicConfig(level=args.log_level.upper())
    serve(
        args.model,
        host=args.host,
        port=args.port,
        model_name=args.model_name,
        log_level=args.log_level,
        max_batch_size=args.max_batch_size,
        batch_window_ms=args.batch_window_ms,
        batch_max_wait_ms=args.batch_max_wait_ms,
        **kwargs,
    )


if __name__ == "__main__":
    main()
