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
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import baseline, credentials, make_topic, produce, run_worker

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


async def main(args: argparse.Namespace) -> None:
    accounts = [str(uuid.UUID(int=i + 1)) for i in range(2)]
    rng = random.Random(3)
    messages = []
    for version in range(args.messages):
        sku = f"P-{rng.randrange(args.skus):05d}"
        account = accounts[hash(sku) % 2]
        messages.append((sku.encode(), json.dumps(event(rng, account, sku, version)).encode()))
    with tempfile.TemporaryDirectory() as tmp:
        creds = credentials(Path(tmp), accounts)
        topic = await make_topic("product-upserts")
        t = time.perf_counter()
        await produce(topic, messages)
        print(
            f"produced {args.messages:,} product events over {args.skus:,} SKUs in {time.perf_counter() - t:.1f}s"
        )
        base = await baseline(topic, args.messages)
        print(f"baseline  bare aiokafka getmany          {base:10,.0f} msg/s")
        elapsed, sink = await run_worker(
            ProductSync(set(accounts)), topic, args.messages, creds, limited=False
        )
        rate = args.messages / elapsed
        print(
            f"pipeline  product-sync, limiter off       {rate:10,.0f} msg/s  "
            f"({elapsed:.2f}s; {rate / base:.3f}x the baseline)"
        )
        print(f"          requests by route: {dict(sink.routes)}")
        print(f"          target >= 10,000 msg/s: {'MET' if rate >= 10_000 else 'NOT MET'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--skus", type=int, default=5000)
    asyncio.run(main(parser.parse_args()))
