"""Two services writing one catalog: the last event wins in M2E, whichever service is faster."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from services.product_sync import ProductSync
from services.variant_sync import VariantSync
from services.variant_sync.settings import VariantSyncSettings
from shared.bootstrap import build_parts
from shared.catalog import RedisView
from shared.limiter import UnlimitedLimiter
from shared.m2e.client import Credentials, M2EClient

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


# ---------------------------------------------------------------- one view, every writer
# Service-level: each writer is a service instance sending as its worker would, the view
# in the real Redis, M2E the sandbox.


def view(redis_url: str) -> RedisView:
    return RedisView(aioredis.from_url(redis_url), 3600, prefix=f"it-cv-{uuid.uuid4().hex[:6]}")


def upsert(sku: str, version: int) -> dict[str, Any]:
    return {"op": "upsert", "product": m2e_product(sku, version, 2)}


async def writers(sandbox: Any, shared: Any) -> tuple[M2EClient, ProductSync, VariantSync]:
    client = M2EClient(sandbox.base_url, Credentials(CREDENTIALS), UnlimitedLimiter())
    return (
        client,
        ProductSync(set(CREDENTIALS), view=shared),
        VariantSync(set(CREDENTIALS), 0, shared),
    )


async def test_a_resync_after_a_stock_update_ends_with_the_resync(
    sandbox_server: Any, redis_url: str
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    client, products, variants = await writers(sandbox, view(redis_url))
    try:
        [out] = await products.send(client, ACCT_A, "product", [upsert("RS", 1)])
        assert out.status == "ok" and sandbox.variant(TOKEN_A, "RS-0")["quantity"] == 1
        [out] = await variants.send(
            client, ACCT_A, "variant.update", [{"sku": "RS-0", "quantity": 3}]
        )
        assert out.status == "ok" and sandbox.variant(TOKEN_A, "RS-0")["quantity"] == 3
        # Another replica of product-sync re-publishes the product, unchanged.
        other = ProductSync(set(CREDENTIALS), view=products.view)
        [out] = await other.send(client, ACCT_A, "product", [upsert("RS", 1)])
        assert out.status == "ok" and sandbox.variant(TOKEN_A, "RS-0")["quantity"] == 1
        patches = sandbox.requests("PATCH /catalog/product/variant/")
        assert patches[-1]["items"] == 1  # only the variant variant-sync had written
        # And again: now nothing changed anywhere, so nothing is sent.
        before = len(sandbox.requests())
        await products.send(client, ACCT_A, "product", [upsert("RS", 1)])
        assert len(sandbox.requests()) == before
    finally:
        await client.aclose()


async def test_deleted_by_another_writer_or_by_hand_an_upsert_creates_it_again(
    sandbox_server: Any, redis_url: str
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    shared = view(redis_url)
    client, one, _ = await writers(sandbox, shared)
    two = ProductSync(set(CREDENTIALS), view=shared)
    catalog = sandbox.sandbox.users[TOKEN_A].catalog
    try:
        await one.send(client, ACCT_A, "product", [upsert("DEL", 1)])
        [out] = await two.send(client, ACCT_A, "product", [{"op": "delete", "sku": "DEL"}])
        assert out.status == "ok" and catalog.get("DEL") is None
        [out] = await one.send(client, ACCT_A, "product", [upsert("DEL", 1)])  # unchanged
        assert (out.status, out.operation) == ("ok", "create") and catalog.get("DEL") is not None
        catalog.delete("DEL")  # by hand, in M2E
        [out] = await one.send(client, ACCT_A, "product", [upsert("DEL", 2)])  # changed
        assert out.status == "ok", out
        assert catalog.get("DEL")["title"] == "DEL v2"
    finally:
        await client.aclose()


async def test_the_loser_of_a_create_race_updates_to_its_version(
    sandbox_server: Any, redis_url: str
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    client, first, _ = await writers(sandbox, view(redis_url))

    class Racing(M2EClient):
        """Its first find ran before the other replica's create landed."""

        raced = False

        async def find_products(self, account_token: str, skus: list[str], **kw: Any) -> Any:
            if not Racing.raced:
                Racing.raced = True
                return {"list": [], "total": 0}
            return await super().find_products(account_token, skus, **kw)

    late = Racing(sandbox.base_url, Credentials(CREDENTIALS), UnlimitedLimiter())
    second = ProductSync(set(CREDENTIALS), view=view(redis_url))
    try:
        await first.send(client, ACCT_A, "product", [upsert("RACE", 1)])
        [out] = await second.send(late, ACCT_A, "product", [upsert("RACE", 2)])
        assert out.status == "ok", out
        assert sandbox.sandbox.users[TOKEN_A].catalog.get("RACE")["title"] == "RACE v2"
    finally:
        await client.aclose()
        await late.aclose()


async def test_with_redis_down_product_sync_asks_m2e_and_stays_right(
    sandbox_server: Any,
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    dead = RedisView(aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2), 60)
    client, products, _ = await writers(sandbox, dead)
    try:
        [out] = await products.send(client, ACCT_A, "product", [upsert("RD", 1)])
        assert out.status == "ok"
        [out] = await products.send(client, ACCT_A, "product", [upsert("RD", 1)])
        assert out.status == "ok"
        routes = [r["route"] for r in sandbox.requests()]
        assert routes.count("POST /catalog/product/find/") == 2  # the view knew nothing
        assert "PATCH /catalog/product/" not in routes  # and M2E said: unchanged
    finally:
        await client.aclose()


# ---------------------------------------------------------------- event time across topics


def timed(payload: dict[str, Any], at: float) -> dict[str, Any]:
    return {**payload, "_at": at}


async def test_an_older_event_never_overwrites_a_newer_one_whatever_the_topic(
    sandbox_server: Any, redis_url: str
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    client, products, variants = await writers(sandbox, view(redis_url))
    update = "variant.update"
    try:
        await products.send(client, ACCT_A, "product", [timed(upsert("ET", 1), 100.0)])
        [out] = await variants.send(
            client, ACCT_A, update, [timed({"sku": "ET-0", "quantity": 7}, 300.0)]
        )
        assert out.status == "ok"
        # A replay of an older stock event (the DLQ, another topic's lag): not written.
        [out] = await variants.send(
            client, ACCT_A, update, [timed({"sku": "ET-0", "quantity": 2}, 200.0)]
        )
        assert out.status == "superseded" and out.error is not None and out.error.code == "stale"
        assert sandbox.variant(TOKEN_A, "ET-0")["quantity"] == 7
        # A product event older than the stock update: its product fields and its other
        # variant are written, the variant the stock update wrote keeps the newer value.
        [out] = await products.send(client, ACCT_A, "product", [timed(upsert("ET", 2), 250.0)])
        assert out.status == "ok"
        product = sandbox.sandbox.users[TOKEN_A].catalog.get("ET")
        assert product["title"] == "ET v2"
        assert sandbox.variant(TOKEN_A, "ET-0")["quantity"] == 7
        assert sandbox.variant(TOKEN_A, "ET-1")["quantity"] == 2 % 50 + 1
        # An older product event than the last product write: nothing is written.
        [out] = await products.send(client, ACCT_A, "product", [timed(upsert("ET", 3), 150.0)])
        assert out.status == "superseded"
        # A newer one writes everything; an event without occurred_at is always applied.
        await products.send(client, ACCT_A, "product", [timed(upsert("ET", 4), 400.0)])
        assert sandbox.variant(TOKEN_A, "ET-0")["quantity"] == 4 % 50
        [out] = await variants.send(client, ACCT_A, update, [{"sku": "ET-0", "quantity": 9}])
        assert out.status == "ok" and sandbox.variant(TOKEN_A, "ET-0")["quantity"] == 9
    finally:
        await client.aclose()


async def test_product_sync_holds_nothing_per_sku_with_the_view_in_redis(redis_url: str) -> None:
    """Bounded worker memory whatever the catalog size: 15,000 distinct SKUs through
    product-sync's send (M2E answered by a stub), heap measured after 5,000 and at the end."""
    import gc
    import tracemalloc

    import httpx

    def m2e(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/find/"):
            return httpx.Response(200, json={"list": [], "total": 0})
        return httpx.Response(200, json={"created": len(json.loads(request.content))})

    client = M2EClient(
        "http://m2e.invalid",
        Credentials(CREDENTIALS),
        UnlimitedLimiter(),
        transport=httpx.MockTransport(m2e),
    )
    shared = view(redis_url)
    service = ProductSync(set(CREDENTIALS), view=shared)
    heap: list[int] = []
    tracemalloc.start()
    try:
        for batch in range(30):
            payloads = [upsert(f"MEM-{batch:03d}-{i:03d}", 1) for i in range(500)]
            outcomes = await service.send(client, ACCT_A, "product", payloads)
            assert {o.status for o in outcomes} == {"ok"}
            if batch in (9, 29):
                gc.collect()
                heap.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
        await client.aclose()
        redis = aioredis.from_url(redis_url)
        async for key in redis.scan_iter(f"{shared._prefix}:*", count=10_000):
            await redis.delete(key)
        await redis.aclose()
    grown = heap[1] - heap[0]
    # Kept in the process (MemoryView), 10,000 more SKUs take ~9 MiB.
    assert grown < 2**20, f"heap grew {grown / 2**20:.1f} MiB over 10,000 SKUs"
