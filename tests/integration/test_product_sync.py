"""product-sync end to end: exact catalog, few requests, any client can publish."""

from __future__ import annotations

import json
import math
import random
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

from services.product_sync import AccountDefaults, ProductSync
from shared.bootstrap import build_parts

from .harness import (
    ACCT_A,
    ACCT_B,
    CREDENTIALS,
    create_topics,
    eventually,
    produce,
    read_all,
    sandbox_config,
    wait_all_committed,
    worker_settings,
)


def m2e_product(sku: str, version: int, variants: int) -> dict[str, Any]:
    return {
        "sku": sku,
        "status": 1,
        "is_simple": variants == 1,
        "currency": "EUR",
        "title": f"{sku} v{version}",
        "description": f"version {version}",
        "images": [f"https://img.example.com/{sku}/{version}.jpg"],
        "attributes": [{"name": "version", "value": str(version)}],
        "variants": [
            {
                "sku": f"{sku}-{i}" if variants > 1 else sku,
                "barcode": f"{version:012d}",
                "price": float(version % 500) + i,
                "quantity": version % 50 + i,
            }
            for i in range(variants)
        ],
    }


def sap_product(sku: str, version: int, variants: int) -> tuple[dict[str, Any], dict[str, Any]]:
    skus = [
        {
            "code": f"{sku}-{i}",
            "barcode": f"{version:012d}",
            "variantValues": [{"value": str(i), "variant": {"name": "Size"}}],
        }
        for i in range(variants)
    ]
    product = {
        "code": sku,
        "name": f"{sku} v{version}",
        "status": "Active",
        "description": f"version {version}",
        "variantEnabled": variants > 1,
        "skus": skus if variants > 1 else [],
        "images": [f"https://img.example.com/{sku}/{version}.jpg"],
        "customFields": {"version": str(version)},
    }
    codes = [s["code"] for s in skus] if variants > 1 else [sku]
    pricing = {
        "currency": "EUR",
        "variants": {
            c: {"price": float(version % 500) + i, "quantity": version % 50 + i}
            for i, c in enumerate(codes)
        },
    }
    return product, pricing


async def test_20k_upserts_deletes_and_recreates_end_in_the_exact_catalog(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    topic = await create_topics(bootstrap_servers, "product-upserts")
    rng = random.Random(5)
    skus = {
        acct: [f"{tag}-{i:04d}" for i in range(1000)]
        for acct, tag in ((ACCT_A, "A"), (ACCT_B, "B"))
    }
    shape = {
        sku: (rng.choice(["m2e", "sap-anywhere"]), rng.choice([1, 1, 2, 3]))
        for s in skus.values()
        for sku in s
    }
    final: dict[tuple[str, str], dict[str, Any] | None] = {}
    messages: list[tuple[str, Any]] = []
    for version in range(20_000):
        acct = rng.choice([ACCT_A, ACCT_B])
        sku = rng.choice(skus[acct])
        source, variants = shape[sku]
        if rng.random() < 0.1:
            messages.append((sku, {"account_token": acct, "op": "delete", "sku": sku}))
            final[(acct, sku)] = None
            continue
        if source == "m2e":
            product = m2e_product(sku, version, variants)
            messages.append((sku, {"account_token": acct, "source": "m2e", "product": product}))
        else:
            sap, pricing = sap_product(sku, version, variants)
            messages.append(
                (
                    sku,
                    {
                        "account_token": acct,
                        "source": "sap-anywhere",
                        "product": sap,
                        "pricing": pricing,
                    },
                )
            )
        final[(acct, sku)] = {"version": version, "variants": variants}
    await produce(bootstrap_servers, topic, messages)

    settings = worker_settings(
        bootstrap_servers,
        sandbox.base_url,
        topic,
        tmp_path,
        rate_limit_enabled=False,
        batch_linger_ms=300,
    )
    parts = build_parts(ProductSync(set(CREDENTIALS), {}), settings)
    await parts.worker.start()
    try:
        await wait_all_committed(bootstrap_servers, settings.kafka_group_id, topic, timeout_s=180)
    finally:
        await parts.worker.stop()

    results = [
        json.loads(r.value)
        for r in await read_all(bootstrap_servers, f"{topic}.results", len(messages))
    ]
    assert len(results) == len(messages)
    assert [r for r in results if r["status"] == "failed"] == []
    for (acct, sku), expected in final.items():
        product = sandbox.sandbox.users[CREDENTIALS[acct]].catalog.get(sku)
        if expected is None:
            assert product is None, sku
            continue
        assert product is not None, sku
        version = expected["version"]
        assert (product["title"], product["description"]) == (
            f"{sku} v{version}",
            f"version {version}",
        )
        assert product["images"] == [f"https://img.example.com/{sku}/{version}.jpg"]
        assert {a["value"] for a in product["attributes"] if a["name"] == "version"} == {
            str(version)
        }
        assert [(v["price"], v["quantity"]) for v in product["variants"]] == [
            (float(version % 500) + i, version % 50 + i) for i in range(expected["variants"])
        ]
    untouched = {sku for acct in skus for sku in skus[acct] if (acct, sku) not in final}
    assert all(
        sandbox.sandbox.users[CREDENTIALS[a]].catalog.get(s) is None
        for a in skus
        for s in untouched
    )

    # Requests: at most 1.2 x the minimum, ⌈items/500⌉ per operation per account, where the
    # items are the events (what a batcher without coalescing would have to send).
    per_op: dict[tuple[str, str], int] = defaultdict(int)
    for _key, value in messages:
        per_op[(value["account_token"], value.get("op", "upsert"))] += 1
    minimum = sum(math.ceil(n / 500) for n in per_op.values())
    made = len(sandbox.requests())
    assert made <= 1.2 * minimum, (made, minimum)
    # Only deletes of SKUs that never existed may answer 404 (they count as deleted).
    assert {(r["route"], r["status"]) for r in sandbox.requests() if r["status"] != 200} <= {
        ("DELETE /catalog/product/", 404)
    }
    # Stricter: against the items actually sent per route (after coalescing), at most 1.5x.
    by_route: dict[tuple[str | None, str], list[int]] = defaultdict(list)
    for r in sandbox.requests():
        by_route[(r["user"], r["route"])].append(r["items"])
    sent_minimum = sum(math.ceil(sum(items) / 500) for items in by_route.values())
    assert made <= 1.5 * sent_minimum, (made, sent_minimum)
    print(
        f"product-sync: {len(messages)} events, {made} requests; minimum by events {minimum}, "
        f"by items sent after coalescing {sent_minimum}"
    )


async def test_kcat_publishes_a_product_that_reaches_the_sandbox(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    topic = await create_topics(bootstrap_servers, "product-upserts")
    event = {
        "account_token": ACCT_A,
        "source": "sap-anywhere",
        "product": {"code": "KCAT-1", "name": "Published by kcat", "status": "Active"},
    }
    done = subprocess.run(
        ["kcat", "-b", bootstrap_servers, "-P", "-t", topic, "-k", "KCAT-1"],
        input=json.dumps(event).encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    settings = worker_settings(
        bootstrap_servers, sandbox.base_url, topic, tmp_path, batch_linger_ms=100
    )
    parts = build_parts(
        ProductSync(set(CREDENTIALS), {"*": AccountDefaults("EUR", 49.0, 3)}), settings
    )
    await parts.worker.start()
    try:
        product = await eventually(
            lambda: sandbox.sandbox.users[CREDENTIALS[ACCT_A]].catalog.get("KCAT-1"), timeout_s=60
        )
    finally:
        await parts.worker.stop()
    assert product["title"] == "Published by kcat"
    assert [(v["sku"], v["price"], v["quantity"]) for v in product["variants"]] == [
        ("KCAT-1", 49.0, 3)
    ]
