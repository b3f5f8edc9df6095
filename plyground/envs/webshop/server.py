"""The shop as a real web server: FastAPI on uvicorn, on 127.0.0.1 at a free port.

Pages (``sid`` is the session; the goal lives in the session, as in WebShop):

- ``GET /{sid}``: the search page (instruction + search form);
- ``GET /{sid}/search?keywords=..&page=n``: results, 10 per page of the top 50;
- ``GET /{sid}/item/{asin}?keywords=..&page=n&options=<json>``: item page with its options;
- ``GET /{sid}/item/{asin}/{sub}?...``: ``description``, ``features``, ``reviews`` sub-pages;
- ``GET /{sid}/buy/{asin}?options=<json>``: buys, scores the purchase, shows the score.

All navigation state is in the URL (as upstream's), so a session id plus a URL restores a page.
JSON API: ``GET /health``, ``POST /api/sessions`` (body ``{"goal": {...}}``), ``GET`` / ``DELETE
/api/sessions/{sid}``.

``ShopServer`` runs the app in a background thread (uvicorn on a socket bound to port 0) and
health-checks it; ``stop()`` shuts it down.
"""

from __future__ import annotations

import html
import http.client
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse

from plyground.envs.webshop.data import Catalogue, Goal, Product
from plyground.envs.webshop.reward import Purchase, reward_info
from plyground.envs.webshop.search import TOP_N, index_for
from plyground.errors import EnvError, MissingComponentError

PAGE_SIZE = 10
SUB_PAGES = ("description", "features", "reviews")


@dataclass
class Session:
    goal: Goal
    done: bool = False
    reward: float | None = None
    reward_info: dict[str, Any] = field(default_factory=dict)
    asin: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    created: float = field(default_factory=time.time)


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _options_param(options: dict[str, str]) -> str:
    return json.dumps(options, sort_keys=True, separators=(",", ":"))


def _parse_options(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, TypeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}


def _layout(kind: str, title: str, instruction: str, body: str, banner: str = "") -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_esc(title)}</title></head>\n<body data-page=\"{kind}\">\n{banner}"
        f"<header><div id=\"instruction-text\"><h4>Instruction:</h4><p>{_esc(instruction)}</p></div></header>\n"
        f"<main>\n{body}\n</main>\n</body></html>\n"
    )


class ShopApp:
    """The shop's state (catalogue, index, sessions) and its FastAPI app."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.index = index_for(catalogue)
        self.sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        self.app = app

        def session(sid: str) -> Session:
            found = self.sessions.get(sid)
            if found is None:
                raise HTTPException(404, f"unknown session {sid}")
            return found

        def page(content: str) -> HTMLResponse:
            return HTMLResponse(content)

        @app.get("/health")
        async def health() -> PlainTextResponse:
            return PlainTextResponse("ok")

        @app.post("/api/sessions")
        async def create(request: Request) -> JSONResponse:
            try:
                body = await request.json()
                goal = Goal.from_dict(body["goal"])
            except (ValueError, KeyError, TypeError) as exc:
                return JSONResponse({"error": f"bad goal: {exc}"}, status_code=400)
            sid = str(body.get("session") or uuid.uuid4().hex[:16])
            with self._lock:
                self.sessions[sid] = Session(goal)
            return JSONResponse({"session": sid})

        @app.get("/api/sessions/{sid}")
        async def state(sid: str) -> JSONResponse:
            s = session(sid)
            return JSONResponse(
                {
                    "goal": s.goal.to_dict(),
                    "done": s.done,
                    "reward": s.reward,
                    "reward_info": s.reward_info,
                    "asin": s.asin,
                    "options": s.options,
                }
            )

        @app.delete("/api/sessions/{sid}")
        async def delete(sid: str) -> JSONResponse:
            with self._lock:
                self.sessions.pop(sid, None)
            return JSONResponse({"deleted": sid})

        @app.get("/{sid}")
        async def index_page(sid: str) -> HTMLResponse:
            return page(self.search_page(sid, session(sid)))

        @app.get("/{sid}/search")
        async def results(sid: str, keywords: str = "", page_no: int = 1, page: int | None = None) -> HTMLResponse:
            return HTMLResponse(self.results_page(sid, session(sid), keywords, page or page_no))

        @app.get("/{sid}/item/{asin}")
        async def item(sid: str, asin: str, keywords: str = "", page: int = 1, options: str = "") -> HTMLResponse:
            return HTMLResponse(self.item_page(sid, session(sid), asin, keywords, page, _parse_options(options)))

        @app.get("/{sid}/item/{asin}/{sub}")
        async def sub_page(
            sid: str, asin: str, sub: str, keywords: str = "", page: int = 1, options: str = ""
        ) -> HTMLResponse:
            return HTMLResponse(
                self.sub_page(sid, session(sid), asin, sub, keywords, page, _parse_options(options))
            )

        @app.get("/{sid}/buy/{asin}")
        async def buy(sid: str, asin: str, options: str = "") -> HTMLResponse:
            return HTMLResponse(self.buy(sid, session(sid), asin, _parse_options(options)))

    # -- pages ------------------------------------------------------------------------------
    def _product(self, asin: str) -> Product:
        product = self.catalogue.get(asin)
        if product is None:
            raise HTTPException(404, f"unknown product {asin}")
        return product

    def search_page(self, sid: str, s: Session) -> str:
        body = (
            f"<form role=\"search\" method=\"get\" action=\"/{sid}/search\">"
            "<input type=\"text\" name=\"keywords\" aria-label=\"Search\" placeholder=\"Search...\">"
            "<button type=\"submit\">Search</button></form>"
        )
        return _layout("search", "WebShop", s.goal.instruction_text, body, banner="<h1>WebShop</h1>\n")

    def _results_url(self, sid: str, keywords: str, page: int) -> str:
        return f"/{sid}/search?{urlencode({'keywords': keywords, 'page': page})}"

    def _item_url(self, sid: str, asin: str, keywords: str, page: int, options: dict[str, str], sub: str = "") -> str:
        tail = f"/{sub}" if sub else ""
        query = urlencode({"keywords": keywords, "page": page, "options": _options_param(options)})
        return f"/{sid}/item/{quote(asin)}{tail}?{query}"

    def results_page(self, sid: str, s: Session, keywords: str, page: int) -> str:
        asins = self.index.search(keywords, TOP_N)
        pages = max(1, -(-len(asins) // PAGE_SIZE))
        page = min(max(1, page), pages)
        shown = asins[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        nav = [f"<a href=\"/{sid}\">Back to Search</a>"]
        status = f"<p>Page {page} (Total results: {len(asins)})</p>"
        if page > 1:
            nav.append(f"<a href=\"{_esc(self._results_url(sid, keywords, page - 1))}\">&lt; Prev</a>")
        if page < pages:
            nav.append(f"<a href=\"{_esc(self._results_url(sid, keywords, page + 1))}\">Next &gt;</a>")
        items = []
        for asin in shown:
            p = self._product(asin)
            url = self._item_url(sid, asin, keywords, page, {})
            items.append(
                f"<li data-product=\"{_esc(asin)}\" data-title=\"{_esc(p.name)}\" data-price=\"{p.price:.2f}\">"
                f"<a href=\"{_esc(url)}\">{_esc(asin)}</a><h4>{_esc(p.name)}</h4><p>{_esc(p.price_text)}</p></li>"
            )
        body = (
            f"<nav>{nav[0]}</nav>\n{status}\n<nav>{''.join(nav[1:])}</nav>\n"
            f"<ol class=\"results\">\n{chr(10).join(items)}\n</ol>"
        )
        return _layout("results", f"Results for {keywords}", s.goal.instruction_text, body)

    def item_page(self, sid: str, s: Session, asin: str, keywords: str, page: int, options: dict[str, str]) -> str:
        p = self._product(asin)
        parts = [
            f"<nav><a href=\"/{sid}\">Back to Search</a>"
            f"<a href=\"{_esc(self._results_url(sid, keywords, page))}\">&lt; Prev</a></nav>"
        ]
        for name, values in p.options.items():
            links = []
            for value in values:
                chosen = {**options, name: value}
                cls = "option selected" if options.get(name) == value else "option"
                url = self._item_url(sid, asin, keywords, page, chosen)
                links.append(f"<a class=\"{cls}\" data-option=\"{_esc(name)}\" href=\"{_esc(url)}\">{_esc(value)}</a>")
            parts.append(f"<section class=\"options\"><h5>{_esc(name)}</h5>{''.join(links)}</section>")
        parts.append(f"<h2>{_esc(p.name)}</h2><p>Price: {_esc(p.price_text)}</p><p>Rating: {_esc(p.rating)}</p>")
        subs = "".join(
            f"<a href=\"{_esc(self._item_url(sid, asin, keywords, page, options, sub))}\">{sub.title()}</a>"
            for sub in SUB_PAGES
        )
        buy_url = f"/{sid}/buy/{quote(asin)}?{urlencode({'options': _options_param(options)})}"
        parts.append(f"<nav>{subs}</nav><p><a class=\"buy\" href=\"{_esc(buy_url)}\">Buy Now</a></p>")
        return _layout("item", p.name, s.goal.instruction_text, "\n".join(parts))

    def sub_page(
        self, sid: str, s: Session, asin: str, sub: str, keywords: str, page: int, options: dict[str, str]
    ) -> str:
        p = self._product(asin)
        if sub not in SUB_PAGES:
            raise HTTPException(404, f"unknown page {sub}")
        back = self._item_url(sid, asin, keywords, page, options)
        if sub == "description":
            content = f"<p>{_esc(p.full_description)}</p>"
        elif sub == "features":
            content = "<ul>" + "".join(f"<li>{_esc(b)}</li>" for b in p.bullet_points) + "</ul>"
        else:
            content = "<p>No reviews yet.</p>"
        body = (
            f"<nav><a href=\"/{sid}\">Back to Search</a><a href=\"{_esc(back)}\">&lt; Prev</a></nav>\n"
            f"<section>{content}</section>"
        )
        return _layout("item_sub_page", f"{p.name}: {sub}", s.goal.instruction_text, body)

    def buy(self, sid: str, s: Session, asin: str, options: dict[str, str]) -> str:
        p = self._product(asin)
        if not s.done:
            info = reward_info(s.goal, Purchase(p, options, p.price))
            with self._lock:
                s.done, s.reward, s.reward_info, s.asin, s.options = True, info.reward, info.to_dict(), asin, options
        chosen = ", ".join(f"{k}: {v}" for k, v in s.options.items()) or "none"
        body = (
            "<h1>Thank you for shopping with us!</h1>\n"
            f"<p>Purchased: {_esc(self._product(s.asin or asin).name)}</p><p>Options: {_esc(chosen)}</p>\n"
            f"<p>Your score (min 0.0, max 1.0)</p><p id=\"reward\" data-reward=\"{s.reward}\">{s.reward:.4f}</p>"
        )
        return _layout("done", "Done", s.goal.instruction_text, body)


class ShopServer:
    """``ShopApp`` served by uvicorn in a daemon thread on 127.0.0.1 at a free port."""

    def __init__(self, catalogue: Catalogue, host: str = "127.0.0.1", port: int = 0) -> None:
        self.shop = ShopApp(catalogue)
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> ShopServer:
        try:
            import uvicorn
        except ImportError as exc:  # pragma: no cover - uvicorn is a core dependency
            raise MissingComponentError("uvicorn", "pip install uvicorn") from exc
        if self.alive():
            return self
        self.stop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.shop.app, log_level="warning", lifespan="off", access_log=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="webshop-server", daemon=True)
        self._server, self._thread, self._socket = server, thread, sock
        thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.started and self.healthy():
                return self
            if not thread.is_alive():
                break
            time.sleep(0.01)
        self.stop()
        raise EnvError(f"the WebShop server did not become healthy within {timeout:.0f} s")

    def healthy(self) -> bool:
        # http.client, not httpx: a new httpx client loads an SSL context (tens of ms) per call
        conn = http.client.HTTPConnection(self.host, self.port, timeout=2.0)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._server is not None and self._server.started

    def ensure_running(self) -> ShopServer:
        """Restart the server when its thread died or it stopped answering."""
        if not (self.alive() and self.healthy()):
            self.stop()
            self.start()
        return self

    def stop(self) -> None:
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        if server is not None:
            server.should_exit = True
        if thread is not None and thread.is_alive():
            thread.join(timeout=5.0)
        if sock is not None:
            sock.close()

    def __enter__(self) -> ShopServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
