"""WebShop (Yao et al. 2022) as a local web shop: data, BM25 search, server, reward, envs, shopper.

- ``data``: ``Product`` / ``Goal`` in WebShop's schema, loaders for its files, ``generate_catalogue``;
- ``search``: a BM25 index (bm25s) per catalogue; ``server``: the shop on FastAPI + uvicorn;
- ``reward``: WebShop's reward on "Buy Now" (also ``plyground.verifiers.webshop.reward``);
- ``env``: ``WebShopEnv`` (text mode over HTTP) and ``WebShopBrowserEnv`` (Chromium via Playwright);
- ``shopper``: a scripted shopper for tests and behaviour-cloning data.
"""

from plyground.envs.webshop.data import (
    Catalogue,
    Goal,
    Product,
    build_goals,
    generate_catalogue,
    load_attributes,
    load_catalogue,
    load_human_goal_texts,
    load_human_instructions,
    load_products,
)
from plyground.envs.webshop.env import WebShopBrowserEnv, WebShopEnv, WebShopSnapshot, default_catalogue
from plyground.envs.webshop.reward import Purchase, RewardInfo, reward, reward_info
from plyground.envs.webshop.search import SearchIndex, index_for
from plyground.envs.webshop.server import ShopApp, ShopServer
from plyground.envs.webshop.shopper import ScriptedShopper, run_shopper

__all__ = [
    "Catalogue",
    "Goal",
    "Product",
    "Purchase",
    "RewardInfo",
    "ScriptedShopper",
    "SearchIndex",
    "ShopApp",
    "ShopServer",
    "WebShopBrowserEnv",
    "WebShopEnv",
    "WebShopSnapshot",
    "build_goals",
    "default_catalogue",
    "generate_catalogue",
    "index_for",
    "load_attributes",
    "load_catalogue",
    "load_human_goal_texts",
    "load_human_instructions",
    "load_products",
    "reward",
    "reward_info",
    "run_shopper",
]
