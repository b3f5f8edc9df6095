"""Asynchronous rollouts: collection keeps going while the trainer trains.

:class:`AsyncRollout` runs the rollout collector in a background thread (its own event loop) and
hands finished trajectories to the trainer through a bounded queue. The trainer calls
:meth:`AsyncRollout.get_batch` for its next batch and :meth:`AsyncRollout.set_version` after each
update (the version it has just pushed to the backend).

Policy versions. Every model call records the backend's ``policy_version`` at the moment the call
was made; each turn gets it in ``Turn.info["policy_version"]`` and each trajectory gets
``metadata["policy_version"]`` (the *oldest* version among its turns: the one that bounds its
staleness) and ``metadata["policy_versions"]`` (per turn). Trainers use these for importance
corrections (the sampling log-probabilities are on each completion).

Staleness bound. A sample generated under version ``v`` and trained on at version ``t`` has lag
``t - v``. With ``max_staleness = k``:

* the producer starts no new episode while the backend's weights are more than ``k`` versions
  behind the trainer, nor while the queue is full (the bounded queue is the back-pressure);
* :meth:`get_batch` never returns a trajectory whose lag exceeds ``k``: such a trajectory (possible
  when an episode runs across several updates) goes to :attr:`AsyncRollout.stale` instead, counted
  and kept, not silently dropped.

``k = 0`` is synchronous on-policy training with collection overlapping only within one version.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from plyground.envs.core import TextEnv
from plyground.inference.base import Backend
from plyground.rollout.collector import EpisodeSpec, RolloutConfig, collect
from plyground.types import Chat, Completion, SamplingParams, Trajectory

__all__ = ["AsyncRollout", "AsyncRolloutStats", "VersionedBackend", "policy_lag"]


def _backend_version(backend: Any) -> int:
    return int(getattr(backend, "policy_version", 0) or 0)


class VersionedBackend:
    """Wraps a backend and remembers, for every completion it returns, the backend's
    ``policy_version`` when the request was sent."""

    def __init__(self, backend: Backend, version: Callable[[], int] | None = None) -> None:
        self.inner = backend
        self.name = backend.name
        self._version = version or (lambda: _backend_version(backend))
        self._versions: dict[int, int] = {}
        self._lock = threading.Lock()
        tokenizer = getattr(backend, "tokenizer", None)
        if tokenizer is not None and callable(getattr(backend, "agenerate_ids", None)):
            self.tokenizer = tokenizer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _remember(self, results: list[list[Completion]], version: int) -> list[list[Completion]]:
        with self._lock:
            for group in results:
                for completion in group:
                    self._versions[id(completion)] = version
        return results

    def version_of(self, completion: Completion) -> int | None:
        with self._lock:
            return self._versions.pop(id(completion), None)

    def generate(self, chats: Sequence[Chat], params: SamplingParams) -> list[list[Completion]]:
        version = self._version()
        return self._remember(self.inner.generate(chats, params), version)

    async def agenerate(self, chats: Sequence[Chat], params: SamplingParams) -> list[list[Completion]]:
        version = self._version()
        return self._remember(await self.inner.agenerate(chats, params), version)

    async def agenerate_ids(self, prompts: Sequence[list[int]], params: SamplingParams) -> list[list[Completion]]:
        version = self._version()
        return self._remember(await self.inner.agenerate_ids(prompts, params), version)  # type: ignore[attr-defined]

    def generate_ids(self, prompts: Sequence[list[int]], params: SamplingParams) -> list[list[Completion]]:
        version = self._version()
        return self._remember(self.inner.generate_ids(prompts, params), version)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.inner.close()

    def stamp(self, traj: Trajectory) -> Trajectory:
        """Write the versions of ``traj``'s completions onto its turns and metadata."""
        versions: list[int] = []
        for turn in traj.turns:
            if turn.completion is None:
                continue
            version = self.version_of(turn.completion)
            if version is None:
                version = self._version()
            turn.info["policy_version"] = version
            versions.append(version)
        traj.metadata["policy_versions"] = versions
        traj.metadata["policy_version"] = min(versions) if versions else self._version()
        return traj


def policy_lag(traj: Trajectory, trainer_version: int) -> int:
    """How many updates old the oldest turn of ``traj`` is at ``trainer_version``."""
    return int(trainer_version) - int(traj.metadata.get("policy_version", trainer_version))


@dataclass
class AsyncRolloutStats:
    produced: int = 0
    consumed: int = 0
    stale: int = 0
    max_queue: int = 0
    waits_for_weights: int = 0
    lags: list[int] = field(default_factory=list)


class AsyncRollout:
    """Background collection with a staleness bound (see the module docstring).

    Args:
        env_factory: makes one env.
        backend: anything with ``generate``/``agenerate`` (and a ``policy_version`` attribute,
            which ``update_weights`` on the vLLM/SGLang backends advances).
        episodes: episode specs; may be an endless iterator.
        config: the rollout config (concurrency, sampling, ...).
        max_staleness: the most updates a trained-on sample may lag behind.
        queue_size: trajectories held between collector and trainer.
        chunk: episodes collected per inner ``collect`` call (the producer checks the staleness
            gate between chunks; keep it about ``config.concurrency``).
        backend_version: how to read the version the backend samples with (default: its
            ``policy_version`` attribute).
    """

    def __init__(
        self,
        env_factory: Callable[[], TextEnv],
        backend: Backend,
        episodes: Iterable[EpisodeSpec],
        config: RolloutConfig | None = None,
        max_staleness: int = 1,
        queue_size: int = 64,
        chunk: int | None = None,
        env_id: str = "",
        backend_version: Callable[[], int] | None = None,
    ) -> None:
        if max_staleness < 0:
            raise ValueError(f"max_staleness must be >= 0, got {max_staleness}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.env_factory = env_factory
        self.backend = VersionedBackend(backend, backend_version)
        self.episodes = iter(episodes)
        self.config = config or RolloutConfig()
        self.max_staleness = max_staleness
        self.queue: queue.Queue[Trajectory] = queue.Queue(maxsize=queue_size)
        self.chunk = chunk or self.config.concurrency
        self.env_id = env_id
        self.trainer_version = 0
        self.stale: list[Trajectory] = []
        self.stats = AsyncRolloutStats()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._exhausted = threading.Event()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    # -- control ------------------------------------------------------------------------------------
    def start(self) -> AsyncRollout:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="plyground-async-rollout", daemon=True)
            self._thread.start()
        return self

    def set_version(self, version: int) -> None:
        """The trainer's current version (call after each update + weight push)."""
        with self._cond:
            self.trainer_version = int(version)
            self._cond.notify_all()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        # Unblock a producer waiting on a full queue.
        with contextlib.suppress(queue.Empty):
            while True:
                self.queue.get_nowait()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def __enter__(self) -> AsyncRollout:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def done(self) -> bool:
        """No more episodes will come (specs exhausted or the producer failed) and the queue is empty."""
        return (self._exhausted.is_set() or self.error is not None) and self.queue.empty()

    # -- consumer -----------------------------------------------------------------------------------
    def get_batch(self, size: int, timeout_s: float | None = None) -> list[Trajectory]:
        """The next ``size`` trajectories whose lag is within ``max_staleness`` (fewer when the
        episodes run out). Raises the producer's error, if it failed, once the queue is drained."""
        out: list[Trajectory] = []
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while len(out) < size:
            if self.done:
                if self.error is not None and not out:
                    raise self.error
                break
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining == 0.0:
                raise TimeoutError(f"no trajectory within {timeout_s:g} s ({len(out)}/{size} collected)")
            try:
                traj = self.queue.get(timeout=min(0.1, remaining) if remaining is not None else 0.1)
            except queue.Empty:
                continue
            lag = policy_lag(traj, self.trainer_version)
            traj.metadata["policy_lag"] = lag
            if lag > self.max_staleness:
                self.stale.append(traj)
                self.stats.stale += 1
                continue
            self.stats.consumed += 1
            self.stats.lags.append(lag)
            out.append(traj)
        with self._cond:
            self._cond.notify_all()
        return out

    def __iter__(self) -> Iterator[Trajectory]:
        while not self.done:
            batch = self.get_batch(1)
            if batch:
                yield batch[0]

    # -- producer -----------------------------------------------------------------------------------
    def _weights_fresh_enough(self) -> bool:
        return self.trainer_version - self.backend._version() <= self.max_staleness

    def _run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as exc:
            self.error = exc
        finally:
            self._exhausted.set()

    async def _produce(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._stop.is_set() and not self._weights_fresh_enough():
                    self.stats.waits_for_weights += 1
                    self._cond.wait(timeout=0.1)
            if self._stop.is_set():
                return
            specs = [spec for _, spec in zip(range(self.chunk), self.episodes, strict=False)]
            if not specs:
                return
            await collect(self.env_factory, self.backend, specs, self.config, self.env_id, self._deliver)

    def _deliver(self, traj: Trajectory) -> None:
        self.backend.stamp(traj)
        self.stats.produced += 1
        while not self._stop.is_set():
            try:
                self.queue.put(traj, timeout=0.1)
                break
            except queue.Full:
                continue
        self.stats.max_queue = max(self.stats.max_queue, self.queue.qsize())
