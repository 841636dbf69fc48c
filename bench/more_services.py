"""Throughput per process of invoice-upload and order-poller, limiter off.

    .venv/bin/m2e-sync stack up
    .venv/bin/python bench/more_services.py

invoice-upload: 5,000 invoices with inline one-page PDFs (validated, one API call each
  by the API's design, 4 in flight) against the fast in-process sink.
order-poller: one tick per account for 3 accounts holding 10,000 orders each in the
  sandbox (in-process, no budget): orders fetched page by page (500 a page) and published
  to `orders` in Kafka transactions with the cursor; timed from the first consumed tick
  to the last order published.
No targets are set for these two; the figures show where their time goes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import BOOTSTRAP, metric_total, produce, throughput

from services.invoice_upload import FetchPolicy, InvoiceUpload, MemoryLedger, SafeFetcher
from services.invoice_upload.samples import invoice_pdf
from services.order_poller import OrderPoller
from shared.bootstrap import build_parts
from tests.integration.harness import (
    ACCT_A,
    ACCT_A2,
    ACCT_B,
    SandboxServer,
    order_topics,
    sandbox_config,
    write_credentials,
)


async def invoices(n: int = 5000) -> dict[str, Any]:
    account = str(uuid.UUID(int=1))
    pdf = base64.b64encode(invoice_pdf("ORDER", "INV")).decode()
    events = [
        (
            f"ORD-{i:06d}".encode(),
            json.dumps(
                {
                    "account_token": account,
                    "order_id": f"ORD-{i:06d}",
                    "invoice_number": f"INV-{i:06d}",
                    "invoice_pdf_base64": pdf,
                }
            ).encode(),
        )
        for i in range(n)
    ]
    fetcher = SafeFetcher(FetchPolicy())
    try:
        service = InvoiceUpload({account}, fetcher, MemoryLedger())
        return await throughput(service, "invoice-uploads", events, [account])
    finally:
        await fetcher.aclose()


async def orders(per_account: int = 10_000) -> dict[str, Any]:
    config = sandbox_config(
        orders={"per_account": per_account, "new_per_minute": 0, "status_change_per_minute": 0}
    )
    sandbox = SandboxServer(config)
    await sandbox.start()
    accounts = [("ebay", ACCT_A), ("amazon", ACCT_A2), ("ebay", ACCT_B)]
    try:
        ticks, orders_topic, cursors = await order_topics(BOOTSTRAP)
        with tempfile.TemporaryDirectory() as tmp:
            from shared.config import load_settings

            settings = load_settings(
                kafka_bootstrap_servers=BOOTSTRAP,
                m2e_base_url=sandbox.base_url,
                m2e_credentials_file=write_credentials(Path(tmp)),
                kafka_input_topic=ticks,
                kafka_group_id=f"bench-{uuid.uuid4().hex[:8]}",
                rate_limit_enabled=False,
                batch_linger_ms=50,
                log_level="WARNING",
            )
            from datetime import timedelta

            service = OrderPoller(
                {a for _, a in accounts},
                BOOTSTRAP,
                orders_topic=orders_topic,
                cursor_topic=cursors,
                transactional_id=f"bench-poller-{uuid.uuid4().hex[:6]}",
                overlap=timedelta(days=7),
                initial_lookback=timedelta(days=31),
            )
            parts = build_parts(service, settings)
            published = parts.metrics.orders_published
            await parts.worker.start()
            try:
                await produce(
                    ticks,
                    [
                        (
                            f"{c}:{a}".encode(),
                            json.dumps({"account_token": a, "channel": c}).encode(),
                        )
                        for c, a in accounts
                    ],
                )
                total = per_account * len(accounts)
                started = None
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    count = metric_total(published)
                    if count and started is None:
                        started = time.perf_counter()
                    if count >= total:
                        break
                    await asyncio.sleep(0.01)
                elapsed = time.perf_counter() - (started or time.perf_counter())
            finally:
                await parts.worker.stop()
                await parts.client.aclose()
    finally:
        await sandbox.close()
    finds = len([r for r in sandbox.requests() if r["route"] == "POST /order/find/"])
    return {
        "orders": count,
        "orders_s": count / max(elapsed, 1e-9),
        "seconds": elapsed,
        "finds": finds,
    }


async def main() -> None:
    inv = await invoices()
    print(
        f"invoice-upload  {inv['msg_s']:8,.0f} msg/s ({inv['messages']:,} inline PDFs in {inv['seconds']:.1f}s)"
    )
    o = await orders()
    print(
        f"order-poller    {o['orders_s']:8,.0f} orders/s ({o['orders']:,.0f} orders, {o['finds']} finds, {o['seconds']:.1f}s)"
    )


if __name__ == "__main__":
    asyncio.run(main())
