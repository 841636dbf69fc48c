"""Two services writing one catalog: the last event wins in M2E, whichever service is faster."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from services.product_sync import ProductSync
from services.variant_sync import VariantSync
from services.variant_sync.settings import VariantSyncSettings
from shared.bootstrap import build_parts

from .harness import (
    ACCT_A,
    CREDENTIALS,
    TOKEN_A,
    create_topics,
    eventually,
    produce,
    read_all,
    sandbox_config,
    update,
    worker_settings,
)
from .test_product_sync import m2e_product


async def test_a_new_product_and_its_first_stock_update_published_together_end_as_expected(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    products = await create_topics(bootstrap_servers, "product-upserts")
    variants = await create_topics(bootstrap_servers, "variant-updates")
    skus = [f"NEW-{i:03d}" for i in range(200)]
    await produce(
        bootstrap_servers,
        products,
        [
            (s, {"account_token": ACCT_A, "source": "m2e", "product": m2e_product(s, 1, 1)})
            for s in skus
        ],
    )
    await produce(bootstrap_servers, variants, [update(ACCT_A, s, quantity=77) for s in skus])
    common = {"rate_limit_enabled": False, "batch_linger_ms": 100, "failure_backoff_cap_s": 0.5}
    vs = worker_settings(
        bootstrap_servers,
        sandbox.base_url,
        variants,
        tmp_path,
        variant_not_found_retry_s=60,
        **common,
    )
    assert isinstance(vs, VariantSyncSettings)
    ps = worker_settings(bootstrap_servers, sandbox.base_url, products, tmp_path, **common)
    stock = build_parts(VariantSync(set(CREDENTIALS), vs.variant_not_found_retry_s), vs)
    catalog = build_parts(ProductSync(set(CREDENTIALS), {}), ps)
    # variant-sync is the faster one: its updates reach M2E before the products exist.
    await stock.worker.start()
    try:
        await eventually(lambda: len(sandbox.requests("PATCH /catalog/product/variant/")) > 0)
        await asyncio.sleep(0.5)
        await catalog.worker.start()
        try:
            await eventually(
                lambda: all(
                    (v := sandbox.variant(TOKEN_A, s)) and v["quantity"] == 77 for s in skus
                ),
                timeout_s=60,
            )
            results = [
                json.loads(r.value)
                for r in await read_all(bootstrap_servers, f"{variants}.results", 200)
            ]
            assert {r["status"] for r in results} == {"ok"}
            assert max(r["attempts"] for r in results) > 1  # they were answered 404 first
        finally:
            await catalog.worker.stop()
    finally:
        await stock.worker.stop()
