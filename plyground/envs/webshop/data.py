"""WebShop data: products and goals in WebShop's own schema, loaders, and a seeded generator.

Products and goals follow the layout upstream WebShop (princeton-nlp/WebShop) reads and builds
(see its ``web_agent_site/utils.py`` and ``engine/goal.py``):

- a product record (``items_shuffle*.json``) has ``asin``, ``name``, ``full_description``,
  ``small_description`` (bullet points), ``pricing``, ``customization_options``, ``images``,
  ``category``, ``query``, ``product_category``; attributes come from ``items_ins_v2*.json``;
- a goal has ``asin, category, query, name, product_category, instruction_text, attributes,
  price_upper, goal_options, weight``.

The loaders take paths; nothing here reads a fixed data folder. ``generate_catalogue`` makes a
seeded catalogue (1k-100k products) with goals in the same schema, for tests and default runs.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

# The price grid upstream draws goal price bounds from: 10, 20, ..., 990.
PRICE_RANGE = [10.0 * i for i in range(1, 100)]
NO_PRICE_BOUND = 1000000.0
DEFAULT_PRICE = 100.0
# Upstream shuffles its goal list with this seed.
GOAL_SHUFFLE_SEED = 233


@dataclass
class Product:
    """One product as the shop shows it (upstream's in-memory product after loading)."""

    asin: str
    name: str
    full_description: str = ""
    bullet_points: list[str] = field(default_factory=list)
    pricing: list[float] = field(default_factory=lambda: [DEFAULT_PRICE])
    price: float = DEFAULT_PRICE  # fixed once per product for a run (upstream's product_prices)
    options: dict[str, list[str]] = field(default_factory=dict)
    attributes: list[str] = field(default_factory=list)
    category: str = ""
    query: str = ""
    product_category: str = ""
    images: list[str] = field(default_factory=list)
    rating: str = "N.A."

    @property
    def title(self) -> str:
        return self.name

    @property
    def price_text(self) -> str:
        if len(self.pricing) >= 2:
            return f"${self.pricing[0]:.2f} to ${self.pricing[1]:.2f}"
        return f"${self.pricing[0]:.2f}"

    def reward_view(self) -> dict[str, Any]:
        """The fields the reward reads, under upstream's names."""
        return {
            "asin": self.asin,
            "name": self.name,
            "Title": self.name,
            "query": self.query,
            "product_category": self.product_category,
            "Attributes": list(self.attributes),
            "BulletPoints": list(self.bullet_points),
            "Description": self.full_description,
        }

    def to_record(self) -> dict[str, Any]:
        """The product as a record of upstream's ``items_shuffle*.json``."""
        if len(self.pricing) >= 2:
            pricing = f"${self.pricing[0]:.2f} - ${self.pricing[1]:.2f}"
        else:
            pricing = f"${self.pricing[0]:.2f}"
        return {
            "asin": self.asin,
            "name": self.name,
            "full_description": self.full_description,
            "small_description": list(self.bullet_points),
            "pricing": pricing,
            "customization_options": {
                name: [{"value": value, "image": None} for value in values] for name, values in self.options.items()
            }
            or None,
            "images": list(self.images),
            "category": self.category,
            "query": self.query,
            "product_category": self.product_category,
        }

    def attributes_record(self) -> dict[str, Any]:
        """The product's entry in upstream's ``items_ins_v2*.json`` (attributes only)."""
        return {"attributes": list(self.attributes)}


@dataclass
class Goal:
    """A shopping goal in upstream's schema; ``goal_options`` is a dict (synthetic) or a list (human)."""

    asin: str
    instruction_text: str
    attributes: list[str] = field(default_factory=list)
    price_upper: float = NO_PRICE_BOUND
    goal_options: dict[str, str] | list[str] = field(default_factory=list)
    category: str = ""
    query: str = ""
    name: str = ""
    product_category: str = ""
    weight: float = 1.0

    @property
    def option_values(self) -> list[str]:
        opts = self.goal_options
        return list(opts.values()) if isinstance(opts, dict) else list(opts)

    def to_dict(self) -> dict[str, Any]:
        opts: dict[str, str] | list[str] = (
            dict(self.goal_options) if isinstance(self.goal_options, dict) else list(self.goal_options)
        )
        return {
            "asin": self.asin,
            "category": self.category,
            "query": self.query,
            "name": self.name,
            "product_category": self.product_category,
            "instruction_text": self.instruction_text,
            "attributes": list(self.attributes),
            "price_upper": float(self.price_upper),
            "goal_options": opts,
            "weight": float(self.weight),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Goal:
        opts = data.get("goal_options") or []
        return cls(
            asin=str(data.get("asin", "")),
            instruction_text=str(data.get("instruction_text", "")),
            attributes=[str(a) for a in data.get("attributes") or []],
            price_upper=float(data.get("price_upper", NO_PRICE_BOUND)),
            goal_options=({str(k): str(v) for k, v in opts.items()} if isinstance(opts, dict) else [str(o) for o in opts]),
            category=str(data.get("category", "")),
            query=str(data.get("query", "")),
            name=str(data.get("name", "")),
            product_category=str(data.get("product_category", "")),
            weight=float(data.get("weight", 1.0)),
        )

    @classmethod
    def from_instruction(cls, text: str) -> Goal:
        """A goal known only by its instruction (e.g. a line of ``human_goals.json``): no target,
        attributes or options; the price bound is read from the text when it states one."""
        return cls(asin="", instruction_text=text.strip(), price_upper=parse_price_upper(text))


_PRICE_RE = re.compile(r"(?:lower|less) than \$?\s*([0-9][0-9,]*(?:\.[0-9]+)?)\s*(?:dollars|\$)?", re.I)


def parse_price_upper(text: str) -> float:
    """The price bound an instruction states ("price lower than 40.00 dollars"), else no bound."""
    match = _PRICE_RE.search(text)
    if not match:
        return NO_PRICE_BOUND
    try:
        return float(match.group(1).replace(",", ""))
    except ValueError:
        return NO_PRICE_BOUND


@dataclass
class Catalogue:
    """Products (with one fixed price each) and the goals over them."""

    products: list[Product]
    goals: list[Goal]
    seed: int | None = None
    name: str = "catalogue"
    _by_asin: dict[str, Product] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_asin = {p.asin: p for p in self.products}

    def get(self, asin: str) -> Product | None:
        return self._by_asin.get(asin) or self._by_asin.get(asin.upper())

    def __len__(self) -> int:
        return len(self.products)

    @property
    def key(self) -> str:
        """Identifies the catalogue for caches (the search index)."""
        return f"{self.name}:{self.seed}:{len(self.products)}:{id(self)}"


# -- loaders for upstream files ---------------------------------------------------------------
def _read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def parse_pricing(pricing: Any) -> list[float]:
    """Upstream's rule: split on ``$``, keep digits and dots, at most two floats; none -> 100."""
    if not pricing:
        return [DEFAULT_PRICE]
    if isinstance(pricing, (int, float)):
        return [float(pricing)]
    if isinstance(pricing, list):
        return [float(p) for p in pricing[:2]] or [DEFAULT_PRICE]
    values: list[float] = []
    for part in str(pricing).split("$")[1:]:
        digits = "".join(ch for ch in part if ch.isdigit() or ch == ".")
        try:
            values.append(float(digits))
        except ValueError:
            continue
    return values[:2] or [DEFAULT_PRICE]


def _clean_option(value: str) -> str:
    return value.strip().lower().replace("/", " | ")


def product_from_record(
    record: dict[str, Any], attributes: dict[str, Any] | None = None, rng: random.Random | None = None
) -> Product:
    """One upstream product record -> ``Product``; a price range draws the fixed price from ``rng``."""
    asin = str(record["asin"])
    bullets = record.get("small_description") or []
    if isinstance(bullets, str):
        bullets = [bullets]
    pricing = parse_pricing(record.get("pricing"))
    if len(pricing) >= 2:
        low, high = pricing[0], pricing[1]
        price = round((rng or random.Random(asin)).uniform(low, high), 2) if high > low else low
    else:
        price = pricing[0]
    options: dict[str, list[str]] = {}
    for name, values in (record.get("customization_options") or {}).items():
        if values is None:
            continue
        cleaned = [_clean_option(str(v.get("value", "")) if isinstance(v, dict) else str(v)) for v in values]
        options[name.lower()] = [v for v in cleaned if v]
    attrs = ["DUMMY_ATTR"]
    if attributes is not None and asin in attributes:
        attrs = list(attributes[asin].get("attributes") or [])
    return Product(
        asin=asin,
        name=str(record.get("name") or ""),
        full_description=str(record.get("full_description") or ""),
        bullet_points=[str(b) for b in bullets],
        pricing=pricing,
        price=float(price),
        options=options,
        attributes=attrs,
        category=str(record.get("category") or ""),
        query=str(record.get("query") or "").lower().strip(),
        product_category=str(record.get("product_category") or ""),
        images=[str(i) for i in record.get("images") or []],
    )


def load_attributes(path: str | Path) -> dict[str, dict[str, Any]]:
    """``items_ins_v2*.json``: ASIN -> {attributes, instruction?, instruction_attributes?}."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by ASIN")
    return data


def load_human_instructions(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """``items_human_ins.json``: ASIN -> list of {instruction, instruction_attributes, instruction_options}."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by ASIN")
    return data


def load_human_goal_texts(path: str | Path) -> list[str]:
    """``human_goals.json`` (baseline_models/data): a list of instruction strings."""
    data = _read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON array of instruction strings")
    return [str(x) for x in data]


def load_products(
    path: str | Path, attributes_path: str | Path | None = None, seed: int = 0
) -> list[Product]:
    """``items_shuffle*.json`` (+ optional attributes file) -> products, upstream's filtering:
    ASIN ``"nan"`` or longer than 10 characters is skipped; a repeated ASIN keeps its first."""
    records = _read_json(path)
    attributes = load_attributes(attributes_path) if attributes_path else None
    rng = random.Random(seed)
    seen: set[str] = set()
    products = []
    for record in records:
        asin = str(record.get("asin", "nan"))
        if asin == "nan" or len(asin) > 10 or asin in seen:
            continue
        seen.add(asin)
        products.append(product_from_record(record, attributes, rng))
    return products


def _price_bound(price: float, rng: random.Random | _Draws) -> tuple[float, str]:
    first = int(price // 10.0) + 1  # the first grid value above the price is 10 * first
    grid = [10.0 * i for i in range(max(first, 1), min(first + 4, 100))]
    if len(grid) >= 2:
        upper = max(rng.sample(grid, 2))
        return upper, f", and price lower than {upper:.2f} dollars"
    return NO_PRICE_BOUND, ""


def build_goals(
    products: list[Product],
    human_instructions: dict[str, list[dict[str, Any]]] | None = None,
    synthetic_instructions: dict[str, dict[str, Any]] | None = None,
    seed: int = GOAL_SHUFFLE_SEED,
    max_combinations: int | None = None,
) -> list[Goal]:
    """Goals as upstream builds them: one per usable human instruction record (human mode), or one
    per option combination of each product with a synthetic instruction (synthetic mode).
    ``synthetic_instructions`` is the attributes file (``instruction`` / ``instruction_attributes``).
    The list is shuffled with ``seed`` (upstream: 233)."""
    rng = random.Random(seed)
    goals: list[Goal] = []
    if human_instructions is not None:
        for product in products:
            for rec in human_instructions.get(product.asin, []):
                attrs = list(rec.get("instruction_attributes") or [])
                if not attrs:
                    continue
                upper, price_text = _price_bound(product.price, rng)
                goals.append(
                    Goal(
                        asin=product.asin,
                        instruction_text=str(rec.get("instruction", "")).strip(".") + price_text,
                        attributes=attrs,
                        price_upper=upper,
                        goal_options=list(rec.get("instruction_options") or []),
                        category=product.category,
                        query=product.query,
                        name=product.name,
                        product_category=product.product_category,
                        weight=1.0,
                    )
                )
    else:
        counts: dict[str, int] = defaultdict(int)
        for product in products:
            info = (synthetic_instructions or {}).get(product.asin) or {}
            text = info.get("instruction")
            attrs = list(info.get("instruction_attributes") or [])
            if not text or not attrs:
                continue
            upper, price_text = _price_bound(product.price, rng)
            names = sorted(product.options)
            combos = itertools.islice(itertools.product(*(product.options[n] for n in names)), max_combinations)
            for combo in combos:
                chosen = dict(zip(names, combo, strict=True))
                option_text = ", and ".join(f"{k}: {v}" for k, v in chosen.items())
                option_text = f" with {option_text}" if option_text else ""
                goals.append(
                    Goal(
                        asin=product.asin,
                        instruction_text=f"{text}{option_text}{price_text}",
                        attributes=attrs,
                        price_upper=upper,
                        goal_options=chosen,
                        category=product.category,
                        query=product.query,
                        name=product.name,
                        product_category=product.product_category,
                    )
                )
                for att in attrs:
                    counts[att] += 1
        for goal in goals:
            goal.weight = sum(1.0 / counts[a] for a in goal.attributes) / len(goal.attributes)
    rng.shuffle(goals)
    return goals


def load_catalogue(
    products_path: str | Path,
    attributes_path: str | Path | None = None,
    human_instructions_path: str | Path | None = None,
    seed: int = 0,
) -> Catalogue:
    """Products plus goals (human goals when their file is given, else synthetic ones)."""
    products = load_products(products_path, attributes_path, seed=seed)
    if human_instructions_path is not None:
        goals = build_goals(products, human_instructions=load_human_instructions(human_instructions_path))
    else:
        goals = build_goals(
            products, synthetic_instructions=load_attributes(attributes_path) if attributes_path else None
        )
    return Catalogue(products, goals, seed=seed, name=str(products_path))


# -- the seeded generator --------------------------------------------------------------------
# Each product type: (noun phrase of the type, query, breadcrumb tail, option kinds).
_TYPES: dict[str, list[tuple[str, str, str, tuple[str, ...]]]] = {
    "beauty": [
        ("shampoo", "shampoo", "Hair Care › Shampoo & Conditioner › Shampoos", ("size/volume", "scent")),
        ("conditioner", "conditioner", "Hair Care › Shampoo & Conditioner › Conditioners", ("size/volume", "scent")),
        ("face moisturizer", "face care", "Skin Care › Face › Moisturizers", ("size/volume",)),
        ("lip balm", "lip care", "Skin Care › Lip Care › Balms & Moisturizers", ("color", "size/pack")),
        ("nail polish", "nail polish", "Foot, Hand & Nail Care › Nail Art & Polish › Nail Polish", ("color",)),
        ("hair dryer", "hair styling tools", "Hair Care › Styling Tools & Appliances › Hair Dryers", ("color",)),
        ("makeup brush set", "makeup brushes", "Tools & Accessories › Makeup Brushes & Tools › Brush Sets", ("color",)),
        ("body wash", "body wash", "Personal Care › Bath & Bathing Accessories › Body Washes", ("scent", "size/volume")),
        ("deodorant", "deodorant", "Personal Care › Deodorants & Antiperspirants › Deodorants", ("scent", "size/pack")),
        ("hair extension", "hair extensions", "Hair Care › Hair Extensions, Wigs & Accessories › Extensions", ("color", "size/length")),
    ],
    "electronics": [
        ("wireless earbuds", "headphones", "Headphones › Earbud Headphones", ("color",)),
        ("bluetooth speaker", "portable speakers", "Portable Audio & Video › Portable Speakers", ("color",)),
        ("phone case", "cell phone cases", "Cell Phones & Accessories › Cases, Holsters & Sleeves", ("color", "style")),
        ("usb charger", "chargers", "Power Accessories › Chargers & Adapters", ("color", "size/pack")),
        ("hdmi cable", "cables", "Accessories & Supplies › Audio & Video Accessories › Cables", ("size/length",)),
        ("watch band", "wearable technology", "Wearable Technology › Arm & Wristband Accessories", ("color", "size")),
        ("security camera", "security cameras", "Camera & Photo › Video Surveillance › Surveillance Cameras", ("style",)),
        ("laptop sleeve", "laptop bags", "Computers & Accessories › Laptop Accessories › Bags, Cases & Sleeves", ("color", "size")),
        ("gaming mouse", "computer mice", "Computers & Accessories › Computer Accessories › Keyboards, Mice & Accessories", ("color",)),
        ("tv mount", "tv mounts", "Television & Video › Accessories › TV Mounts", ("size/furniture",)),
    ],
    "fashion": [
        ("running shoes", "men's athletic shoes", "Clothing, Shoes & Jewelry › Men › Shoes › Athletic", ("color", "size/shoe")),
        ("loafers", "women's loafers & slip-ons", "Clothing, Shoes & Jewelry › Women › Shoes › Loafers & Slip-Ons", ("color", "size/shoe")),
        ("t-shirt", "men's shirts", "Clothing, Shoes & Jewelry › Men › Clothing › Shirts", ("color", "size")),
        ("hoodie", "women's hoodies", "Clothing, Shoes & Jewelry › Women › Clothing › Hoodies", ("color", "size")),
        ("jeans", "men's jeans", "Clothing, Shoes & Jewelry › Men › Clothing › Jeans", ("color", "size")),
        ("dress", "women's dresses", "Clothing, Shoes & Jewelry › Women › Clothing › Dresses", ("color", "size")),
        ("socks", "socks", "Clothing, Shoes & Jewelry › Men › Clothing › Socks", ("color", "size/pack")),
        ("sandals", "women's sandals", "Clothing, Shoes & Jewelry › Women › Shoes › Sandals", ("color", "size/shoe")),
        ("backpack", "backpacks", "Clothing, Shoes & Jewelry › Luggage & Travel Gear › Backpacks", ("color",)),
        ("sunglasses", "sunglasses", "Clothing, Shoes & Jewelry › Men › Accessories › Sunglasses", ("color",)),
    ],
    "grocery": [
        ("coffee beans", "coffee", "Grocery & Gourmet Food › Beverages › Coffee › Whole Coffee Beans", ("flavor", "size/volume")),
        ("green tea", "tea", "Grocery & Gourmet Food › Beverages › Tea › Green Tea", ("flavor", "size/pack")),
        ("protein bars", "snack bars", "Grocery & Gourmet Food › Snacks › Bars › Protein Bars", ("flavor", "size/pack")),
        ("beef jerky", "jerky", "Grocery & Gourmet Food › Meat & Seafood › Jerky", ("flavor", "size/volume")),
        ("dark chocolate", "chocolate", "Grocery & Gourmet Food › Candy & Chocolate › Chocolate Bars", ("flavor", "size/pack")),
        ("olive oil", "cooking oils", "Grocery & Gourmet Food › Pantry Staples › Oils › Olive Oil", ("size/volume",)),
        ("pasta sauce", "sauces", "Grocery & Gourmet Food › Pantry Staples › Sauces › Pasta Sauces", ("flavor", "size/volume")),
        ("granola", "cereal", "Grocery & Gourmet Food › Breakfast Foods › Granola", ("flavor", "size/volume")),
        ("potato chips", "chips", "Grocery & Gourmet Food › Snacks › Chips & Crisps", ("flavor", "size/pack")),
        ("birthday candles", "party supplies", "Home & Kitchen › Home Décor Products › Candles & Holders › Birthday Candles", ("color",)),
    ],
    "furniture": [
        ("sofa", "sofas and couches", "Home & Kitchen › Furniture › Living Room Furniture › Sofas & Couches", ("color", "style")),
        ("ottoman bench", "ottomans", "Home & Kitchen › Furniture › Living Room Furniture › Ottomans", ("color", "size/furniture")),
        ("office chair", "office chairs", "Home & Kitchen › Furniture › Home Office Furniture › Chairs", ("color",)),
        ("bookshelf", "bookcases", "Home & Kitchen › Furniture › Home Office Furniture › Bookcases", ("color", "size/furniture")),
        ("coffee table", "tables", "Home & Kitchen › Furniture › Living Room Furniture › Tables", ("color", "style")),
        ("bed frame", "beds", "Home & Kitchen › Furniture › Bedroom Furniture › Beds & Frames", ("color", "size/furniture")),
        ("nightstand", "nightstands", "Home & Kitchen › Furniture › Bedroom Furniture › Nightstands", ("color",)),
        ("bar stool", "stools", "Home & Kitchen › Furniture › Kitchen & Dining Room Furniture › Stools", ("color", "size/furniture")),
        ("shoe rack", "shoe organizers", "Home & Kitchen › Storage & Organization › Shoe Organizers", ("color", "size/furniture")),
        ("tv stand", "tv stands", "Home & Kitchen › Furniture › Living Room Furniture › TV Stands", ("color", "size/furniture")),
    ],
}
_TOP = {
    "beauty": "Beauty & Personal Care",
    "electronics": "Electronics",
    "fashion": "",
    "grocery": "",
    "furniture": "",
}
_ATTRIBUTES = {
    "beauty": ["sulfate free", "paraben free", "long lasting", "natural ingredients", "cruelty free",
               "dry skin", "sensitive skin", "tea tree", "argan oil", "easy carry", "high quality", "travel size"],
    "electronics": ["noise cancelling", "fast charging", "water resistant", "high definition", "long battery life",
                    "easy install", "usb c", "stereo sound", "wall mount", "high speed", "plug play", "easy carry"],
    "fashion": ["machine wash", "slim fit", "relaxed fit", "rubber sole", "arch support", "moisture wicking",
                "long sleeve", "short sleeve", "quick drying", "daily wear", "teen girls", "button closure"],
    "grocery": ["gluten free", "non gmo", "sugar free", "low carb", "keto friendly", "usda organic", "dairy free",
                "high protein", "ready eat", "individually wrapped", "natural flavors", "birthday cake"],
    "furniture": ["living room", "easy assemble", "solid wood", "storage space", "wood frame", "metal legs",
                  "space saving", "non slip", "high density", "easy clean", "dining room", "engineered wood"],
}
_SIZES = {
    "size": ["small", "medium", "large", "x-large", "xx-large"],
    "size/shoe": ["6", "6.5", "7", "7.5", "8", "8.5", "9", "9.5", "10", "11", "12"],
    "size/volume": ["3.4 fl oz", "8 fl oz", "12 ounce", "16 ounce", "32 ounce", "1 gallon"],
    "size/pack": ["pack of 1", "pack of 2", "pack of 3", "pack of 6", "pack of 12", "24 count"],
    "size/length": ["3 feet", "6 feet", "10 feet", "15 feet", "25 feet"],
    "size/furniture": ["small", "medium", "large", "twin", "full", "queen", "king", "40 inch", "55 inch"],
}
_OPTION_VALUES = {
    **_SIZES,
    "color": ["black", "white", "grey", "navy blue", "red", "pink", "green", "beige", "brown", "purple",
              "yellow", "teal", "silver", "gold", "orange", "light blue"],
    "scent": ["lavender", "vanilla", "unscented", "coconut", "eucalyptus", "citrus", "rose", "sandalwood"],
    "flavor": ["original", "chocolate", "vanilla", "peanut butter", "sea salt", "barbecue", "honey", "mint",
               "strawberry", "caramel"],
    "style": ["modern", "classic", "1 pack", "2 pack", "wireless", "wired", "compact", "deluxe"],
}
_BRANDS = ["Acme", "Norvell", "Brightly", "Kestrel", "Lumina", "Oakhaven", "Zephyr", "Pinecrest", "Vantor",
           "Halcyon", "Morrow", "Quilla", "Tessly", "Ardent", "Bluefin", "Corvo", "Dunmore", "Everly", "Fennick",
           "Grayson", "Hollis", "Ivers", "Juniper", "Kobalt", "Larkspur", "Mirelle", "Nimbus", "Orrin"]
_DESCRIPTORS = ["premium", "classic", "deluxe", "everyday", "professional", "lightweight", "portable", "compact",
                "ultra", "essential", "signature", "original", "advanced", "elegant", "durable", "soft"]
_AUDIENCE = ["for women", "for men", "for kids", "for home", "for travel", "for office", "for adults", ""]
_ASIN_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class _Draws:
    """Seeded uniform draws, made by numpy in blocks (the stdlib's ``random.sample`` and
    ``choice`` cost most of the generator's time); the few ``random.Random`` methods used here."""

    def __init__(self, seed: int, block: int = 1 << 16) -> None:
        self._gen = np.random.default_rng(seed)
        self._block = block
        self._u: list[float] = []
        self._i = 0

    def random(self) -> float:
        if self._i >= len(self._u):
            self._u = self._gen.random(self._block).tolist()
            self._i = 0
        self._i += 1
        return self._u[self._i - 1]

    def randint(self, low: int, high: int) -> int:
        return low + int(self.random() * (high - low + 1))

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def choice(self, seq: Sequence[T]) -> T:
        return seq[int(self.random() * len(seq))]

    def sample(self, seq: Sequence[T], k: int) -> list[T]:
        pool = list(seq)
        n = len(pool)
        for i in range(min(k, n)):
            j = i + int(self.random() * (n - i))
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]

    def lognormal(self, mu: float, sigma: float) -> float:
        # Box-Muller: one standard normal from two uniforms
        z = math.sqrt(-2.0 * math.log(1.0 - self.random())) * math.cos(2.0 * math.pi * self.random())
        return math.exp(mu + sigma * z)


def _asin(rng: _Draws, seen: set[str]) -> str:
    while True:
        asin = "B0" + "".join([_ASIN_CHARS[int(rng.random() * 36)] for _ in range(8)])
        if asin not in seen:
            seen.add(asin)
            return asin


def generate_catalogue(n_products: int = 1000, seed: int = 0, goals_per_product: int = 1) -> Catalogue:
    """A seeded catalogue of ``n_products`` products and goals in WebShop's schema.

    Each goal targets one product: its instruction names the product type, one to three of its
    attributes, one value per option kind (synthetic style, ``goal_options`` a dict) and a price
    bound drawn as upstream does. 100k products take a few seconds.
    """
    if n_products < 1:
        raise ValueError("n_products must be at least 1")
    # Hundreds of thousands of new objects would set off the cyclic GC over and over (they hold
    # no cycles): pause it while generating.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _generate(n_products, seed, goals_per_product)
    finally:
        if was_enabled:
            gc.enable()


def _generate(n_products: int, seed: int, goals_per_product: int) -> Catalogue:
    rng = _Draws(seed)
    seen: set[str] = set()
    products: list[Product] = []
    goals: list[Goal] = []
    categories = sorted(_TYPES)
    for _ in range(n_products):
        category = rng.choice(categories)
        noun, query, crumbs, option_kinds = rng.choice(_TYPES[category])
        top = _TOP[category]
        product_category = f"{top} › {crumbs}" if top else crumbs
        brand = rng.choice(_BRANDS)
        descriptor = rng.choice(_DESCRIPTORS)
        attrs = rng.sample(_ATTRIBUTES[category], rng.randint(2, 4))
        shown = attrs[: rng.randint(1, len(attrs))]
        audience = rng.choice(_AUDIENCE)
        title = f"{brand} {descriptor.title()} {noun.title()} {audience}".strip()
        title = f"{title}, {', '.join(a.title() for a in shown)}"
        options = {
            kind.split("/")[0]: sorted(rng.sample(_OPTION_VALUES[kind], 2 + int(rng.random() * 4)))
            for kind in option_kinds
        }
        base = round(rng.lognormal(3.2, 0.8), 2)
        base = min(max(base, 2.99), 980.0)
        pricing = [base] if rng.random() < 0.8 else [base, round(base * rng.uniform(1.05, 1.6), 2)]
        price = pricing[0] if len(pricing) == 1 else round(rng.uniform(pricing[0], pricing[1]), 2)
        bullets = [
            f"{a.capitalize()}: this {noun} is made to be {a}." for a in attrs
        ] + [f"Available in {len(v)} {k} options." for k, v in options.items()]
        description = (
            f"The {brand} {descriptor} {noun} {audience}. "
            + " ".join(f"It is {a}." for a in attrs)
            + f" Sold by {brand}."
        ).replace("  ", " ")
        product = Product(
            asin=_asin(rng, seen),
            name=title,
            full_description=description,
            bullet_points=bullets,
            pricing=pricing,
            price=price,
            options=options,
            attributes=attrs,
            category=category,
            query=query,
            product_category=product_category,
            images=[],
        )
        products.append(product)
        for _ in range(goals_per_product):
            goals.append(_goal_for(product, noun, rng))
    return Catalogue(products, goals, seed=seed, name="generated")


def _goal_for(product: Product, noun: str, rng: _Draws) -> Goal:
    attrs = rng.sample(product.attributes, rng.randint(1, min(3, len(product.attributes))))
    chosen = {name: rng.choice(values) for name, values in sorted(product.options.items())}
    upper, price_text = _price_bound(product.price, rng)
    lead = rng.choice(["i am looking for", "i need", "i want", "find me", "i'm looking for"])
    text = f"{lead} {' and '.join(attrs)} {noun}"
    option_text = ", and ".join(f"{k}: {v}" for k, v in chosen.items())
    if option_text:
        text += f" with {option_text}"
    return Goal(
        asin=product.asin,
        instruction_text=text + price_text,
        attributes=attrs,
        price_upper=upper,
        goal_options=chosen,
        category=product.category,
        query=product.query,
        name=product.name,
        product_category=product.product_category,
        weight=1.0,
    )


def write_catalogue(catalogue: Catalogue, folder: str | Path) -> tuple[Path, Path]:
    """Write the products and attributes as upstream files (``items_shuffle.json``,
    ``items_ins_v2.json``) so that ``load_products`` reads them back."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items = folder / "items_shuffle.json"
    attrs = folder / "items_ins_v2.json"
    items.write_text(json.dumps([p.to_record() for p in catalogue.products]), encoding="utf-8")
    attrs.write_text(json.dumps({p.asin: p.attributes_record() for p in catalogue.products}), encoding="utf-8")
    return items, attrs
