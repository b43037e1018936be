"""The shop's data, made from one seed: users, a catalog, a stock ledger with history, coupons.

>>> import tempfile
>>> catalog = seed_data(tempfile.mkdtemp(), seed=7, history=2000)
>>> len(catalog.users), len(catalog.skus), catalog.skus[0]
(2000, 400, 'sku-0001')
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
from dataclasses import dataclass
from typing import Any, Dict, List

from .shop import schema
from .shop.schema import WAREHOUSES

__all__ = ["Catalog", "seed_data", "COUNTRIES", "COUPONS"]

# country: (share of users, currency, region)
COUNTRIES = {"US": (0.42, "USD", "us"), "GB": (0.14, "GBP", "eu"), "DE": (0.16, "EUR", "eu"),
             "FR": (0.11, "EUR", "eu"), "ES": (0.07, "EUR", "eu"), "NL": (0.05, "EUR", "eu"),
             "IT": (0.05, "EUR", "eu")}
COUPONS = {"SPRING15": 0.15, "WELCOME10": 0.10, "VIP20": 0.20, "SHIP5": 0.05}
_ADJECTIVES = ("wireless", "compact", "ergonomic", "organic", "steel", "bamboo", "smart", "classic", "travel",
               "heavy", "silent", "solar", "foldable", "vintage", "waterproof", "thermal", "magnetic", "modular",
               "portable", "premium")
_NOUNS = ("headphones", "kettle", "backpack", "lamp", "keyboard", "mug", "charger", "tent", "blender", "speaker",
          "desk", "jacket", "bottle", "camera", "drill", "pillow", "router", "scale", "grinder", "monitor")
_CATEGORIES = ("audio", "kitchen", "outdoor", "office", "home", "tools", "apparel")


@dataclass(frozen=True)
class Catalog:
    users: List[Dict[str, Any]]
    skus: List[str]
    names: List[str]


def _users(rng: random.Random, n: int) -> List[Dict[str, Any]]:
    countries = list(COUNTRIES)
    weights = [COUNTRIES[c][0] for c in countries]
    users = []
    for uid in range(1, n + 1):
        country = rng.choices(countries, weights)[0]
        users.append({"id": uid, "country": country, "currency": COUNTRIES[country][1],
                      "region": COUNTRIES[country][2], "client": "web" if rng.random() < 0.6 else "ios",
                      "tier": "vip" if rng.random() < 0.05 else "standard"})
    return users


def seed_data(data_dir: str, seed: int = 7, products: int = 400, users: int = 2000, history: int = 200_000) -> Catalog:
    """Create the databases and users.json in `data_dir` (which must not hold them yet)."""
    rng = random.Random(seed)
    os.makedirs(data_dir, exist_ok=True)
    people = _users(rng, users)
    with open(os.path.join(data_dir, "users.json"), "w", encoding="utf-8") as fh:
        json.dump(people, fh)
    skus = [f"sku-{i:04d}" for i in range(1, products + 1)]
    names = [f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {i}" for i in range(1, products + 1)]
    with open(os.path.join(data_dir, "catalog.json"), "w", encoding="utf-8") as fh:
        json.dump({"skus": skus, "names": names}, fh)
    inv = sqlite3.connect(os.path.join(data_dir, "inventory.db"))
    inv.execute("PRAGMA journal_mode=WAL")
    inv.executescript(schema.INVENTORY)
    inv.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?)", [
        (sku, name, rng.choice(_CATEGORIES), round(rng.uniform(3, 250), 2), rng.randint(50, 5000))
        for sku, name in zip(skus, names)])
    inv.executemany("INSERT INTO movements (sku, warehouse, delta, reason, ts) VALUES (?, ?, ?, 'initial', 0)",
                    [(sku, w, 2000) for sku in skus for w in WAREHOUSES])
    inv.executemany("INSERT INTO movements (sku, warehouse, delta, reason, ts) VALUES (?, ?, ?, ?, ?)", (
        (rng.choice(skus), rng.choice(WAREHOUSES), d, "sale" if d < 0 else "restock", 1.7e9 + i * 30.0)
        for i, d in enumerate(rng.choice((-3, -2, -1, -1, 1, 2, 4)) for _ in range(history))))
    inv.commit()
    inv.close()
    orders = sqlite3.connect(os.path.join(data_dir, "orders.db"))
    orders.execute("PRAGMA journal_mode=WAL")
    orders.executescript(schema.ORDERS)
    orders.executemany("INSERT INTO coupons VALUES (?, ?, ?)",
                       [(code, pct, int(round(pct * 100))) for code, pct in COUPONS.items()])
    orders.commit()
    orders.close()
    queue = sqlite3.connect(os.path.join(data_dir, "queue.db"))
    queue.execute("PRAGMA journal_mode=WAL")
    queue.executescript(schema.QUEUE)
    queue.close()
    return Catalog(people, skus, names)
