"""product-upserts throughput per process, limiter off (issue 5; target ≥ 10,000 msg/s).

    .venv/bin/m2e-sync stack up
    .venv/bin/python bench/product_upserts.py [--messages 100000] [--skus 5000]

Half the events are SAP Anywhere products (2 SKUs with variant values, brand,
manufacturer, custom fields, dimensions, pricing), half M2E-shaped; 5% deletes. The sink
answers every find with "not found", so every SKU is created once, then updated. Timed
from the first consumed message to the last commit, with a bare-consumer baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import uuid
from typing import Any

import common

from services.product_sync import ProductSync


def event(rng: random.Random, account: str, sku: str, version: int) -> dict[str, Any]:
    if rng.random() < 0.05:
        return {"account_token": account, "op": "delete", "sku": sku}
    if version % 2:
        return {
            "account_token": account,
            "source": "m2e",
            "product": {
                "sku": sku,
                "status": 1,
                "is_simple": True,
                "currency": "EUR",
                "title": f"{sku} v{version}",
                "variants": [
                    {
                        "sku": sku,
                        "barcode": None,
                        "price": 10.0 + version % 90,
                        "quantity": version % 40,
                    }
                ],
            },
        }
    skus = [f"{sku}-{size}" for size in ("S", "M")]
    return {
        "account_token": account,
        "source": "sap-anywhere",
        "product": {
            "code": sku,
            "name": f"{sku} v{version}",
            "status": "Active",
            "variantEnabled": True,
            "weight": 0.3,
            "weightUnitId": 2,
            "length": 20,
            "height": 3,
            "width": 15,
            "lengthUnitId": 2,
            "brand": {"id": 1, "name": "Acme"},
            "manufacturer": {"id": 2, "name": "Acme Works"},
            "attributes": [{"attribute1": "cotton"}],
            "customFields": {"season": "SS27"},
            "skus": [
                {
                    "code": c,
                    "barcode": "4006381333931",
                    "variantValues": [{"value": c[-1], "variant": {"name": "Size"}}],
                }
                for c in skus
            ],
        },
        "pricing": {
            "currency": "EUR",
            "variants": {c: {"price": 19.9, "quantity": version % 30} for c in skus},
        },
    }


async def throughput(messages: int = 100_000, skus: int = 5000) -> dict[str, Any]:
    accounts = [str(uuid.UUID(int=i + 1)) for i in range(2)]
    rng = random.Random(3)
    events = []
    for version in range(messages):
        sku = f"P-{rng.randrange(skus):05d}"
        account = accounts[hash(sku) % 2]
        events.append((sku.encode(), json.dumps(event(rng, account, sku, version)).encode()))
    return await common.throughput(ProductSync(set(accounts)), "product-upserts", events, accounts)


def throughput_met(t: dict[str, Any]) -> bool:
    return bool(t["msg_s"] >= 10_000)


async def main(args: argparse.Namespace) -> None:
    t = await throughput(args.messages, args.skus)
    print(f"baseline  bare aiokafka getmany          {t['baseline_msg_s']:10,.0f} msg/s")
    print(
        f"pipeline  product-sync, limiter off       {t['msg_s']:10,.0f} msg/s  "
        f"({t['seconds']:.2f}s; {t['msg_s'] / t['baseline_msg_s']:.3f}x the baseline)"
    )
    print(f"          requests by route: {t['routes']}")
    print(f"          target >= 10,000 msg/s: {common.verdict(throughput_met(t))}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--skus", type=int, default=5000)
    asyncio.run(main(parser.parse_args()))
