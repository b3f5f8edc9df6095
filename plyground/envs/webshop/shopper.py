"""A scripted shopper for WebShop: search with the goal's words, open the best match, choose the
options the instruction names, buy. It reads only what an agent sees (the instruction and the
page's data in ``info["page"]``), so it works alike in text and browser mode, and its episodes are
behaviour-cloning data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from plyground.envs.core import TextEnv
from plyground.envs.webshop.data import NO_PRICE_BOUND, parse_price_upper
from plyground.envs.webshop.reward import (
    EXACT_MATCH_OPTIONS,
    FUZZY_THRESHOLD,
    normalize_color,
    token_set_ratio,
)
from plyground.envs.webshop.search import tokenize

_PRICE_CLAUSE = re.compile(r",?\s*and price (?:lower|less) than .*$", re.I)
_OPTION_CLAUSE = re.compile(r"\s+with\s+([a-z ]+:\s*[^,]+(?:,\s*and\s+[a-z ]+:\s*[^,]+)*)\s*$", re.I)
_LEAD = re.compile(r"^\s*(i am looking for|i'm looking for|im looking for|i need|i want|find me)\s+", re.I)


def parse_instruction(text: str) -> tuple[str, dict[str, str], float]:
    """(what is wanted, the ``name: value`` options it states, the price bound)."""
    bound = parse_price_upper(text)
    body = _PRICE_CLAUSE.sub("", text.strip())
    options: dict[str, str] = {}
    match = _OPTION_CLAUSE.search(body)
    if match:
        for part in re.split(r",\s*and\s+", match.group(1)):
            name, _, value = part.partition(":")
            if value.strip():
                options[name.strip().lower()] = value.strip().lower()
        body = body[: match.start()]
    return body.strip(), options, bound


@dataclass
class ScriptedShopper:
    """A policy: ``act(observation, info) -> action``; call ``reset()`` between episodes."""

    max_turns: int = 15
    max_items: int = 4  # products to open looking for one that has the options asked for
    steps: int = 0
    opened: set[str] = field(default_factory=set)
    fallback: str | None = None  # the best product seen, bought when no better one turns up

    def reset(self) -> None:
        self.steps = 0
        self.opened = set()
        self.fallback = None

    def act(self, observation: str, info: dict[str, Any]) -> str:
        self.steps += 1
        return self._act(info)

    def _act(self, info: dict[str, Any]) -> str:
        instruction = str(info.get("instruction", ""))
        wanted, options, bound = parse_instruction(instruction)
        page = info.get("page") or {}
        kind = page.get("kind", "")
        clickables = set(info.get("clickables") or [])
        left = self.max_turns - self.steps  # turns left after this one
        if kind == "search":
            query = " ".join([_LEAD.sub("", wanted), *options.values()]).strip()
            return f"search[{query or instruction}]"
        if kind == "results":
            best = self._pick(page.get("items") or [], wanted, bound)
            if best is None or len(self.opened) >= self.max_items:
                if self.fallback is not None and self.fallback in clickables:
                    best = self.fallback
                elif best is None:
                    items = [i for i in page.get("items") or [] if i["asin"].lower() not in self.opened]
                    if not items:
                        return "click[next >]" if "next >" in clickables else "click[back to search]"
                    best = items[0]["asin"]
            self.opened.add(best.lower())
            return f"click[{best.lower()}]"
        if kind == "item":
            selected = page.get("selected") or {}
            offered = page.get("options") or {}
            choices = {name: _choose(name, values, options, wanted) for name, values in offered.items()}
            missing = [name for name in options if choices.get(name) is None]
            pending = [c for n, c in choices.items() if c is not None and selected.get(n) != c]
            asin = _asin_from(info)
            if self.fallback is None and asin:
                self.fallback = asin
            if missing and left > len(pending) + 3 and len(self.opened) < self.max_items and "< prev" in clickables:
                return "click[< prev]"
            if pending and left > 1:
                return f"click[{pending[0]}]"
            return "click[buy now]"
        if kind == "item_sub_page":
            return "click[< prev]"
        return "click[back to search]"

    def _pick(self, items: list[dict[str, Any]], wanted: str, bound: float) -> str | None:
        words = set(tokenize(wanted))
        best, best_score = None, 0.0
        for item in items:
            asin = str(item["asin"])
            if asin.lower() in self.opened:
                continue
            if bound < NO_PRICE_BOUND and float(item.get("price", 0.0)) > bound:
                continue
            title = set(tokenize(str(item.get("title", ""))))
            score = len(words & title) / max(1, len(words))
            if score > best_score:
                best, best_score = asin, score
        return best


def _asin_from(info: dict[str, Any]) -> str | None:
    match = re.match(r"^/item/([^/?]+)", str(info.get("url", "")))
    return match.group(1).lower() if match else None


def _choose(name: str, values: list[str], options: dict[str, str], wanted: str) -> str | None:
    """The option value the instruction asks for, if any."""
    target = options.get(name)
    if target is not None:
        if target in values:
            return target
        if name in EXACT_MATCH_OPTIONS:
            return None
        norm = normalize_color(target)
        scored = [(token_set_ratio(norm, normalize_color(v)), v) for v in values]
        score, value = max(scored)
        return value if score > FUZZY_THRESHOLD else None
    text = f" {wanted.lower()} "
    for value in sorted(values, key=len, reverse=True):
        if f" {value} " in text:
            return value
    return None


@dataclass
class ShopperEpisode:
    actions: list[str]
    observations: list[str]
    reward: float
    success: bool
    info: dict[str, Any]


def run_shopper(
    env: TextEnv, seed: int | None = None, options: dict[str, Any] | None = None, shopper: ScriptedShopper | None = None
) -> ShopperEpisode:
    """Play one episode with the scripted shopper; returns its actions, observations and reward."""
    shopper = shopper or ScriptedShopper(max_turns=env.max_turns)
    shopper.reset()
    obs, info = env.reset(seed=seed, options=options)
    actions, observations, reward = [], [obs], 0.0
    while True:
        action = shopper.act(obs, info)
        obs, r, terminated, truncated, info = env.step(action)
        actions.append(action)
        observations.append(obs)
        reward += r
        if terminated or truncated:
            return ShopperEpisode(actions, observations, reward, bool(info.get("success")), info)
