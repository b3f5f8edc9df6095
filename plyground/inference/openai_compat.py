"""``OpenAIBackend``: sample from any OpenAI-compatible server (vLLM, SGLang, llama.cpp, ours).

Requests go through the official ``openai`` client with its own retries switched off: this
backend retries connection errors, timeouts, HTTP 429 and 5xx itself (exponential backoff with
jitter) so that the final error can say which server, which model and what went wrong.

Two request modes:

* ``mode="chat"`` posts each chat to ``/chat/completions``; the server applies its chat template.
* ``mode="completions"`` renders each chat to a prompt (``render``: text or token ids) and posts it
  to ``/completions``. ``generate_ids`` always uses ``/completions`` with token-id prompts, which
  keeps the exact tokens when the server accepts them (vLLM and ``plyground.inference.server``).

Token ids come back only where the server gives them: our server always does; vLLM does when
asked (``return_token_ids=True``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

import httpx
import openai

from plyground.errors import BackendError
from plyground.types import Chat, Completion, FinishReason, SamplingParams

__all__ = ["OpenAIBackend", "default_render"]

log = logging.getLogger(__name__)

R = TypeVar("R")

Mode = Literal["chat", "completions"]
Render = Callable[[Chat], "str | list[int]"]

_MAX_BACKOFF_S = 30.0


def default_render(chat: Chat) -> str:
    """The prompt ``mode="completions"`` sends when no ``render`` is given.

    A single message is sent verbatim (the usual raw-text completion use); a longer chat becomes
    a plain ``Role: content`` transcript that ends with ``Assistant:``. Pass the model's own chat
    template as ``render`` (e.g. ``HFBackend.render``) when the exact prompt matters.
    """
    if len(chat) == 1:
        return chat[0].content
    lines = [f"{m.role.capitalize()}: {m.content}" for m in chat]
    return "\n\n".join([*lines, "Assistant:"])


def _prompt_params(params: SamplingParams, index: int) -> SamplingParams:
    """The sampling parameters of prompt ``index`` of a call: a seeded call gives each prompt its
    own seed, so repeated prompts (a GRPO group's first turn) are independent draws, not copies.
    The spacing leaves room for the top-up requests' ``seed + k`` shifts."""
    if params.seed is None or index == 0:
        return params
    return replace(params, seed=(params.seed + 7919 * index) % 2**31)


def _check_seeds(seeds: Sequence[int | None], count: int) -> None:
    """``seeds`` must name one seed per prompt (``None``: that prompt unseeded)."""
    if len(seeds) != count:
        raise ValueError(f"{len(seeds)} seeds for {count} prompts: give one seed per prompt")


def _each_prompt_params(
    params: SamplingParams, count: int, seeds: Sequence[int | None] | None
) -> list[SamplingParams]:
    """The sampling parameters of each of a call's ``count`` prompts: ``seeds[i]`` for prompt ``i``
    when ``seeds`` is given (``params.seed`` is then ignored), else :func:`_prompt_params`."""
    if seeds is None:
        return [_prompt_params(params, i) for i in range(count)]
    _check_seeds(seeds, count)
    return [replace(params, seed=seed) for seed in seeds]


@dataclass
class _LoopState:
    """What must live on one event loop: the HTTP client and the concurrency gate."""

    client: openai.AsyncOpenAI
    semaphore: asyncio.Semaphore


class _LoopThread:
    """A private event loop in a daemon thread, so ``generate`` works from sync code and from
    inside someone else's running loop alike, and keeps its connection pool between calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="plyground-openai-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, R]) -> R:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            # Ctrl-C in the caller must not leave requests running in the background.
            future.cancel()
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


class OpenAIBackend:
    """A :class:`~plyground.inference.base.Backend` over an OpenAI-compatible HTTP server.

    Args:
        model: the model name the server serves (``/v1/models``).
        base_url: e.g. ``http://127.0.0.1:8000/v1``; default ``$OPENAI_BASE_URL``, else OpenAI's.
        api_key: default ``$OPENAI_API_KEY``, else ``"EMPTY"`` (local servers ignore it).
        mode: ``"chat"`` (server-side chat template) or ``"completions"`` (``render`` here).
        max_concurrency: requests in flight at once, per event loop.
        timeout_s: per request.
        max_retries: retries after the first attempt, for connection errors, timeouts, 429, 5xx.
        backoff_s: first retry delay; doubles each retry, with +-50 % jitter.
        return_token_ids: ask the server for token ids (vLLM's ``return_token_ids`` extension).
        render: chat -> prompt text or token ids for ``mode="completions"``
            (default :func:`default_render`).
    """

    name = "openai"
    # Calls may overlap: the server batches them (the rollout collector reads this).
    parallel_calls = True

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        mode: Mode = "chat",
        max_concurrency: int = 16,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        return_token_ids: bool = False,
        render: Render | None = None,
    ) -> None:
        if mode not in ("chat", "completions"):
            raise ValueError(f"mode must be 'chat' or 'completions', got {mode!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.model = model
        self.model_name = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip(
            "/"
        )
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.mode: Mode = mode
        self.max_concurrency = max_concurrency
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.backoff_s = float(backoff_s)
        self.return_token_ids = return_token_ids
        self.render: Render = render or default_render
        # httpx connection pools and asyncio semaphores belong to the loop that made them, so each
        # loop that calls us gets its own; the weak keys let finished loops drop out.
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._runner: _LoopThread | None = None

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, mode={self.mode!r})"

    # -- public API -------------------------------------------------------------------------------

    def generate(
        self, chats: Sequence[Chat], params: SamplingParams, seeds: Sequence[int | None] | None = None
    ) -> list[list[Completion]]:
        """``params.n`` completions per chat, in order; raises :class:`BackendError`.

        Seeds: ``seeds[i]`` (one per chat, ``None`` = unseeded) is chat ``i``'s request seed, so a
        chat samples the same whichever others share the call (on a server that honours ``seed``
        per request). Without ``seeds``, a seeded call gives chat ``i`` the seed
        ``params.seed + 7919 * i``. Servers that ignore ``n`` are topped up with further requests
        whose seeds are shifted by the number of choices already in hand.
        """
        if seeds is not None:
            _check_seeds(seeds, len(chats))
        return self._run_sync(self.agenerate(chats, params, seeds=seeds))

    async def agenerate(
        self, chats: Sequence[Chat], params: SamplingParams, seeds: Sequence[int | None] | None = None
    ) -> list[list[Completion]]:
        """Like :meth:`generate`; the chats' requests run concurrently (``max_concurrency``)."""
        each = _each_prompt_params(params, len(chats), seeds)
        if self.mode == "chat":
            return await self._gather([self._chat(chat, p) for chat, p in zip(chats, each, strict=True)])
        return await self._gather(
            [self._complete(self.render(chat), p) for chat, p in zip(chats, each, strict=True)]
        )

    def generate_ids(
        self, prompts: Sequence[list[int]], params: SamplingParams, seeds: Sequence[int | None] | None = None
    ) -> list[list[Completion]]:
        """Sample from token-id prompts through ``/completions`` (whatever ``mode`` is); ``seeds``
        as in :meth:`generate`."""
        if seeds is not None:
            _check_seeds(seeds, len(prompts))
        return self._run_sync(self.agenerate_ids(prompts, params, seeds=seeds))

    async def agenerate_ids(
        self, prompts: Sequence[list[int]], params: SamplingParams, seeds: Sequence[int | None] | None = None
    ) -> list[list[Completion]]:
        """Like :meth:`generate_ids`, awaitable."""
        each = _each_prompt_params(params, len(prompts), seeds)
        return await self._gather([self._complete(list(p), q) for p, q in zip(prompts, each, strict=True)])

    def health(self, timeout_s: float = 5.0) -> bool:
        """Whether ``GET {base_url}/models`` answers 200 within ``timeout_s``."""
        try:
            response = httpx.get(
                f"{self.base_url}/models",
                headers={"Authorization": f"Bearer {self.api_key}"},
                timeout=timeout_s,
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def close(self) -> None:
        """Close the HTTP clients and the private loop; a later call opens new ones."""
        with self._lock:
            states = list(self._states.items())
            self._states = weakref.WeakKeyDictionary()
            runner, self._runner = self._runner, None
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, state in states:
            if runner is not None and loop is runner.loop:
                try:
                    runner.run(state.client.close())
                except Exception:  # closing is best effort; a dead connection is not an error
                    log.debug("closing the openai client failed", exc_info=True)
            elif loop.is_closed():
                continue
            elif loop is current:
                # close() is sync, so inside our own running loop we can only schedule it.
                loop.create_task(state.client.close())
            elif loop.is_running():
                # Another thread's loop (a server backend's, say): wait for the close to run there,
                # or a loop stopped right after would drop it (an unclosed client, "never awaited").
                try:
                    asyncio.run_coroutine_threadsafe(state.client.close(), loop).result(timeout=5.0)
                except Exception:
                    log.debug("closing the openai client failed", exc_info=True)
            else:
                try:
                    loop.run_until_complete(state.client.close())
                except Exception:
                    log.debug("closing the openai client failed", exc_info=True)
        if runner is not None:
            runner.stop()

    async def aclose(self) -> None:
        """Close the client of the running loop (and everything else, as :meth:`close`)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.pop(loop, None)
        if state is not None:
            await state.client.close()
        await asyncio.to_thread(self.close)

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------------

    def _run_sync(self, coro: Coroutine[Any, Any, R]) -> R:
        with self._lock:
            if self._runner is None:
                self._runner = _LoopThread()
            runner = self._runner
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is runner.loop:
            coro.close()
            raise RuntimeError("OpenAIBackend.generate called from its own loop; await agenerate instead")
        return runner.run(coro)

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._states.get(loop)
            if state is None:
                client = openai.AsyncOpenAI(
                    base_url=self.base_url,
                    api_key=self.api_key,
                    timeout=self.timeout_s,
                    max_retries=0,  # we retry ourselves, with a message that names the server
                )
                state = _LoopState(client, asyncio.Semaphore(self.max_concurrency))
                self._states[loop] = state
            return state

    @staticmethod
    async def _gather(coros: list[Coroutine[Any, Any, R]]) -> list[R]:
        tasks = [asyncio.ensure_future(c) for c in coros]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            # One failed chat fails the call; the others' requests are not left running.
            for task in tasks:
                task.cancel()
            raise

    def _sampling_kwargs(self, params: SamplingParams, n: int, seed: int | None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": n,
        }
        if params.stop:
            kwargs["stop"] = list(params.stop)
        if seed is not None:
            kwargs["seed"] = seed
        if self.return_token_ids:
            kwargs["extra_body"] = {"return_token_ids": True}
        return kwargs

    async def _sample(
        self, params: SamplingParams, request: Callable[[int, int | None], Awaitable[list[Completion]]]
    ) -> list[Completion]:
        """Ask for ``n`` choices; top up with further requests when a server returns fewer
        (llama.cpp ignores ``n``). Top-up requests get shifted seeds so they are not copies."""
        out: list[Completion] = []
        while len(out) < params.n:
            seed = None if params.seed is None else params.seed + len(out)
            got = await request(params.n - len(out), seed)
            if not got:
                raise BackendError(self._where(f"{self.base_url} returned no choices"))
            out.extend(got)
        return out[: params.n]

    async def _chat(self, chat: Chat, params: SamplingParams) -> list[Completion]:
        messages: Any = [m.as_openai() for m in chat]

        async def request(n: int, seed: int | None) -> list[Completion]:
            kwargs = self._sampling_kwargs(params, n, seed)
            if params.logprobs:
                kwargs["logprobs"] = True
            client = self._state().client
            response = await self._retrying(
                lambda: client.chat.completions.create(messages=messages, **kwargs)
            )
            top_prompt = _int_list(_extra(response).get("prompt_token_ids"))
            return [_from_chat_choice(c, top_prompt) for c in self._choices(response)]

        return await self._sample(params, request)

    async def _complete(self, prompt: str | list[int], params: SamplingParams) -> list[Completion]:
        async def request(n: int, seed: int | None) -> list[Completion]:
            kwargs = self._sampling_kwargs(params, n, seed)
            if params.logprobs:
                kwargs["logprobs"] = 1
            client = self._state().client
            response = await self._retrying(lambda: client.completions.create(prompt=prompt, **kwargs))
            top_prompt = _int_list(_extra(response).get("prompt_token_ids"))
            if not top_prompt and isinstance(prompt, list):
                top_prompt = list(prompt)
            return [_from_text_choice(c, top_prompt) for c in self._choices(response)]

        return await self._sample(params, request)

    async def _retrying(self, call: Callable[[], Awaitable[R]]) -> R:
        state = self._state()
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                async with state.semaphore:
                    return await call()
            except openai.APITimeoutError as exc:
                error: Exception = exc
                retryable = True
                what = f"request to {self.base_url} timed out after {self.timeout_s:g} s"
            except openai.APIConnectionError as exc:
                error, retryable = exc, True
                cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
                what = f"cannot connect to {self.base_url} (is the server running?){cause}"
            except openai.APIStatusError as exc:
                error = exc
                status = exc.status_code
                retryable = status == 429 or status >= 500
                what = f"HTTP {status} from {self.base_url}: {_error_message(exc)}"
                retry_after = _retry_after(exc.response)
            except openai.OpenAIError as exc:
                raise BackendError(self._where(f"bad response from {self.base_url}: {exc}")) from exc
            if not retryable or attempt >= self.max_retries:
                tries = f" (gave up after {attempt + 1} attempts)" if attempt else ""
                raise BackendError(self._where(what + tries)) from error
            delay = min(self.backoff_s * 2**attempt, _MAX_BACKOFF_S) * random.uniform(0.5, 1.5)
            if retry_after is not None:
                delay = max(delay, min(retry_after, _MAX_BACKOFF_S))
            log.warning("%s; retry %d/%d in %.2f s", self._where(what), attempt + 1, self.max_retries, delay)
            await asyncio.sleep(delay)
            attempt += 1

    def _choices(self, response: Any) -> list[Any]:
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list):
            # e.g. a proxy answering 200 with an HTML page
            raise BackendError(
                self._where(f"unexpected response from {self.base_url}: {str(response)[:200]!r}")
            )
        return sorted(choices, key=lambda c: getattr(c, "index", 0) or 0)

    def _where(self, what: str) -> str:
        return f"openai backend (model {self.model!r}): {what}"


# -- response parsing -----------------------------------------------------------------------------


def _finish_reason(reason: Any) -> FinishReason:
    if reason == "length":
        return "length"
    if reason in ("error", "abort"):
        return "error"
    # "stop", None, and the tool/filter reasons all mean the model stopped on its own terms.
    return "stop"


def _extra(obj: Any) -> dict[str, Any]:
    """Fields a response carries beyond OpenAI's schema (vLLM's token ids live there)."""
    extra = getattr(obj, "model_extra", None)
    return extra if isinstance(extra, dict) else {}


def _int_list(value: Any) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
        return []
    return list(value)


def _from_chat_choice(choice: Any, top_prompt: list[int]) -> Completion:
    message = getattr(choice, "message", None)
    text = (getattr(message, "content", None) or "") if message is not None else ""
    logprobs: list[float] = []
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if content:
        logprobs = [float(t.logprob) for t in content]
    extra = _extra(choice)
    return Completion(
        text=text,
        token_ids=_int_list(extra.get("token_ids")),
        logprobs=logprobs,
        prompt_token_ids=_int_list(extra.get("prompt_token_ids")) or top_prompt,
        finish_reason=_finish_reason(getattr(choice, "finish_reason", None)),
    )


def _from_text_choice(choice: Any, top_prompt: list[int]) -> Completion:
    logprobs: list[float] = []
    token_logprobs = getattr(getattr(choice, "logprobs", None), "token_logprobs", None)
    if token_logprobs:
        logprobs = [float(lp) for lp in token_logprobs if lp is not None]
    extra = _extra(choice)
    return Completion(
        text=getattr(choice, "text", None) or "",
        token_ids=_int_list(extra.get("token_ids")),
        logprobs=logprobs,
        prompt_token_ids=_int_list(extra.get("prompt_token_ids")) or top_prompt,
        finish_reason=_finish_reason(getattr(choice, "finish_reason", None)),
    )


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if "detail" in body:
            return str(body["detail"])
    try:
        text = exc.response.text.strip()
    except Exception:
        text = ""
    return text[:500] or exc.message


def _retry_after(response: Any) -> float | None:
    try:
        value = response.headers.get("retry-after")
        return float(value) if value is not None else None
    except (AttributeError, TypeError, ValueError):
        return None
