"""invoice-upload end to end: uploads, refusals to the DLQ, idempotency, a shared budget."""

from __future__ import annotations

import base64
import json
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.invoice_upload import FetchPolicy, InvoiceUpload, MemoryLedger, SafeFetcher
from shared.bootstrap import build_parts

from .harness import (
    ACCT_A,
    CREDENTIALS,
    TOKEN_A,
    create_topics,
    eventually,
    new_run,
    produce,
    read_all,
    sandbox_config,
    wait_all_committed,
    worker_settings,
)

PDF = b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
async def pdf_server() -> AsyncIterator[str]:
    async def pdf(request: web.Request) -> web.Response:
        return web.Response(body=PDF, content_type="application/pdf")

    async def to_private(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://10.20.30.40/invoice.pdf")

    app = web.Application()
    app.router.add_get("/invoice.pdf", pdf)
    app.router.add_get("/to-private", to_private)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


def invoice(order_id: str, number: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return order_id, {
        "account_token": ACCT_A,
        "order_id": order_id,
        "invoice_number": number,
        **fields,
    }


def uploads(sandbox: Any) -> Counter[tuple[str, str]]:
    return Counter(
        (i["order_id"], i["invoice_number"]) for i in sandbox.sandbox.users[TOKEN_A].invoices
    )


async def test_inline_and_url_uploads_refusals_and_redelivery(
    bootstrap_servers: str, sandbox_server: Any, tmp_path: Path, pdf_server: str
) -> None:
    sandbox = await sandbox_server(sandbox_config())
    orders = [o["order_id"] for o in sandbox.sandbox.orders.orders(ACCT_A)[:3]]
    topic = await create_topics(bootstrap_servers, "invoice-uploads")
    inline = base64.b64encode(PDF).decode()
    events = [
        invoice(
            orders[0], "INV-1", invoice_pdf_base64=inline, total_amount=119.0, total_vat_amount=19.0
        ),
        invoice(orders[1], "INV-2", invoice_url=pdf_server + "/invoice.pdf"),
        invoice(
            orders[2], "INV-3", invoice_url=pdf_server + "/to-private"
        ),  # refused at fetch time
        invoice(
            orders[2], "INV-4", invoice_pdf_base64=base64.b64encode(b"not a pdf").decode()
        ),  # at decode
        invoice("NO-SUCH-ORDER", "INV-5", invoice_pdf_base64=inline),  # the API answers 404
    ]
    await produce(bootstrap_servers, topic, events)
    fetcher = SafeFetcher(
        FetchPolicy(allowed_hosts=frozenset({"127.0.0.1"}), allow_loopback_http=True)
    )
    service = InvoiceUpload(set(CREDENTIALS), fetcher, MemoryLedger())
    settings = worker_settings(
        bootstrap_servers, sandbox.base_url, topic, tmp_path, batch_linger_ms=100
    )
    parts = build_parts(service, settings)
    await parts.worker.start()
    try:
        results = [
            json.loads(r.value)
            for r in await read_all(bootstrap_servers, f"{topic}.results", len(events))
        ]
        await wait_all_committed(bootstrap_servers, settings.kafka_group_id, topic)
        status = Counter((r["order_id"], r["status"]) for r in results)
        assert status == Counter(
            {
                (orders[0], "ok"): 1,
                (orders[1], "ok"): 1,
                (orders[2], "failed"): 2,
                ("NO-SUCH-ORDER", "failed"): 1,
            }
        )
        assert [r["http_status"] for r in results if r["order_id"] == "NO-SUCH-ORDER"] == [404]
        assert uploads(sandbox) == Counter({(orders[0], "INV-1"): 1, (orders[1], "INV-2"): 1})
        stored = {i["invoice_number"]: i for i in sandbox.sandbox.users[TOKEN_A].invoices}
        assert stored["INV-1"]["size"] == len(PDF) and stored["INV-1"]["total_vat_amount"] == 19.0
        dlq = await read_all(bootstrap_servers, f"{topic}.dlq", 2)
        reasons = sorted(dict(r.headers)["error.message"].decode() for r in dlq)
        assert reasons[0] == "invoice: not a PDF (no %PDF- header)"
        assert reasons[1] == "invoice_url: address 10.20.30.40 is not public"
        assert json.loads(dlq[0].value)["account_token"] == ACCT_A  # original bytes

        # Redelivery of an uploaded invoice: no second API call.
        calls = sandbox.sandbox.stats.requests["POST /order/invoice/"]["200"]
        await produce(bootstrap_servers, topic, events[:2])
        again = await read_all(bootstrap_servers, f"{topic}.results", len(events) + 2)
        statuses = [json.loads(r.value)["status"] for r in again[len(events) :]]
        assert statuses == ["duplicate-skipped", "duplicate-skipped"]
        assert sandbox.sandbox.stats.requests["POST /order/invoice/"]["200"] == calls
    finally:
        await parts.worker.stop()
        await fetcher.aclose()


async def test_sigkill_between_upload_and_commit_duplicates_at_most_once(
    bootstrap_servers: str, redis_url: str, sandbox_server: Any, tmp_path: Path, workers: Any
) -> None:
    sandbox = await sandbox_server(
        sandbox_config(faults={"latency_ms": 30}, orders={"per_account": 200})
    )
    orders = [o["order_id"] for o in sandbox.sandbox.orders.orders(ACCT_A)[:120]]
    tag = uuid.uuid4().hex[:6]  # the Redis ledger outlives a test: numbers of this run only
    run = await new_run(bootstrap_servers, sandbox, tmp_path, "invoice-uploads")
    inline = base64.b64encode(PDF).decode()
    await produce(
        bootstrap_servers,
        run.topic,
        [invoice(o, f"INV-{tag}-{o}", invoice_pdf_base64=inline) for o in orders],
    )
    env = run.env(
        redis_url=redis_url,
        commit_interval_ms=60_000,
        invoice_concurrency=2,
        kafka_session_timeout_ms=6000,
    )  # commits only at shutdown: the kill loses them all
    first = workers("invoice-upload", env, "first")
    await eventually(lambda: sum(uploads(sandbox).values()) >= 30, timeout_s=60)
    first.signal(signal.SIGKILL)
    await first.wait()
    before = sum(uploads(sandbox).values())
    workers("invoice-upload", env, "second")
    await eventually(lambda: len(uploads(sandbox)) == len(orders), timeout_s=120)
    await wait_all_committed(bootstrap_servers, run.group, run.topic, timeout_s=60)
    counts = uploads(sandbox)
    duplicates = sum(n - 1 for n in counts.values())
    print(
        f"invoice uploads before the SIGKILL: {before}; duplicate uploads after the restart: {duplicates}"
    )
    assert max(counts.values()) <= 2
    assert duplicates <= 2  # at most the uploads in flight at the kill (concurrency 2)
