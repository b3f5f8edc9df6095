"""WebShop's reward on "Buy Now", as upstream ``web_agent_site/engine/goal.py`` defines it.

    reward = r_type * (attribute hits + option hits + price hit) / (#attributes + #options + 1)

- ``r_type`` (product type): 1.0, or 0.5 when neither the search query, nor two breadcrumb parts,
  nor more than 20% of the goal title's nouns match; 0.1 when under 10% of the nouns match; 0.0
  when none does. (Upstream tags nouns with spaCy's large English model; that model is not
  installable here, so a rule-based tagger stands in: every word that is not a known function word,
  adjective, number or unit counts as a noun. The share is computed the same way: distinct shared
  nouns over the goal title's noun count, duplicates included.)
- an attribute hits when any product attribute has token-set similarity > 85 with it, or it occurs
  in the lower-cased title, bullet points or description;
- each chosen option hits when (for ``size``) it equals a goal option after colour normalisation,
  (otherwise) it has token-set similarity > 85 with one, or it occurs in the title, bullet points or
  description;
- the price hits when the price is at most ``price_upper``.

One deviation, to keep the reward in [0, 1]: option hits are capped at the number of goal options
(upstream counts every chosen option that matches, so a goal without options and a product whose
chosen colour appears in its title could score above 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from plyground.envs.webshop.data import Goal, Product

_rf_token_set_ratio: Any
try:  # rapidfuzz is what thefuzz (upstream's fuzz) runs on; a pure-Python fallback is below
    from rapidfuzz.fuzz import token_set_ratio as _rf_token_set_ratio
except ImportError:  # pragma: no cover - exercised only without rapidfuzz
    _rf_token_set_ratio = None

EXACT_MATCH_OPTIONS = ("size",)
FUZZY_THRESHOLD = 85

# The colour words upstream normalises option values to (the first one found in the value).
COLORS = (
    "beige", "black", "blue", "brown", "gold", "gray", "grey", "green", "ivory", "khaki", "navy", "orange",
    "pink", "purple", "red", "rose", "silver", "tan", "teal", "white", "yellow", "burgundy", "coral", "cream",
    "charcoal", "turquoise", "multicolor", "clear", "camel", "olive", "mint", "lavender", "maroon", "nude",
)


def normalize_color(value: str) -> str:
    """The first colour word found in ``value``, else ``value`` unchanged."""
    for color in COLORS:
        if color in value:
            return color
    return value


# -- fuzzy matching (thefuzz.token_set_ratio semantics) ------------------------------------------
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def _tokens(text: str) -> set[str]:
    return set(_NON_ALNUM.sub(" ", text.lower()).split())


def _indel_ratio(a: str, b: str) -> float:
    if not a and not b:
        return 100.0
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b):
            cur.append(prev[j] + 1 if ca == cb else max(prev[j + 1], cur[j]))
        prev = cur
    return 200.0 * prev[-1] / (len(a) + len(b))


def _py_token_set_ratio(a: str, b: str) -> float:
    ta, tb = _tokens(a), _tokens(b)
    if not ta or not tb:
        return 0.0
    common = " ".join(sorted(ta & tb))
    only_a = " ".join(sorted(ta - tb))
    only_b = " ".join(sorted(tb - ta))
    if common and (not only_a or not only_b):
        return 100.0
    joined_a = f"{common} {only_a}".strip()
    joined_b = f"{common} {only_b}".strip()
    scores = [_indel_ratio(joined_a, joined_b)]
    if common:
        scores += [_indel_ratio(common, joined_a), _indel_ratio(common, joined_b)]
    return max(scores)


def token_set_ratio(a: str, b: str) -> float:
    """Token-set similarity in 0..100 as thefuzz computes it (default processing: lower-cased,
    non-alphanumerics as spaces)."""
    a, b = a[:2000], b[:2000]
    if _rf_token_set_ratio is not None:
        return float(_rf_token_set_ratio(_NON_ALNUM.sub(" ", a.lower()), _NON_ALNUM.sub(" ", b.lower())))
    return _py_token_set_ratio(a, b)


# -- noun extraction (stand-in for spaCy's NOUN/PROPN tags) ---------------------------------------
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_FUNCTION_WORDS = _words(
    """a an the and or but nor for of in on at to from by with without within into onto over under up down
    out off about above below between among through during before after per via as than then so if is are
    was were be been being it its it's this that these those there here which who whom whose what when where
    why how all any both each few more most other some such no not only own same too very can will just
    should now your you our my his her their they them we i me he she him us also plus x w"""
)
_ADJECTIVES = _words(
    """new best great good high low long short large small big little mini extra super ultra premium classic
    deluxe everyday professional lightweight portable compact essential signature original advanced elegant
    durable soft hard heavy light dark bright natural organic free fresh pure real true full half double
    single multi universal adjustable waterproof wireless electric digital automatic manual modern vintage
    cute fashion casual comfortable warm cool hot cold fast quick easy simple smart slim thin thick wide
    narrow round square flat deep clear sweet healthy perfect beautiful pretty funny unique special
    different strong non anti replacement compatible suitable available made premium sturdy stylish
    breathable reusable rechargeable upholstered womens mens women's men's kids' unisex black white grey gray
    red blue green pink purple yellow orange brown beige navy teal silver gold golden"""
)
_NUMBERISH = re.compile(r"^[\d.,/\-x]+[a-z]{0,3}$")
_WORD = re.compile(r"[a-z0-9][a-z0-9'\-]*")


def nouns(title: str) -> list[str]:
    """The title's noun-like words, lower-cased, in order, duplicates kept."""
    out = []
    for word in _WORD.findall(title.lower()):
        word = word.strip("'-")
        if len(word) < 2 or word in _FUNCTION_WORDS or word in _ADJECTIVES or _NUMBERISH.match(word):
            continue
        if word.endswith(("ly", "ing", "able", "ful", "less", "ous", "ive")) and len(word) > 5:
            continue
        out.append(word)
    return out


# -- the reward ---------------------------------------------------------------------------------
@dataclass
class RewardInfo:
    """The reward and its parts, under upstream's ``reward_info`` names."""

    reward: float
    r_type: float
    r_att: float
    w_att: float
    query_match: bool
    category_match: bool
    title_score: float
    r_option: float | None = None
    w_option: float | None = None
    r_price: bool | None = None
    w_price: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "extra" and v is not None}
        out.update(self.extra)
        return out


@dataclass
class Purchase:
    """What was bought: the product, the options clicked (name -> value) and the price paid."""

    product: Product | dict[str, Any]
    options: dict[str, str] = field(default_factory=dict)
    price: float | None = None


def _view(product: Product | dict[str, Any]) -> dict[str, Any]:
    if isinstance(product, Product):
        return product.reward_view()
    view = dict(product)
    view.setdefault("Title", view.get("name", ""))
    view.setdefault("name", view.get("Title", ""))
    view.setdefault("Attributes", view.get("attributes", []))
    view.setdefault("BulletPoints", view.get("small_description", view.get("bullet_points", [])))
    view.setdefault("Description", view.get("full_description", ""))
    view.setdefault("query", "")
    view.setdefault("product_category", "")
    if isinstance(view["BulletPoints"], str):
        view["BulletPoints"] = [view["BulletPoints"]]
    return view


def type_reward(product: dict[str, Any], goal: Goal) -> tuple[float, bool, bool, float]:
    query_match = product["query"] == goal.query
    bought = {x.strip() for x in product["product_category"].split("›")}
    wanted = {x.strip() for x in goal.product_category.split("›")}
    category_match = len(bought & wanted) >= 2
    bought_nouns = set(nouns(product["name"]))
    wanted_nouns = nouns(goal.name)
    title_score = 0.2 if not wanted_nouns else len(bought_nouns & set(wanted_nouns)) / len(wanted_nouns)
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return r_type, query_match, category_match, title_score


def _in_text(value: str, product: dict[str, Any]) -> bool:
    return (
        value in product["Title"].lower()
        or value in " ".join(product["BulletPoints"]).lower()
        or value in product["Description"].lower()
    )


def attribute_hits(product: dict[str, Any], goal: Goal) -> int:
    hits = 0
    for wanted in goal.attributes:
        in_attributes = any(token_set_ratio(have, wanted) > FUZZY_THRESHOLD for have in product["Attributes"])
        if in_attributes or _in_text(wanted, product):
            hits += 1
    return hits


def option_hits(product: dict[str, Any], goal_options: list[str], chosen: dict[str, str]) -> int:
    wanted = [normalize_color(o) for o in goal_options]
    hits = 0
    for name, value in chosen.items():
        value = normalize_color(value)
        if name.lower() in EXACT_MATCH_OPTIONS:
            matched = value in wanted
        else:
            matched = any(token_set_ratio(w, value) > FUZZY_THRESHOLD for w in wanted)
        if matched or _in_text(value, product):
            hits += 1
    return hits


def reward_info(goal: Goal | dict[str, Any], purchase: Purchase) -> RewardInfo:
    """The reward with its parts (upstream's verbose ``get_reward``)."""
    goal = goal if isinstance(goal, Goal) else Goal.from_dict(goal)
    product = _view(purchase.product)
    price = purchase.price
    if price is None:
        price = purchase.product.price if isinstance(purchase.product, Product) else float(product.get("price", 0.0))
    r_type, query_match, category_match, title_score = type_reward(product, goal)
    n_att, goal_options = len(goal.attributes), goal.option_values
    n_opt = len(goal_options)
    denominator = n_att + n_opt + 1
    r_price = price <= goal.price_upper if goal.price_upper > 0 else None
    att = attribute_hits(product, goal)
    opt = min(option_hits(product, goal_options, {k: str(v) for k, v in purchase.options.items()}), n_opt)
    total = (att + opt + (1 if r_price else 0)) / denominator * r_type
    return RewardInfo(
        reward=float(total),
        r_type=r_type,
        r_att=att / n_att if n_att else 0.0,
        w_att=n_att / denominator,
        query_match=query_match,
        category_match=category_match,
        title_score=title_score,
        r_option=opt / n_opt if n_opt else None,
        w_option=n_opt / denominator if n_opt else None,
        r_price=r_price,
        w_price=1 / denominator if r_price is not None else None,
    )


def reward(goal: Goal | dict[str, Any], purchase: Purchase) -> float:
    """WebShop's reward of ``purchase`` for ``goal``, in [0, 1] (1.0: everything matches)."""
    return reward_info(goal, purchase).reward


def combine(
    r_type: float, r_att: float, n_att: int, r_option: float | None, n_opt: int, r_price: bool | None
) -> float:
    """The total from its parts, as upstream weighs them (used to check recorded ``reward_info``)."""
    hits = r_att * n_att + (r_option or 0.0) * n_opt + (1.0 if r_price else 0.0)
    return r_type * hits / (n_att + n_opt + 1)
