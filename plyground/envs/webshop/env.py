"""WebShop environments: the shop over HTTP (text mode) or through Chromium (browser mode).

Actions are WebShop's: ``search[keywords]`` (on a page with a search bar) and ``click[label]``
(a button, product ASIN, option value, ``next >``, ``< prev``, ``back to search``, ``description``,
``features``, ``reviews``, ``buy now``; case-insensitive). The observation is the page's simplified
text (``observation_format="readable"``, clickables in brackets, or ``"sep"``, WebShop's
``[SEP]``-joined text). ``info["admissible_actions"]`` lists ``search[<keywords>]`` (a template,
when the page has a search bar) and one ``click[...]`` per clickable. "Buy Now" ends the episode
with WebShop's reward; ``success`` means a reward of 1.0.

Every step is a real HTTP request to the shop server (``ShopServer``: FastAPI on uvicorn, started
by the env on 127.0.0.1 at a free port, health-checked on each reset, restarted if it died, and
stopped by ``close()``). The native snapshot is the goal plus the current URL (all navigation state
is in WebShop's URLs): ``restore`` opens a fresh session with that goal at that URL.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import httpx
import numpy as np

from plyground.envs.core import TextEnv
from plyground.envs.webshop.data import Catalogue, Goal, generate_catalogue
from plyground.envs.webshop.page import ParsedPage, parse_page
from plyground.envs.webshop.server import ShopServer
from plyground.errors import EnvError

T = TypeVar("T")

# WebShop agents (ReAct, and most RL papers that follow it) get 15 actions per episode.
DEFAULT_MAX_TURNS = 15
MAX_QUERY_CHARS = 500
SEARCH_TEMPLATE = "search[<keywords>]"
_ACTION = re.compile(r"^\s*(search|click)\s*\[(.*)\]\s*$", re.S | re.I)

INSTRUCTIONS = """You are shopping on WebShop, a web shop. Your task is the instruction shown on every page.
Each turn, answer with exactly one action:
- search[keywords]: search the shop (only on a page with a search bar);
- click[label]: click a button shown in brackets, e.g. click[b0abcd1234] to open a product, click[next >],
  click[< prev], click[back to search], an option value such as click[large], click[description],
  click[features], click[reviews], and click[buy now] to buy the product you are looking at.
Choose the options the instruction asks for before buying. Buying ends the episode; you are scored on how
well the product, its options and its price match the instruction."""


@functools.lru_cache(maxsize=4)
def default_catalogue(num_products: int = 1000, seed: int = 0) -> Catalogue:
    """The generated catalogue for ``(num_products, seed)``, shared by every env in the process."""
    return generate_catalogue(num_products, seed=seed)


@dataclass
class WebShopSnapshot:
    """Native snapshot: the goal, the URL (without its session id) and the turn bookkeeping."""

    goal: dict[str, Any]
    path: str
    observation: str
    turn: int
    actions: list[str] = field(default_factory=list)
    done: bool = False


def _goal_from(value: Any) -> Goal:
    if isinstance(value, Goal):
        return value
    if isinstance(value, dict):
        return Goal.from_dict(value)
    if isinstance(value, str):
        return Goal.from_instruction(value)
    raise TypeError(f"a goal is a Goal, a goal dict or an instruction string, not {type(value).__name__}")


class WebShopEnv(TextEnv):
    """WebShop in text mode: every action is an HTTP request to the shop server."""

    instructions = INSTRUCTIONS
    max_turns = DEFAULT_MAX_TURNS
    reward_range = (0.0, 1.0)

    def __init__(
        self,
        catalogue: Catalogue | None = None,
        num_products: int = 1000,
        catalogue_seed: int = 0,
        goals: list[Goal] | None = None,
        max_turns: int = DEFAULT_MAX_TURNS,
        observation_format: str = "readable",
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        if observation_format not in ("readable", "sep"):
            raise ValueError(f"observation_format is 'readable' or 'sep', not {observation_format!r}")
        self.catalogue = catalogue if catalogue is not None else default_catalogue(num_products, catalogue_seed)
        self.goals = list(goals) if goals is not None else list(self.catalogue.goals)
        if not self.goals:
            raise ValueError("the catalogue has no goals; pass goals=")
        self.max_turns = int(max_turns)
        self.observation_format = observation_format
        self.server: ShopServer | None = None
        self._client: httpx.Client | None = None
        self.session_id = ""
        self.goal: Goal | None = None
        self.page = ParsedPage()
        self.path = "/"
        self.last_reward_info: dict[str, Any] = {}

    # -- the server ---------------------------------------------------------------------------
    def _ensure_server(self) -> None:
        if self.server is None:
            self.server = ShopServer(self.catalogue)
        before = self.server.port
        self.server.ensure_running()
        if self._client is None or self.server.port != before:
            if self._client is not None:
                self._client.close()
            self._client = httpx.Client(base_url=self.server.url, timeout=30.0)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            raise EnvError("the WebShop env is not started; call reset() first")
        return self._client

    def _new_session(self, goal: Goal) -> None:
        if self.session_id:
            with contextlib.suppress(httpx.HTTPError):
                self.client.delete(f"/api/sessions/{self.session_id}")
        response = self.client.post("/api/sessions", json={"goal": goal.to_dict()})
        response.raise_for_status()
        self.session_id = str(response.json()["session"])
        self.goal = goal

    def _recover(self, path: str) -> str:
        """Restart a dead server and open a new session with the same goal; ``path`` rewritten."""
        old = self.session_id
        self._ensure_server()
        self.session_id = ""
        if self.goal is not None:
            self._new_session(self.goal)
        return path.replace(f"/{old}", f"/{self.session_id}", 1) if old else path

    # -- navigation (the browser env overrides these three) -----------------------------------
    def _open(self, path: str) -> str:
        try:
            response = self.client.get(path)
        except httpx.TransportError:
            # The server died: restart it, reopen the session (its goal) and the same URL.
            response = self.client.get(self._recover(path))
        if response.status_code != 200:
            raise EnvError(f"the shop answered {response.status_code} for {path}: {response.text[:200]}")
        self.path = path
        return response.text

    def _search(self, query: str) -> str:
        return self._open(f"{self.page.search_action}?{urlencode({'keywords': query})}")

    def _click(self, href: str) -> str:
        return self._open(href)

    # -- TextEnv ------------------------------------------------------------------------------
    def _reset(self, rng: np.random.Generator, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._ensure_server()
        if "goal" in options:
            goal = _goal_from(options["goal"])
        elif "goal_index" in options:
            goal = self.goals[int(options["goal_index"]) % len(self.goals)]
        else:
            goal = self.goals[int(rng.integers(len(self.goals)))]
        self._new_session(goal)
        self.last_reward_info = {}
        self.page = parse_page(self._open(f"/{self.session_id}"))
        return self._observe(), self._info()

    def _observe(self) -> str:
        return self.page.text(self.observation_format)

    def _info(self) -> dict[str, Any]:
        admissible = [SEARCH_TEMPLATE] if self.page.has_search_bar else []
        admissible += [f"click[{label}]" for label in self.page.clickables]
        return {
            "admissible_actions": admissible,
            "has_search_bar": self.page.has_search_bar,
            "clickables": list(self.page.clickables),
            "instruction": self.goal.instruction_text if self.goal else "",
            "page": {"kind": self.page.kind, **copy.deepcopy(self.page.data)},
            "url": self._relative_path(),
        }

    def state_key(self) -> str:
        """What search dedupes on: the goal and the page URL (search keywords, result page, product,
        chosen options), the whole navigation state. The page text does not show which options are
        chosen, so keying by observation would merge "size chosen" with "not chosen"."""
        instruction = self.goal.instruction_text if self.goal else ""
        return f"{instruction}\n{self._relative_path()}"

    def _relative_path(self) -> str:
        parts = urlsplit(self.path)
        path = parts.path
        prefix = f"/{self.session_id}"
        rest = path[len(prefix) :] if path.startswith(prefix) else path
        return rest + (f"?{parts.query}" if parts.query else "")

    def _invalid(self, reason: str) -> tuple[str, float, bool, dict[str, Any]]:
        info = self._info()
        info["valid_action"] = False
        return f"Invalid action: {reason}\n\n{self._observe()}", 0.0, False, info

    def _step(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        match = _ACTION.match(action[:20_000])
        if match is None:
            shown = action[:60] + ("..." if len(action) > 60 else "")
            return self._invalid(f"{shown!r} is not search[keywords] or click[label].")
        verb, arg = match.group(1).lower(), match.group(2).strip()
        if verb == "search":
            if not self.page.has_search_bar:
                return self._invalid("there is no search bar on this page (click[back to search] first).")
            if not arg or arg == "<keywords>":
                return self._invalid("search[...] needs keywords.")
            html = self._search(arg[:MAX_QUERY_CHARS])
        else:
            label = " ".join(arg.lower().split())
            href = self.page.clickables.get(label)
            if href is None:
                shown = label[:60] + ("..." if len(label) > 60 else "")
                return self._invalid(f"there is no button {shown!r} on this page.")
            html = self._click(href)
        self.page = parse_page(html)
        info = self._info()
        if self.page.kind == "done":
            state = self.client.get(f"/api/sessions/{self.session_id}").json()
            reward = float(state.get("reward") or 0.0)
            self.last_reward_info = dict(state.get("reward_info") or {})
            info.update(
                success=reward >= 1.0 - 1e-9,
                reward_info=self.last_reward_info,
                purchased={"asin": state.get("asin"), "options": state.get("options")},
                admissible_actions=[],
            )
            return self._observe(), reward, True, info
        return self._observe(), 0.0, False, info

    # -- snapshots --------------------------------------------------------------------------
    def snapshot(self) -> Any:
        if self.goal is None:
            return super().snapshot()
        return WebShopSnapshot(
            goal=self.goal.to_dict(),
            path=self._relative_path(),
            observation=self._last_observation,
            turn=self.turn,
            actions=list(self._actions),
            done=self._done,
        )

    def restore(self, state: Any) -> str:
        if not isinstance(state, WebShopSnapshot):
            return super().restore(state)
        self._ensure_server()
        self._new_session(Goal.from_dict(state.goal))
        self.page = parse_page(self._open(f"/{self.session_id}{state.path}"))
        self.turn, self._actions, self._done = state.turn, list(state.actions), state.done
        self._last_observation = state.observation
        return state.observation

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        super().close()


# -- browser mode --------------------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
)


class WebShopBrowserEnv(WebShopEnv):
    """The same shop driven through headless Chromium (Playwright): searches type into the search
    box and press Enter, clicks click the page's links. The observation is the rendered page's
    simplified text (identical to text mode); ``screenshot=True`` adds a PNG in ``info["screenshot"]``.

    Playwright's sync API belongs to the thread that started it (and refuses a thread running an
    asyncio loop), while the rollout collector calls ``reset``/``step``/``close`` from its pool of
    worker threads and from the loop. So each env owns one browser thread and runs every Playwright
    call there; callers on any thread wait for it. Several envs, one per concurrent episode, each
    have their own browser and thread."""

    def __init__(self, *args: Any, screenshot: bool = False, executable_path: str = CHROMIUM, **kwargs: Any) -> None:
        import os
        import shutil

        from plyground.errors import MissingComponentError

        try:
            from playwright.sync_api import sync_playwright
        except ImportError as exc:
            raise MissingComponentError("playwright", "pip install 'plyground[web]'") from exc
        if not (os.path.exists(executable_path) or shutil.which(executable_path)):
            raise MissingComponentError("chromium", "apt-get install -y chromium")
        super().__init__(*args, **kwargs)
        self.screenshot = screenshot
        self.executable_path = executable_path
        self._sync_playwright = sync_playwright
        self._pw: Any = None
        self._browser: Any = None
        self._page: Any = None
        self._thread: ThreadPoolExecutor | None = None
        self._thread_id: int | None = None

    # -- the browser thread -------------------------------------------------------------------
    def _on_browser_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on this env's browser thread (started on first use) and return its result."""
        if threading.get_ident() == self._thread_id:
            return fn(*args)  # already there (a nested call)
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webshop-browser")
            self._thread_id = self._thread.submit(threading.get_ident).result()
        return self._thread.submit(fn, *args).result()

    def _ensure_browser(self) -> Any:
        if self._browser is None or not self._browser.is_connected():
            self._close_browser_here()
            self._pw = self._sync_playwright().start()
            self._browser = self._pw.chromium.launch(
                executable_path=self.executable_path, headless=True, args=list(CHROMIUM_FLAGS)
            )
            self._page = self._browser.new_page()
        return self._page

    def _base(self) -> str:
        assert self.server is not None
        return self.server.url

    def _settle(self) -> str:
        page = self._page
        page.wait_for_load_state("domcontentloaded")
        url = page.url
        self.path = url[len(self._base()) :] if url.startswith(self._base()) else urlsplit(url).path
        return str(page.content())

    # -- navigation, each on the browser thread -----------------------------------------------
    def _open(self, path: str) -> str:
        return self._on_browser_thread(self._open_here, path)

    def _open_here(self, path: str) -> str:
        page = self._ensure_browser()
        page.goto(self._base() + path, wait_until="domcontentloaded")
        return self._settle()

    def _search(self, query: str) -> str:
        return self._on_browser_thread(self._search_here, query)

    def _search_here(self, query: str) -> str:
        page = self._ensure_browser()
        box = page.locator("form[role=search] input[name=keywords]")
        box.fill(query)
        with page.expect_navigation(wait_until="domcontentloaded"):
            box.press("Enter")
        return self._settle()

    def _click(self, href: str) -> str:
        return self._on_browser_thread(self._click_here, href)

    def _click_here(self, href: str) -> str:
        page = self._ensure_browser()
        with page.expect_navigation(wait_until="domcontentloaded"):
            page.locator(f"a[href={json.dumps(href)}]").first.click()
        return self._settle()

    def _info(self) -> dict[str, Any]:
        info = super()._info()
        if self.screenshot and self._page is not None:
            info["screenshot"] = self._on_browser_thread(lambda: self._page.screenshot(type="png"))
        return info

    def _close_browser_here(self) -> None:
        for closer in (self._browser, self._pw):
            if closer is None:
                continue
            with contextlib.suppress(Exception):  # a dead browser cannot be closed twice
                closer.close() if closer is self._browser else closer.stop()
        self._pw = self._browser = self._page = None

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.submit(self._close_browser_here).result()
            thread.shutdown(wait=True)
        self._thread_id = None
        super().close()
