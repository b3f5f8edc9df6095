"""Managed inference-server subprocesses and a router over their replicas.

``ManagedServer`` runs one server command line (vLLM, SGLang, or a test's fake) as a subprocess,
waits until its health path answers, and can be restarted. ``Router`` spreads requests over
several replicas:

* **least outstanding requests**: a new key goes to the live replica with fewest requests in flight;
* **sticky by episode**: a turn whose prompt continues an earlier turn's conversation goes back to
  the replica that served that turn, so its prefix cache hits (:class:`StickyTable`);
* **failover**: when a request fails because its replica died (the process exited, or it stopped
  answering), the replica is restarted in the background and the request is retried on another
  live replica (or on the restarted one), so no collected work is lost. Every attempt has a
  time limit (``request_timeout_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from plyground.errors import BackendError

__all__ = ["AttachedServer", "ManagedServer", "Replica", "Router", "StickyTable", "free_port", "prefix_key"]

log = logging.getLogger(__name__)

R = TypeVar("R")


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def prefix_key(prompt: Any) -> str:
    """A short hash of a chat (role and content of every message) or of a token-id list."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
        text = ",".join(map(str, prompt))
    elif isinstance(prompt, list):
        text = "\x00".join(f"{getattr(m, 'role', '')}\x01{getattr(m, 'content', m)}" for m in prompt)
    else:
        text = str(prompt)
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=12).hexdigest()


class StickyTable:
    """Which replica holds which conversation prefix (a bounded LRU).

    After a chat's reply, ``prompt + [assistant reply]`` is registered; the episode's next turn is
    that plus the new observation, so looking up ``chat[:-1]`` finds the replica that has the
    episode's prefix cached. Token-id prompts work the same with ``prompt_ids + completion_ids``
    (looked up at every length registered so far). Episodes that merely share a system prompt are
    not pinned together, so load still spreads.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._table: OrderedDict[str, int] = OrderedDict()
        self._id_lengths: set[int] = set()

    def lookup_keys(self, prompt: Any) -> list[str]:
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
            lengths = sorted((n for n in self._id_lengths if n < len(prompt)), reverse=True)[:64]
            return [prefix_key(prompt[:n]) for n in lengths]
        if isinstance(prompt, list) and len(prompt) > 2:
            return [prefix_key(prompt[:-1])]
        return []

    def continuation_key(self, prompt: Any, completion: Any) -> str:
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], int):
            ids = [*prompt, *getattr(completion, "token_ids", [])]
            self._id_lengths.add(len(ids))
            return prefix_key(ids)
        from plyground.types import Message

        return prefix_key([*prompt, Message("assistant", getattr(completion, "text", ""))])

    def get(self, key: str) -> int | None:
        index = self._table.get(key)
        if index is not None:
            self._table.move_to_end(key)
        return index

    def put(self, key: str, index: int) -> None:
        self._table[key] = index
        self._table.move_to_end(key)
        while len(self._table) > self.capacity:
            self._table.popitem(last=False)

    def forget(self, index: int) -> None:
        for key in [k for k, v in self._table.items() if v == index]:
            del self._table[key]

    def __len__(self) -> int:
        return len(self._table)


def _client_error(exc: BaseException) -> bool:
    """An HTTP 4xx (other than 408/429) anywhere in the exception chain."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        status = getattr(seen, "status_code", None)
        if status is None:
            status = getattr(getattr(seen, "response", None), "status_code", None)
        if isinstance(status, int) and 400 <= status < 500 and status not in (408, 429):
            return True
        seen = seen.__cause__
    return False


class ManagedServer:
    """One server subprocess: ``command`` (a list; ``{port}`` and ``{host}`` are filled in),
    healthy once ``GET http://host:port{health_path}`` answers 200."""

    def __init__(
        self,
        command: Sequence[str],
        host: str = "127.0.0.1",
        port: int | None = None,
        health_paths: Sequence[str] = ("/health",),
        startup_timeout_s: float = 600.0,
        env: dict[str, str] | None = None,
        name: str = "server",
    ) -> None:
        self.command_template = list(command)
        self.host = host
        self.port = port
        self.health_paths = list(health_paths)
        self.startup_timeout_s = startup_timeout_s
        self.env = env
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._log_path: str | None = None

    @property
    def root_url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"{self.name} has not been started")
        return f"http://{self.host}:{self.port}"

    @property
    def command(self) -> list[str]:
        port = "" if self.port is None else str(self.port)
        return [part.replace("{port}", port).replace("{host}", self.host) for part in self.command_template]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> str:
        """Launch and wait for health; returns the root URL (``http://host:port``)."""
        if self.port is None:
            self.port = free_port(self.host)
        fd, self._log_path = tempfile.mkstemp(prefix=f"plyground-{self.name}-", suffix=".log")
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with os.fdopen(fd, "wb") as logfile:
            self.process = subprocess.Popen(self.command, stdout=logfile, stderr=subprocess.STDOUT, env=env)
        try:
            self._wait_ready()
        except BackendError:
            self.stop(keep_log=True)
            raise
        return self.root_url

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                raise BackendError(
                    f"{self.name} ({' '.join(self.command)}) exited with code {code} before it was ready:\n"
                    f"{self.log_tail()}"
                )
            if self.healthy(timeout_s=1.0):
                return
            if time.monotonic() > deadline:
                raise BackendError(
                    f"{self.name} did not become healthy at {self.root_url} within {self.startup_timeout_s:g} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.1)

    def healthy(self, timeout_s: float = 2.0) -> bool:
        """Every health path answers 200 within ``timeout_s``."""
        if not self.alive():
            return False
        try:
            return all(
                httpx.get(f"{self.root_url}{path}", timeout=timeout_s).status_code == 200
                for path in self.health_paths
            )
        except httpx.HTTPError:
            return False

    def restart(self) -> str:
        """Stop (if needed) and start again on the same port."""
        self.stop()
        self.restarts += 1
        return self.start()

    def log_tail(self, lines: int = 30) -> str:
        if not self._log_path or not os.path.exists(self._log_path):
            return ""
        with open(self._log_path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])

    def stop(self, keep_log: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log_path and not keep_log:
            with contextlib.suppress(OSError):
                os.unlink(self._log_path)
            self._log_path = None


class AttachedServer:
    """A server someone else runs, at ``url`` (``http://host:port``, a trailing ``/v1`` ignored):
    the same face as :class:`ManagedServer` to the router, without the process. ``start`` and
    ``restart`` wait until its health paths answer (a replica that went away is waited for, not
    relaunched), and ``stop`` leaves it running."""

    def __init__(
        self,
        url: str,
        health_paths: Sequence[str] = ("/health",),
        startup_timeout_s: float = 600.0,
        name: str = "server",
    ) -> None:
        parsed = httpx.URL(url.rstrip("/").removesuffix("/v1"))
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"a server URL looks like http://host:port, got {url!r}")
        self.url = str(parsed).rstrip("/")
        self.host = parsed.host
        self.port = parsed.port
        self.health_paths = list(health_paths)
        self.startup_timeout_s = startup_timeout_s
        self.name = name
        self.restarts = 0

    @property
    def root_url(self) -> str:
        return self.url

    def alive(self) -> bool:
        return True  # no process of ours to watch: healthy() says whether it answers

    def healthy(self, timeout_s: float = 2.0) -> bool:
        """Every health path answers 200 within ``timeout_s``."""
        try:
            return all(
                httpx.get(f"{self.url}{path}", timeout=timeout_s).status_code == 200 for path in self.health_paths
            )
        except httpx.HTTPError:
            return False

    def start(self) -> str:
        """Wait (up to ``startup_timeout_s``) until the server answers; returns its root URL."""
        deadline = time.monotonic() + self.startup_timeout_s
        while not self.healthy(timeout_s=2.0):
            if time.monotonic() > deadline:
                raise BackendError(
                    f"{self.name}: no healthy server at {self.url} ({', '.join(self.health_paths)}) within "
                    f"{self.startup_timeout_s:g} s"
                )
            time.sleep(0.5)
        return self.url

    def restart(self) -> str:
        self.restarts += 1
        return self.start()

    def stop(self, keep_log: bool = False) -> None:
        """Nothing to stop: the server is not ours."""

    def log_tail(self, lines: int = 30) -> str:
        return ""


@dataclass
class Replica:
    """A server and whatever client talks to it (built by the backend)."""

    index: int
    server: ManagedServer | AttachedServer
    client: Any = None
    outstanding: int = 0
    served: int = 0
    failures: int = 0
    healthy: bool = True
    restarting: threading.Event = field(default_factory=threading.Event)


class Router:
    """Routes calls over replicas; see the module docstring.

    Args:
        replicas: the replicas (already started).
        request_timeout_s: time limit of one attempt.
        max_attempts: attempts per call across replicas before giving up.
        on_restart: called with a replica after it has been restarted (e.g. to re-push the
            current weights, which a fresh server does not have).
        restart_timeout_s: how long a call waits for some replica to come back when none is live.
    """

    def __init__(
        self,
        replicas: Sequence[Replica],
        request_timeout_s: float = 300.0,
        max_attempts: int = 4,
        on_restart: Callable[[Replica], None] | None = None,
        restart_timeout_s: float = 900.0,
    ) -> None:
        if not replicas:
            raise ValueError("a router needs at least one replica")
        self.replicas = list(replicas)
        self.request_timeout_s = request_timeout_s
        self.max_attempts = max_attempts
        self.on_restart = on_restart
        self.restart_timeout_s = restart_timeout_s
        self.sticky = StickyTable()
        self.sticky_hits = 0
        self._lock = threading.Lock()
        self.retries = 0

    # -- choice -----------------------------------------------------------------------------------
    def pick(self, lookup: Sequence[str] = (), exclude: set[int] | None = None) -> Replica | None:
        """The replica that holds one of the ``lookup`` prefixes, if live; else the live replica
        with fewest requests in flight."""
        exclude = exclude or set()
        with self._lock:
            for key in lookup:
                index = self.sticky.get(key)
                if index is not None and self.replicas[index].healthy and index not in exclude:
                    self.sticky_hits += 1
                    return self.replicas[index]
            live = [r for r in self.replicas if r.healthy and r.index not in exclude]
            if not live:
                return None
            return min(live, key=lambda r: (r.outstanding, r.served, r.index))

    # -- calls --------------------------------------------------------------------------------------
    async def call(
        self,
        fn: Callable[[Replica], Awaitable[R]],
        lookup: Sequence[str] = (),
        register: Callable[[R], Sequence[str]] | None = None,
    ) -> R:
        """``await fn(replica)`` on a chosen replica, with a time limit and failover; afterwards the
        keys ``register(result)`` names are pinned to that replica."""
        tried: set[int] = set()
        last: BaseException | None = None
        for attempt in range(self.max_attempts):
            replica = self.pick(lookup, exclude=tried)
            if replica is None:
                replica = await self._wait_for_live(exclude=tried if len(tried) < len(self.replicas) else set())
            replica.outstanding += 1
            try:
                result = await asyncio.wait_for(fn(replica), timeout=self.request_timeout_s)
            except (TimeoutError, BackendError, httpx.HTTPError, OSError) as exc:
                if _client_error(exc):
                    raise  # the request itself is wrong: another replica would refuse it too
                last = exc
                replica.failures += 1
                tried.add(replica.index)
                self.retries += 1
                if not replica.server.alive() or not await asyncio.to_thread(replica.server.healthy, 2.0):
                    self.mark_dead(replica)
                log.warning(
                    "replica %d failed (%s: %s); attempt %d/%d",
                    replica.index, type(exc).__name__, exc, attempt + 1, self.max_attempts,
                )  # fmt: skip
                continue
            finally:
                replica.outstanding -= 1
            replica.served += 1
            if register is not None:
                with self._lock:
                    for key in register(result):
                        self.sticky.put(key, replica.index)
            return result
        if isinstance(last, TimeoutError):
            raise BackendError(
                f"no replica answered within {self.request_timeout_s:g} s ({self.max_attempts} attempts)"
            ) from last
        raise BackendError(f"all {self.max_attempts} attempts failed; last error: {last}") from last

    async def _wait_for_live(self, exclude: set[int]) -> Replica:
        deadline = time.monotonic() + self.restart_timeout_s
        while time.monotonic() < deadline:
            replica = self.pick((), exclude=exclude) or self.pick(())
            if replica is not None:
                return replica
            await asyncio.sleep(0.05)
        raise BackendError(f"no inference replica came back within {self.restart_timeout_s:g} s")

    # -- failures -----------------------------------------------------------------------------------
    def mark_dead(self, replica: Replica) -> None:
        """Take ``replica`` out of rotation and restart it in a background thread."""
        with self._lock:
            if not replica.healthy:
                return
            replica.healthy = False
            self.sticky.forget(replica.index)
        thread = threading.Thread(target=self._restart, args=(replica,), daemon=True, name="plyground-restart")
        thread.start()

    def _restart(self, replica: Replica) -> None:
        replica.restarting.set()
        try:
            log.warning("restarting replica %d (%s)", replica.index, replica.server.name)
            replica.server.restart()
            if self.on_restart is not None:
                self.on_restart(replica)
            replica.healthy = True
        except Exception:
            log.exception("restarting replica %d failed", replica.index)
        finally:
            replica.restarting.clear()

    def wait_restarts(self, timeout_s: float = 60.0) -> None:
        """Block until no restart is in progress (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while any(r.restarting.is_set() for r in self.replicas) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stats(self) -> dict[str, Any]:
        return {
            "retries": self.retries,
            "sticky_hits": self.sticky_hits,
            "replicas": [
                {
                    "index": r.index,
                    "served": r.served,
                    "failures": r.failures,
                    "restarts": r.server.restarts,
                    "healthy": r.healthy,
                }
                for r in self.replicas
            ],
        }
