"""Operator tools end to end: a DLQ record is replayed after the cause is fixed."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from services import ops
from services.product_sync import AccountDefaults, ProductSync
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
    worker_settings,
)


async def test_missing_account_default_to_dlq_then_fixed_and_replayed(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    topic = await create_topics(bootstrap_servers, "product-upserts")
    event = {
        "account_token": ACCT_A,
        "source": "sap-anywhere",
        "product": {
            "code": "NEEDS-DEFAULTS",
            "name": "Priced by the account default",
            "status": "Active",
        },
    }
    await produce(bootstrap_servers, topic, [("NEEDS-DEFAULTS", event)])
    settings = worker_settings(
        bootstrap_servers, sandbox.base_url, topic, tmp_path, batch_linger_ms=100
    )

    # No pricing and no account default: the product goes to the DLQ, naming the field.
    first = build_parts(ProductSync(set(CREDENTIALS), {}), settings)
    await first.worker.start()
    try:
        [dead] = await read_all(bootstrap_servers, f"{topic}.dlq", 1)
    finally:
        await first.worker.stop()
    assert dict(dead.headers)["error.class"] == b"MappingError"
    assert (
        dict(dead.headers)["error.message"]
        == b"currency: no pricing.currency and no account default"
    )

    out = io.StringIO()
    await ops.tail(settings, f"{topic}.dlq", last=5, follow=False, out=out)
    assert "NEEDS-DEFAULTS" in out.getvalue() and "MappingError" in out.getvalue()

    dry = await ops.replay(settings, f"{topic}.dlq", {"error.class": "MappingError"}, dry_run=True)
    assert (dry.matched, dry.sent) == (1, 0)
    none = await ops.replay(
        settings, f"{topic}.dlq", {"error.class": "UnknownAccount"}, dry_run=True
    )
    assert none.matched == 0

    # The configuration is fixed (an account default), the worker restarts, the DLQ is replayed.
    fixed = build_parts(
        ProductSync(set(CREDENTIALS), {ACCT_A: AccountDefaults("EUR", 15.0, 4)}), settings
    )
    await fixed.worker.start()
    try:
        report = await ops.replay(
            settings, f"{topic}.dlq", {"error.class": "MappingError"}, dry_run=False
        )
        assert (report.read, report.matched, report.sent, report.by_topic) == (1, 1, 1, {topic: 1})
        product = await eventually(
            lambda: sandbox.sandbox.users[TOKEN_A].catalog.get("NEEDS-DEFAULTS"), timeout_s=60
        )
    finally:
        await fixed.worker.stop()
    assert [(v["price"], v["quantity"]) for v in product["variants"]] == [(15.0, 4)]
    results = [
        json.loads(r.value)["status"]
        for r in await read_all(bootstrap_servers, f"{topic}.results", 2)
    ]
    assert results == ["failed", "ok"]
