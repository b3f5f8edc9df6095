"""Test helpers: an ASGI app served by uvicorn in a thread, and a server backend attached to a
server that is already listening (no subprocess launched)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from plyground.inference.router import free_port
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
    """A server backend (routing, sticky table, per-replica clients) attached to the one server
    already listening at ``url`` (``base_urls``), instead of one it launched. ``kwargs`` go to the
    backend (``request_timeout_s``, ``max_attempts``, ``tokenizer``, ...)."""
    kwargs.setdefault("request_timeout_s", 30)
    kwargs.setdefault("max_attempts", 1)
    with PlygroundServerBackend(model, base_urls=[url], **kwargs) as backend:
        yield backend
