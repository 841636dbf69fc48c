"""Hostile invoice URLs and bodies: each is refused with a reason, none escapes as another
exception (which would be retried forever), and a compression bomb is never expanded."""

from __future__ import annotations

import functools
import gzip
import ssl
import subprocess
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from m2e_devtools.stack import ensure_debian_package
from services.invoice_upload import FetchPolicy, FetchRefused, SafeFetcher

PDF = b"%PDF-1.7\n" + b"0" * 2000 + b"\n%%EOF\n"
ALLOW = frozenset({".cdn.example.com", "files.example.com", "localhost"})


def fetcher(**kw: object) -> SafeFetcher:
    return SafeFetcher(FetchPolicy(allowed_hosts=ALLOW, **kw))  # type: ignore[arg-type]


HOSTILE_URLS = [
    ("control character in the path", "https://files.example.com/a\x01b.pdf", "bad_url"),
    ("space in the path", "https://files.example.com/a b.pdf", "bad_url"),
    ("NUL in the host", "https://localhost\x00.cdn.example.com/a.pdf", "bad_url"),
    ("trailing dot", "https://x.cdn.example.com./a.pdf", "bad_host"),
    ("two trailing dots", "https://x.cdn.example.com../a.pdf", "bad_host"),
    ("a label over 63 characters", f"https://{'a' * 64}.cdn.example.com/a.pdf", "bad_host"),
    ("an empty label", "https://x..cdn.example.com/a.pdf", "bad_host"),
    ("non-ASCII host no IDNA allows", "https://ex\u2028ample.cdn.example.com/a.pdf", "bad_host"),
    ("a C1 control in the host", "https://a\x80b.cdn.example.com/a.pdf", "bad_host"),
    ("underscore host", "https://a_b.cdn.example.com/a.pdf", "bad_host"),
    ("a name over 253 characters", "https://" + "a." * 130 + "cdn.example.com/x", "bad_host"),
    ("NAT64 metadata literal", "https://[64:ff9b::a9fe:a9fe]/a.pdf", "address_refused"),
    ("site-local literal", "https://[fec0::1]/a.pdf", "address_refused"),
]


@pytest.mark.parametrize(("why", "url", "code"), HOSTILE_URLS, ids=[w for w, _, _ in HOSTILE_URLS])
async def test_hostile_urls_are_refused_before_any_resolver_call(
    why: str, url: str, code: str
) -> None:
    looked_up: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["93.184.215.14"]

    f = SafeFetcher(FetchPolicy(allowed_hosts=ALLOW), resolver=resolver)
    try:
        with pytest.raises(FetchRefused) as refused:
            f.check_url(url)
        assert refused.value.code == code, (why, refused.value.reason)
        with pytest.raises(FetchRefused):
            await f.fetch(url)
        assert looked_up == []
    finally:
        await f.aclose()


async def test_an_idn_host_is_resolved_in_its_ascii_form() -> None:
    seen: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        seen.append(host)
        return ["10.0.0.1"]  # refused, so nothing is fetched

    f = SafeFetcher(FetchPolicy(allowed_hosts=frozenset({".example.com"})), resolver=resolver)
    try:
        assert f.check_url("https://bücher.example.com/a.pdf")[1] == "xn--bcher-kva.example.com"
        with pytest.raises(FetchRefused, match="not public"):
            await f.fetch("https://bücher.example.com/a.pdf")
        assert seen == ["xn--bcher-kva.example.com"]
    finally:
        await f.aclose()


async def test_any_other_failure_inside_a_fetch_is_a_refusal() -> None:
    async def broken(host: str, port: int) -> list[str]:
        raise TypeError("a bug in the resolver")

    f = SafeFetcher(FetchPolicy(allowed_hosts=ALLOW), resolver=broken)
    try:
        with pytest.raises(FetchRefused) as refused:
            await f.fetch("https://files.example.com/a.pdf")
        assert refused.value.code == "fetch_failed" and "TypeError" in refused.value.reason
    finally:
        await f.aclose()


# ---------------------------------------------------------------------- a real HTTPS server


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) for `localhost`, from a CA made here with openssl."""
    d: Path = tmp_path_factory.mktemp("tls")
    openssl = ensure_debian_package("openssl", "openssl")
    run = lambda *args: subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "srv.key", "-out", "srv.csr")  # fmt: skip
    (d / "ext").write_text("subjectAltName=DNS:localhost\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext", "-out", "srv.pem")  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(d / "srv.pem", d / "srv.key")
    client = ssl.create_default_context(cafile=str(d / "ca.pem"))
    return server, client


@functools.cache
def bomb(layers: int, size: int) -> bytes:
    """`size` zero bytes gzipped `layers` times, compressed as a stream (never held whole)."""
    gz = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: a gzip member
    chunk = b"\0" * (1 << 20)
    body = b"".join(gz.compress(chunk) for _ in range(size >> 20)) + gz.flush()
    for _ in range(layers - 1):
        body = gzip.compress(body, 9)
    return body


@pytest.fixture
async def https(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> AsyncIterator[str]:
    double = bomb(2, 1 << 30)  # 1 GiB of zeros, gzip twice: about a kilobyte
    single = bomb(1, 256 << 20)  # 256 MiB, gzip once: about 255 KB

    async def serve(body: bytes, coding: str) -> web.Response:
        return web.Response(
            body=body, headers={"Content-Encoding": coding, "Content-Type": "application/pdf"}
        )

    async def double_gzip(request: web.Request) -> web.Response:
        return await serve(double, "gzip, gzip")

    async def one_gzip(request: web.Request) -> web.Response:
        return await serve(single, "gzip")

    async def plain(request: web.Request) -> web.Response:
        if request.headers.get("Accept-Encoding") != "identity":  # what the fetch must ask
            return web.Response(status=406)
        return web.Response(body=PDF)

    app = web.Application()
    app.router.add_get("/double.pdf", double_gzip)
    app.router.add_get("/single.pdf", one_gzip)
    app.router.add_get("/plain.pdf", plain)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls[0])
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"https://localhost:{port}"
    await runner.cleanup()


def local(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> SafeFetcher:
    return SafeFetcher(
        FetchPolicy(allowed_hosts=ALLOW, allow_loopback_http=True, max_bytes=10 << 20),
        verify=tls[1],
    )


@pytest.mark.parametrize("path", ["/double.pdf", "/single.pdf"])
async def test_a_compression_bomb_is_refused_without_being_expanded(
    https: str, tls: tuple[ssl.SSLContext, ssl.SSLContext], path: str
) -> None:
    f = local(tls)
    tracemalloc.start()
    try:
        with pytest.raises(FetchRefused) as refused:
            await f.fetch(https + path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await f.aclose()
    assert refused.value.code == "encoding_refused", refused.value.reason
    assert peak < 16 << 20, f"peak {peak >> 20} MiB while refusing {path}"


async def test_the_fetch_asks_for_no_content_coding_over_real_tls(
    https: str, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    f = local(tls)
    try:
        assert await f.fetch(https + "/plain.pdf") == PDF
    finally:
        await f.aclose()
