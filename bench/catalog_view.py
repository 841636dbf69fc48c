"""Redis memory of the shared catalog view (shared.catalog) per 100,000 product SKUs.

    .venv/bin/m2e-sync stack up
    .venv/bin/python bench/catalog_view.py [--skus 100000]

Writes one view entry per product (two variants each, as product-sync writes them) and a
write mark per variant (as variant-sync leaves them), then sums `MEMORY USAGE` of every key
it wrote: the figure does not depend on what else the Redis holds. The keys are deleted
after.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis.asyncio as aioredis
from common import REDIS_URL

from services.product_sync.known import Known
from shared.catalog import RedisView
from tests.integration.test_product_sync import m2e_product


async def measure(skus: int = 100_000) -> dict[str, Any]:
    redis = aioredis.from_url(REDIS_URL)
    prefix = f"bench-cv-{uuid.uuid4().hex[:6]}"
    view = RedisView(redis, 3600, prefix=prefix)
    catalog = "0123456789abcdef01234567"  # a bucket id's length
    try:
        for start in range(0, skus, 5000):
            products = [
                m2e_product(f"SKU-{i:07d}", i, 2) for i in range(start, min(start + 5000, skus))
            ]
            await view.put(catalog, {p["sku"]: Known.of(p).entry() for p in products})
            await view.written(catalog, [v["sku"] for p in products for v in p["variants"]])
        keys = [k async for k in redis.scan_iter(f"{prefix}:*", count=10_000)]
        total = 0
        for start in range(0, len(keys), 10_000):
            async with redis.pipeline(transaction=False) as pipe:
                for key in keys[start : start + 10_000]:
                    pipe.memory_usage(key)
                total += sum(n or 0 for n in await pipe.execute())
        return {"skus": skus, "keys": len(keys), "bytes": total, "per_sku": total / skus}
    finally:
        async for key in redis.scan_iter(f"{prefix}:*", count=10_000):
            await redis.delete(key)
        await redis.aclose()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skus", type=int, default=100_000)
    r = asyncio.run(measure(parser.parse_args().skus))
    print(
        f"{r['skus']:,} product SKUs with 2 variants: {r['keys']:,} keys, "
        f"{r['bytes'] / 2**20:.1f} MiB in Redis ({r['per_sku']:.0f} bytes per SKU)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
