"""Realistic sample product events: SAP Anywhere- and M2E-shaped, with two invalid ones."""

from __future__ import annotations

import random
from typing import Any

INVALID = 2  # events refused on purpose: a bad currency, an unknown account


def sample_products(
    accounts: list[tuple[str, str, str]], n: int
) -> tuple[list[tuple[str, Any]], list[tuple[str, str]]]:
    """SAP Anywhere and M2E products over the demo accounts; returns events and (account, variant sku)."""
    rng = random.Random(7)
    events: list[tuple[str, Any]] = []
    variants: list[tuple[str, str]] = []
    skus: list[dict[str, Any]]
    for i in range(n):
        account = accounts[i % len(accounts)][0]
        if i % 2 == 0:
            code = f"SAP-{i:04d}"
            sizes = ["S", "M", "L"] if i % 4 == 0 else []
            skus = [
                {
                    "code": f"{code}-{s}",
                    "barcode": f"40063813{i:04d}{k}",
                    "variantValues": [{"value": s, "variant": {"name": "Size"}}],
                }
                for k, s in enumerate(sizes)
            ]
            product = {
                "code": code,
                "name": f"Organic Cotton Tee {i}",
                "status": "Active",
                "description": "Soft organic cotton.",
                "variantEnabled": bool(sizes),
                "skus": skus,
                "weight": 0.2,
                "weightUnitId": 2,
                "brand": {"id": 1, "name": "GreenWear"},
                "attributes": [{"attribute1": "organic"}],
                "customFields": {"season": "SS27"},
            }
            pricing = {
                "currency": "EUR",
                "variants": {
                    s["code"]: {
                        "price": round(rng.uniform(15, 40), 2),
                        "quantity": rng.randrange(50),
                    }
                    for s in skus
                },
            }
            events.append(
                (
                    code,
                    {
                        "account_token": account,
                        "source": "sap-anywhere",
                        "product": product,
                        "pricing": pricing,
                    },
                )
            )
            variants += [(account, s["code"]) for s in skus] or [(account, code)]
        else:
            sku = f"M2E-{i:04d}"
            product = {
                "sku": sku,
                "status": 1,
                "is_simple": True,
                "currency": "EUR",
                "title": f"Enamel Mug {i}",
                "images": [f"https://img.example.com/{sku}.jpg"],
                "variants": [{"sku": sku, "barcode": None, "price": 12.5, "quantity": 20}],
            }
            events.append((sku, {"account_token": account, "source": "m2e", "product": product}))
            variants.append((account, sku))
    events.append(
        (
            "BAD-CURRENCY",
            {
                "account_token": accounts[0][0],
                "product": {
                    "sku": "BAD-CURRENCY",
                    "status": 1,
                    "is_simple": True,
                    "currency": "euro",
                    "title": "Invalid on purpose",
                    "variants": [
                        {"sku": "BAD-CURRENCY", "barcode": None, "price": 1, "quantity": 1}
                    ],
                },
            },
        )
    )
    events.append(
        (
            "NO-ACCOUNT",
            {
                "account_token": "00000000-0000-4000-8000-000000000000",
                "source": "sap-anywhere",
                "product": {"code": "NO-ACCOUNT", "name": "Unknown account on purpose"},
            },
        )
    )
    return events, variants


def samples(n: int, account: str) -> list[tuple[str, Any]]:
    """N events for `m2e-sync produce --sample` (valid ones only)."""
    events, _ = sample_products([(account, "", "ebay")], n)
    return events[:n]
