"""Test helpers: an ASGI app served by uvicorn in a thread, and a server backend whose one replica
is a server that is already listening (no subprocess launched)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from plyground.inference.router import ManagedServer, Replica, Router, free_port
from plyground.inference.server import PlygroundServerBackend


@contextmanager
def serve_in_thread(app: Any, start_timeout_s: float = 30.0) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free local port in a daemon thread; yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.config.port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def server_backend_over(url: str, model: str = "m", **kwargs: Any) -> Iterator[PlygroundServerBackend]:
    """A server backend (routing, sticky table, per-replica clients) whose one replica is the
    server already listening at ``url``, instead of one it launched. ``kwargs`` go to the backend
    (``request_timeout_s``, ``max_attempts``, ``tokenizer``, ...)."""
    timeout = float(kwargs.setdefault("request_timeout_s", 30))
    attempts = int(kwargs.setdefault("max_attempts", 1))
    backend = PlygroundServerBackend(model, start=False, **kwargs)
    server = ManagedServer([], port=int(url.removesuffix("/v1").rsplit(":", 1)[1]), name="test-replica")
    backend.replicas = [Replica(0, server, backend._make_client(server))]
    backend.router = Router(backend.replicas, request_timeout_s=timeout, max_attempts=attempts)
    try:
        yield backend
    finally:
        backend.close()
