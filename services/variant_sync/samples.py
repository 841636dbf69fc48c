"""Realistic sample variant updates: prices and stock, with one invalid price."""

from __future__ import annotations

import random
from typing import Any

from services.product_sync.samples import sample_products

INVALID = 1  # a negative price, on purpose


def sample_updates(variants: list[tuple[str, str]], n: int) -> list[tuple[str, Any]]:
    rng = random.Random(8)
    events: list[tuple[str, Any]] = []
    for _ in range(n):
        account, sku = rng.choice(variants)
        change: dict[str, Any] = rng.choice(
            [
                {"price": round(rng.uniform(5, 60), 2)},
                {"quantity": rng.randrange(100)},
                {"price": round(rng.uniform(5, 60), 2), "quantity": rng.randrange(100)},
            ]
        )
        events.append((sku, {"account_token": account, "sku": sku, **change}))
    events.append(("BAD-PRICE", {"account_token": variants[0][0], "sku": "BAD-PRICE", "price": -3}))
    return events


def samples(n: int, account: str) -> list[tuple[str, Any]]:
    """N updates of sample products' variants, for `m2e-sync produce --sample`."""
    _, variants = sample_products([(account, "", "ebay")], max(1, n // 4))
    return sample_updates(variants, n)[:n]
