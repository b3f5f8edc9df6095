"""The rollout collector: many episodes at once against one backend, as Trajectories.

Episodes run as asyncio tasks; blocking env calls go to worker threads, and the model calls of
all episodes that are waiting at the same moment are merged into one batched backend call
(``_Batcher``), which is what makes concurrency pay on a local model.

Failures are pinned to a boundary and recorded on the trajectory (``Trajectory.error``):
an env that raises ends that episode only; token bookkeeping that disagrees with the template ends
that episode only; a backend error (server down, time-out) is fatal to the run by default because
every later episode would fail the same way: the collector stops starting episodes, finishes none
that are half done, and raises ``BackendError`` after handing every finished trajectory to
``on_trajectory``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from plyground.envs.core import TextEnv
from plyground.errors import BackendError, PlygroundError, TokenMismatchError
from plyground.inference.base import Backend, TokenBackend, mix_seed
from plyground.rollout.agent import ActionParser, build_chat, parse_action
from plyground.rollout.tokens import TokenLedger
from plyground.types import Chat, Completion, Message, SamplingParams, Trajectory, Turn


@dataclass
class RolloutConfig:
    """How episodes are played."""

    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=64))
    """Sampling for every model turn (``n`` is forced to 1: one action per step)."""
    concurrency: int = 8
    """Episodes in flight at once."""
    max_turns: int | None = None
    """Cap on turns per episode; default: the env's own ``max_turns``."""
    track_tokens: bool | None = None
    """Record ids, loss mask and logprobs (``Trajectory.tokens``); default: when the backend
    has a local tokenizer."""
    action_parser: ActionParser = parse_action
    """Turns a model reply into the env action."""
    max_batch_size: int = 32
    """Most generations merged into one backend call."""
    fatal_backend_errors: bool = True
    """Stop the run on a backend error (else record it on the trajectory and go on)."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.sampling.n != 1:
            self.sampling = replace(self.sampling, n=1)


@dataclass(frozen=True)
class EpisodeSpec:
    """Which episode to play: an env seed, an optional task, and bookkeeping for pass@k."""

    seed: int
    episode: int = 0
    sample: int = 0
    options: dict[str, Any] | None = None


_Request = tuple["Chat | list[int]", "asyncio.Future[Completion]", "tuple[int, ...]"]


def _takes_seeds(method: Any) -> bool:
    """Whether ``method`` takes one seed per prompt (``seeds=``)."""
    try:
        return "seeds" in inspect.signature(method).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin, a C extension)
        return False


def _takes_row_seeds(backend: Backend) -> bool:
    """Whether ``backend.generate`` (and ``generate_ids``) take one seed per prompt (``seeds=``)."""
    for name in ("generate", "generate_ids"):
        method = getattr(backend, name, None)
        if method is not None and not _takes_seeds(method):
            return False
    return callable(getattr(backend, "generate", None))


class _Batcher:
    """Merges concurrent single-prompt generations into batched backend calls.

    A local backend gets one call at a time: prompts that arrive while it works wait and go
    together in the next call. A backend that serves concurrent calls (``parallel_calls``: the
    inference-server backends, which batch on the server) gets each batch at once, so an episode
    never waits for another batch's whole generation just because it reached the model later.

    Seeded sampling: which prompts share a call depends on thread timing. A backend that takes one
    seed per prompt (``seeds=`` on ``generate`` and ``generate_ids``: ``hf``, ``openai`` and the
    server backends ``vllm``, ``sglang``, ``plyground-server``) gets a seed made from the run's
    seed and the request's own key (env seed, episode, sample, turn), so each episode draws the
    same tokens however the batches fall, and a rerun with concurrency plays the same episodes
    (given a server that honours ``seed`` per request, whatever else it batches with it). Its
    async method is awaited when it takes ``seeds=`` too, else the sync one runs in a worker
    thread. Other backends get one seed per call.
    """

    def __init__(self, backend: Backend, params: SamplingParams, max_batch_size: int) -> None:
        self.backend = backend
        self.params = params
        self.max_batch_size = max_batch_size
        self.parallel = bool(getattr(backend, "parallel_calls", False))
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self.calls = 0
        self.row_seeds = _takes_row_seeds(backend)
        # Async methods that take per-prompt seeds too are awaited, not run in a worker thread.
        self.async_row_seeds = {
            name
            for name in ("agenerate", "agenerate_ids")
            if self.row_seeds and _takes_seeds(getattr(backend, name, None))
        }

    async def generate(self, prompt: Chat | list[int], key: tuple[int, ...]) -> Completion:
        """One completion for ``prompt``; ``key`` names the request (env seed, episode, sample, turn)
        for per-request seeding."""
        if self._worker is None:
            self._worker = asyncio.create_task(self._run())
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        await self._queue.put((prompt, future, key))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(0)  # let every episode that is ready enqueue its prompt
            while not self._queue.empty() and len(batch) < self.max_batch_size:
                batch.append(self._queue.get_nowait())
            self.calls += 1
            params = self.params
            seeds: list[int | None] | None = None
            if params.seed is not None and self.row_seeds:
                seeds = [mix_seed(params.seed, *key) for _, _, key in batch]
            elif params.seed is not None:
                # One seed per call, not the same seed every call: otherwise the K samples of an
                # episode that land in different batches would be identical draws.
                params = replace(params, seed=(params.seed + 1_000_003 * self.calls) % 2**31)
            if self.parallel:
                task = asyncio.create_task(self._call(batch, params, seeds))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            else:
                await self._call(batch, params, seeds)

    async def _call(self, batch: list[_Request], params: SamplingParams, seeds: list[int | None] | None = None) -> None:
        prompts = [p for p, _, _ in batch]
        try:
            token_ids = bool(prompts) and isinstance(prompts[0], list) and bool(prompts[0]) and isinstance(prompts[0][0], int)
            if token_ids:
                assert isinstance(self.backend, TokenBackend)
            if seeds is not None:
                name = "agenerate_ids" if token_ids else "agenerate"
                if name in self.async_row_seeds:
                    results = await getattr(self.backend, name)(prompts, params, seeds=seeds)
                else:
                    generate: Any = self.backend.generate_ids if token_ids else self.backend.generate  # type: ignore[attr-defined]
                    results = await asyncio.to_thread(generate, prompts, params, seeds=seeds)
            elif token_ids:
                results = await self.backend.agenerate_ids(prompts, params)  # type: ignore[attr-defined, arg-type]
            else:
                results = await self.backend.agenerate(prompts, params)  # type: ignore[arg-type]
            for (_, future, _), completions in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(completions[0])
        except Exception as exc:
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)

    async def aclose(self) -> None:
        tasks = [t for t in (self._worker, *self._in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def play_episode(
    env: TextEnv,
    generate: Callable[[Chat | list[int], tuple[int, ...]], Awaitable[Completion]],
    spec: EpisodeSpec,
    config: RolloutConfig,
    env_id: str,
    tokenizer: Any = None,
) -> Trajectory:
    """Play one episode; env and token failures are recorded on the trajectory, backend
    failures are raised (with the partial trajectory attached as ``exc.trajectory``)."""
    start = time.perf_counter()
    traj = Trajectory(env_id=env_id, seed=spec.seed, metadata={"episode": spec.episode, "sample": spec.sample})
    task = (spec.options or {}).get("task")
    if task is not None:
        traj.task_id = getattr(task, "id", None)
    ledger = TokenLedger(tokenizer) if tokenizer is not None else None
    replies: list[str] = []
    max_turns = min(env.max_turns, config.max_turns or env.max_turns)
    try:
        observation, info = await asyncio.to_thread(env.reset, seed=spec.seed, options=spec.options)
    except Exception as exc:
        traj.error = f"env: reset raised {type(exc).__name__}: {exc}"
        return _finish(traj, start)
    for turn_index in range(max_turns):
        chat = build_chat(env.instructions, traj.turns, observation, replies)
        try:
            prompt: Chat | list[int] = ledger.prompt(chat, turn_index) if ledger is not None else chat
        except TokenMismatchError as exc:
            traj.error = exc.tag()
            break
        try:
            completion = await generate(prompt, (spec.seed, spec.episode, spec.sample, turn_index))
        except PlygroundError as exc:
            if isinstance(exc, BackendError) and config.fatal_backend_errors:
                exc.trajectory = _finish(traj, start)  # type: ignore[attr-defined]
                raise
            traj.error = exc.tag()
            break
        except Exception as exc:
            if config.fatal_backend_errors:
                raise BackendError(f"generation failed: {type(exc).__name__}: {exc}") from exc
            traj.error = f"backend: {type(exc).__name__}: {exc}"
            break
        reply = completion.text
        if ledger is not None:
            try:
                reply = ledger.add_completion(completion, turn_index)
            except TokenMismatchError as exc:
                traj.error = exc.tag()
                break
        replies.append(reply)
        action = config.action_parser(completion.text)
        try:
            next_obs, reward, terminated, truncated, info = await asyncio.to_thread(env.step, action)
        except Exception as exc:
            traj.turns.append(Turn(observation, action, 0.0, completion, {"valid_action": False}))
            traj.error = f"env: step raised {type(exc).__name__}: {exc}"
            break
        traj.turns.append(Turn(observation, action, reward, completion, _jsonable_info(info)))
        traj.total_reward += reward
        traj.success = bool(info.get("success", False))
        observation = next_obs
        if terminated or truncated:
            traj.metadata["terminated"] = terminated
            traj.metadata["truncated"] = truncated
            break
    else:
        traj.metadata["truncated"] = True
    if ledger is not None and traj.error is None and traj.turns:
        final_chat = build_chat(env.instructions, traj.turns[:-1], traj.turns[-1].observation, replies[:-1])
        final_chat.append(Message("assistant", replies[-1]))
        try:
            ledger.close_turn(final_chat, len(traj.turns) - 1)
            ledger.verify(final_chat)
        except TokenMismatchError as exc:
            traj.error = exc.tag()
    if ledger is not None:
        traj.tokens = ledger.record()
    return _finish(traj, start)


def _finish(traj: Trajectory, start: float) -> Trajectory:
    traj.metadata["wall_s"] = round(time.perf_counter() - start, 4)
    return traj


def _jsonable_info(info: dict[str, Any]) -> dict[str, Any]:
    """Keep what JSON can hold; an env's info may carry arbitrary objects."""
    import json

    out: dict[str, Any] = {}
    for key, value in info.items():
        try:
            json.dumps(value)
            out[key] = value
        except (TypeError, ValueError):
            out[key] = repr(value)
    return out


async def collect(
    env_factory: Callable[[], TextEnv],
    backend: Backend,
    episodes: Iterable[EpisodeSpec],
    config: RolloutConfig | None = None,
    env_id: str = "",
    on_trajectory: Callable[[Trajectory], None] | None = None,
) -> list[Trajectory]:
    """Play ``episodes`` with at most ``config.concurrency`` in flight; returns trajectories in
    completion order and hands each to ``on_trajectory`` as soon as it finishes."""
    config = config or RolloutConfig()
    track = config.track_tokens
    if track is None:
        track = isinstance(backend, TokenBackend)
    if track and not isinstance(backend, TokenBackend):
        raise ValueError(f"track_tokens needs a backend with a tokenizer; {backend.name!r} has none")
    tokenizer = backend.tokenizer if track else None  # type: ignore[attr-defined]
    batcher = _Batcher(backend, config.sampling, config.max_batch_size)
    all_envs = [await asyncio.to_thread(env_factory) for _ in range(config.concurrency)]
    if not env_id and all_envs[0].spec is not None:
        env_id = all_envs[0].spec.id.removeprefix("plyground/")
    pool: asyncio.Queue[TextEnv] = asyncio.Queue()
    for env in all_envs:
        pool.put_nowait(env)
    results: list[Trajectory] = []
    pending = list(episodes)
    fatal: list[BaseException] = []

    async def worker() -> None:
        while pending and not fatal:
            spec = pending.pop(0)
            env = await pool.get()
            try:
                traj = await play_episode(env, batcher.generate, spec, config, env_id, tokenizer)
            except BackendError as exc:
                fatal.append(exc)
                return
            finally:
                pool.put_nowait(env)
            results.append(traj)
            if on_trajectory is not None:
                on_trajectory(traj)

    try:
        await asyncio.gather(*(worker() for _ in range(config.concurrency)))
    finally:
        await batcher.aclose()
        for env in all_envs:
            # Closing is best effort: the episodes are already saved.
            with contextlib.suppress(Exception):
                env.close()
    if fatal:
        raise fatal[0]
    return results


def collect_sync(
    env_factory: Callable[[], TextEnv],
    backend: Backend,
    episodes: Iterable[EpisodeSpec],
    config: RolloutConfig | None = None,
    env_id: str = "",
    on_trajectory: Callable[[Trajectory], None] | None = None,
) -> list[Trajectory]:
    """``collect`` for callers without an event loop."""
    return asyncio.run(collect(env_factory, backend, episodes, config, env_id, on_trajectory))


def episode_specs(num_episodes: int, samples: int = 1, base_seed: int = 0) -> list[EpisodeSpec]:
    """``num_episodes`` x ``samples`` specs; the samples of one episode share its env seed."""
    return [
        EpisodeSpec(seed=base_seed + e, episode=e, sample=s) for e in range(num_episodes) for s in range(samples)
    ]

