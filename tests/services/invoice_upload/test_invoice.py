"""Invoice checks and the SSRF-safe fetcher: happy paths and at least 12 refusals."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.invoice_upload import (
    FetchPolicy,
    FetchRefused,
    InvoiceUpload,
    MemoryLedger,
    SafeFetcher,
)
from shared.service import InvalidMessage

ACCT = "6f1c2d3e-0001-4a5b-8c9d-000000000001"
PDF = b"%PDF-1.7\n" + b"0" * 2000 + b"\n%%EOF\n"


@pytest.fixture
async def files() -> AsyncIterator[str]:
    """A file server on loopback: PDFs, redirects, an endless body, a trickle."""

    async def pdf(request: web.Request) -> web.Response:
        return web.Response(body=PDF, content_type="application/pdf")

    async def to_private(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://10.20.30.40/invoice.pdf")

    async def to_pdf(request: web.Request) -> web.Response:
        raise web.HTTPFound("/invoice.pdf")

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # no Content-Length: the limit must hold while streaming
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"%PDF-" + b"x" * 65536)
        return response

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(100):
            await response.write(b"%")
            await asyncio.sleep(0.05)
        return response

    app = web.Application()
    app.router.add_get("/invoice.pdf", pdf)
    app.router.add_get("/to-private", to_private)
    app.router.add_get("/to-pdf", to_pdf)
    app.router.add_get("/huge.pdf", huge)
    app.router.add_get("/trickle.pdf", trickle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


def fetcher(**kw: Any) -> SafeFetcher:
    policy = dict(
        allowed_hosts=frozenset({"127.0.0.1", "invoices.example.com"}),
        max_bytes=1024 * 1024,
        total_timeout_s=1.0,
        allow_loopback_http=True,
    )
    policy.update(kw)
    return SafeFetcher(FetchPolicy(**policy))  # type: ignore[arg-type]


def service(**kw: Any) -> InvoiceUpload:
    return InvoiceUpload({ACCT}, fetcher(**kw), MemoryLedger())


def event(**fields: Any) -> bytes:
    base = {
        "account_token": ACCT,
        "order_id": "EBAY-1",
        "invoice_number": "INV-1",
        "total_amount": 119.0,
    }
    return json.dumps({**base, **fields}).encode()


async def test_inline_invoice_decodes_to_the_api_body() -> None:
    d = service().decode(b"EBAY-1", event(invoice_pdf_base64=base64.b64encode(PDF).decode()), [])
    assert d.payload["order_id"] == "EBAY-1" and d.payload["total_amount"] == 119.0
    assert base64.b64decode(d.payload["invoice_data"]) == PDF


async def test_url_invoice_is_fetched_and_redirects_are_followed(files: str) -> None:
    f = fetcher()
    assert await f.fetch(files + "/invoice.pdf") == PDF
    assert await f.fetch(files + "/to-pdf") == PDF
    await f.aclose()


REFUSED_AT_DECODE = [
    ("not base64", {"invoice_pdf_base64": "%%% not base64 %%%"}, "not valid base64"),
    (
        "not a PDF",
        {"invoice_pdf_base64": base64.b64encode(b"GIF89a not a pdf").decode()},
        "not a PDF",
    ),
    (
        "too large inline",
        {"invoice_pdf_base64": base64.b64encode(b"%PDF-" + b"0" * (2 * 1024 * 1024)).decode()},
        "larger than",
    ),
    (
        "missing invoice_number",
        {"invoice_number": None, "invoice_pdf_base64": "JVBERi0="},
        "invoice_number",
    ),
    ("neither inline nor URL", {}, "exactly one of"),
    (
        "both inline and URL",
        {"invoice_pdf_base64": "JVBERi0=", "invoice_url": "https://invoices.example.com/a.pdf"},
        "exactly one of",
    ),
    ("file://", {"invoice_url": "file:///etc/passwd"}, "scheme 'file' is refused"),
    ("http to loopback", {"invoice_url": "http://127.0.0.1/internal"}, "is not public"),
    (
        "metadata address",
        {"invoice_url": "https://169.254.169.254/latest/meta-data/"},
        "is not public",
    ),
    ("a 10.x address", {"invoice_url": "https://10.1.2.3/invoice.pdf"}, "is not public"),
    (
        "host not allowlisted",
        {"invoice_url": "https://evil.example.net/invoice.pdf"},
        "not on the allowlist",
    ),
    (
        "plain http to an allowed host",
        {"invoice_url": "http://invoices.example.com/a.pdf"},
        "plain http",
    ),
    (
        "credentials in the URL",
        {"invoice_url": "https://user:pw@invoices.example.com/a.pdf"},
        "credentials",
    ),
]


@pytest.mark.parametrize(
    ("case", "fields", "reason"), REFUSED_AT_DECODE, ids=[c[0] for c in REFUSED_AT_DECODE]
)
def test_refused_before_any_quota_is_spent(case: str, fields: dict[str, Any], reason: str) -> None:
    svc = InvoiceUpload({ACCT}, fetcher(allow_loopback_http=False), MemoryLedger())
    value = event(**{k: v for k, v in fields.items() if v is not None})
    if fields.get("invoice_number", "") is None:
        value = json.dumps(
            {k: v for k, v in json.loads(value).items() if k != "invoice_number"}
        ).encode()
    with pytest.raises(InvalidMessage, match=reason):
        svc.decode(b"EBAY-1", value, [])


async def test_redirect_to_a_private_address_is_refused(files: str) -> None:
    with pytest.raises(FetchRefused, match=r"10\.20\.30\.40 is not public") as info:
        await fetcher().fetch(files + "/to-private")
    assert info.value.code == "address_refused"


async def test_too_large_while_streaming_is_refused(files: str) -> None:
    # The byte limit is under test, not the time limit: a loaded machine once took > 1 s.
    with pytest.raises(FetchRefused, match="exceeded 1048576 bytes while streaming"):
        await fetcher(total_timeout_s=30.0).fetch(files + "/huge.pdf")


async def test_a_body_that_trickles_past_the_time_limit_is_refused(files: str) -> None:
    with pytest.raises(FetchRefused, match="longer than 1s") as info:
        await fetcher().fetch(files + "/trickle.pdf")
    assert info.value.code == "timeout"


async def test_a_name_resolving_to_a_private_address_is_refused_before_connecting() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["10.9.8.7"]  # DNS can point an allowed name anywhere

    f = SafeFetcher(
        FetchPolicy(allowed_hosts=frozenset({"invoices.example.com"})), resolver=resolver
    )
    with pytest.raises(FetchRefused, match=r"resolves to 10\.9\.8\.7"):
        await f.fetch("https://invoices.example.com/a.pdf")


async def test_subdomain_allowlist() -> None:
    policy = FetchPolicy(allowed_hosts=frozenset({".example.com"}))
    assert policy.host_allowed("files.example.com") and not policy.host_allowed(
        "example.com.evil.net"
    )


async def test_the_ledger_gives_up_on_a_redis_that_stops_answering() -> None:
    from services.invoice_upload import InvoiceUploadSettings, RedisLedger, build
    from shared.config import load_settings

    settings = load_settings(
        InvoiceUploadSettings,
        redis_url="redis://127.0.0.1:6379/0",
        m2e_access_tokens=json.dumps({ACCT: "t"}),
    )
    service = build(settings)
    ledger = service._ledger
    assert isinstance(ledger, RedisLedger)
    kwargs = ledger._redis.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 2.0 and kwargs["socket_connect_timeout"] == 2.0
    await ledger._redis.aclose()
