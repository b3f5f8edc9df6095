"""Shop HTML -> simplified page text, clickables and page data (the same for text and browser mode).

The text follows WebShop's text mode: the visible text pieces of the page in order, clickables
included. ``format="sep"`` joins them with ``" [SEP] "`` as upstream's ``text`` observation does;
``format="readable"`` puts one piece per line with clickables in brackets (``[Buy Now]``), as in the
ReAct prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

_SKIP = frozenset({"head", "script", "style", "title", "noscript"})
_BLOCK = frozenset({"p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "br", "tr", "td", "section", "span", "label"})


@dataclass
class Piece:
    text: str
    href: str | None = None  # set for a clickable


@dataclass
class ParsedPage:
    """What the agent sees of one page, plus structured data for scripted agents."""

    kind: str = ""
    pieces: list[Piece] = field(default_factory=list)
    clickables: dict[str, str] = field(default_factory=dict)  # lower-cased label -> href
    has_search_bar: bool = False
    search_action: str = ""
    data: dict[str, Any] = field(default_factory=dict)  # page kind specific, from data-* attributes

    def text(self, format: str = "readable") -> str:
        if format == "sep":
            return " [SEP] ".join(p.text for p in self.pieces)
        return "\n".join(f"[{p.text}]" if p.href is not None else p.text for p in self.pieces)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = ParsedPage()
        self._skip = 0
        self._link: dict[str, str] | None = None
        self._link_text: list[str] = []
        self._buffer: list[str] = []
        self._items: list[dict[str, Any]] = []
        self._options: dict[str, list[str]] = {}
        self._selected: dict[str, str] = {}

    def _flush(self) -> None:
        text = " ".join(" ".join(self._buffer).split())
        self._buffer = []
        if text:
            self.page.pieces.append(Piece(text))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag in _SKIP:
            self._skip += 1
            return
        if tag == "body" and "data-page" in a:
            self.page.kind = a["data-page"]
        if tag == "form" and a.get("role") == "search":
            self.page.has_search_bar = True
            self.page.search_action = a.get("action", "")
        if "data-product" in a:
            self._items.append(
                {"asin": a["data-product"], "title": a.get("data-title", ""), "price": float(a.get("data-price") or 0)}
            )
        if (tag == "a" and "href" in a) or tag == "button":
            self._flush()
            a.setdefault("href", "")  # a button: shown like a clickable, reached by its action
            self._link = a
            self._link_text = []
            return
        if tag in _BLOCK:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
            return
        if tag in ("a", "button") and self._link is not None:
            label = " ".join(" ".join(self._link_text).split())
            link, self._link = self._link, None
            if label:
                self.page.pieces.append(Piece(label, link["href"]))
                if tag == "a":
                    self.page.clickables.setdefault(label.lower(), link["href"])
                if "data-option" in link:
                    self._options.setdefault(link["data-option"], []).append(label.lower())
                    if "selected" in link.get("class", "").split():
                        self._selected[link["data-option"]] = label.lower()
            return
        if tag in _BLOCK:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._link is not None:
            self._link_text.append(data)
        else:
            self._buffer.append(data)

    def close(self) -> None:
        super().close()
        self._flush()
        self.page.data = {"items": self._items, "options": self._options, "selected": self._selected}


def parse_page(html: str) -> ParsedPage:
    """Parse one shop page."""
    parser = _Parser()
    parser.feed(html)
    parser.close()
    return parser.page
