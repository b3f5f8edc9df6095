"""Product search over a real BM25 index (bm25s), built once per catalogue and cached in memory.

Each product is indexed as upstream indexes it: the lower-cased title, description, first bullet
point and a summary of its options. A search returns up to 50 ASINs, best first (upstream's
``top_n``).
"""

from __future__ import annotations

import re
import threading
from typing import Any

from plyground.envs.webshop.data import Catalogue, Product
from plyground.errors import MissingComponentError

try:
    import bm25s
except ImportError:  # pragma: no cover - the `web` extra installs it
    bm25s = None

TOP_N = 50
_TOKEN = re.compile(r"[a-z0-9]+")
# Short English stop-word list (the index and queries drop them alike).
_STOP = frozenset(
    re.findall(
        r"\S+",
        "a an the and or of for to in on with by at from is are be i im i'm me my need want looking find am "
        "please that this it its as lower than price dollars",
    )
)


def tokenize(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


def document(product: Product) -> str:
    """The indexed text of a product."""
    options = " ".join(f"{name}: {', '.join(values)}" for name, values in product.options.items())
    bullet = product.bullet_points[0] if product.bullet_points else ""
    return f"{product.name} {product.full_description} {bullet} {options}".lower()


class SearchIndex:
    """A BM25 index over a catalogue's products."""

    def __init__(self, catalogue: Catalogue) -> None:
        if bm25s is None:
            raise MissingComponentError("bm25s", "pip install 'plyground[web]'")
        self.asins = [p.asin for p in catalogue.products]
        corpus = [tokenize(document(p)) for p in catalogue.products]
        self._retriever: Any = bm25s.BM25()
        self._retriever.index(corpus, show_progress=False)
        self._vocab = set(self._retriever.vocab_dict) if hasattr(self._retriever, "vocab_dict") else None
        self._lock = threading.Lock()

    def search(self, query: str, k: int = TOP_N) -> list[str]:
        """The ASINs of the best ``k`` matches for ``query`` (empty when no word is known)."""
        tokens = tokenize(query[:2000])
        if self._vocab is not None:
            tokens = [t for t in tokens if t in self._vocab]
        if not tokens:
            return []
        k = min(k, len(self.asins))
        with self._lock:  # bm25s retrieval is not documented as thread-safe
            docs, scores = self._retriever.retrieve([tokens], k=k, show_progress=False, n_threads=1)
        return [self.asins[int(i)] for i, s in zip(docs[0], scores[0], strict=True) if float(s) > 0.0]


_CACHE: dict[str, SearchIndex] = {}
_CACHE_LOCK = threading.Lock()


def index_for(catalogue: Catalogue) -> SearchIndex:
    """The catalogue's index, built on first use and then shared."""
    with _CACHE_LOCK:
        index = _CACHE.get(catalogue.key)
        if index is None:
            index = _CACHE[catalogue.key] = SearchIndex(catalogue)
        return index
