"""Fetching an invoice PDF from a URL without becoming an SSRF proxy.

    fetcher = SafeFetcher(FetchPolicy(allowed_hosts={"invoices.example.com"}))
    pdf = await fetcher.fetch("https://invoices.example.com/2026/INV-1.pdf")

Rules, checked for the URL and again for every redirect:
- `https` only; plain `http` only to an allowlisted loopback host when `allow_loopback_http`
  is on (development);
- the host must be on the allowlist (exact names; a leading `.` allows subdomains);
- no credentials in the URL;
- no control characters or spaces anywhere in the URL; the host is printable ASCII
  (IDNA-encoded here, before any resolver sees it), without a trailing dot, in labels of
  1 to 63 letters, digits and hyphens, at most 253 characters;
- the host's addresses are resolved here, and every one must be public (`addresses`:
  not private, loopback, link-local — 169.254.169.254 included —, reserved, multicast,
  unspecified, nor an IPv6 form that wraps such an IPv4 address); the connection then
  goes to the address that was checked (Host header and TLS SNI keep the name), so DNS
  cannot change the answer between the check and the connection;
- at most `max_redirects` redirects; the body is asked for and read without any
  content coding (`Accept-Encoding: identity`; a `Content-Encoding` other than identity
  is refused, and the raw stream is counted), so a small compressed body cannot expand
  past `max_bytes` in memory; the whole fetch, redirects included, must finish within
  `total_timeout_s` (a trickling server cannot hold a worker).
Every refusal raises `FetchRefused` with a reason; so does any other failure inside the
fetch, so nothing escapes to be retried forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

from services.invoice_upload.addresses import is_loopback, is_public

Resolver = Callable[[str, int], Awaitable[list[str]]]


class FetchRefused(Exception):
    """The URL, an address it resolves to, or the response broke a rule."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    max_bytes: int = 10 * 1024 * 1024
    total_timeout_s: float = 30.0
    max_redirects: int = 3
    allow_loopback_http: bool = False

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for allowed in self.allowed_hosts:
            allowed = allowed.lower()
            if host == allowed or (allowed.startswith(".") and host.endswith(allowed)):
                return True
        return False


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def ascii_host(host: str) -> str:
    """The host name as a resolver may be given it, or FetchRefused (no I/O)."""
    try:
        encoded = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise FetchRefused("bad_host", "the host is not a valid domain name") from None
    if host.endswith(".") or len(encoded) > 253:
        raise FetchRefused("bad_host", "the host is not a valid domain name")
    if not all(_LABEL.fullmatch(label) for label in encoded.split(".")):
        raise FetchRefused("bad_host", "the host is not a valid domain name")
    return encoded


class SafeFetcher:
    def __init__(
        self,
        policy: FetchPolicy,
        resolver: Resolver = system_resolver,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,  # tests: a local CA
    ) -> None:
        self.policy = policy
        self._resolve = resolver
        self._client = httpx.AsyncClient(
            transport=transport,
            verify=verify,
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(policy.total_timeout_s),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def check_url(self, url: str) -> tuple[str, str, int]:
        """Static checks (no I/O): returns (scheme, ASCII host, port) or raises FetchRefused."""
        if _CONTROL.search(url):
            raise FetchRefused("bad_url", "control characters or spaces in the URL are refused")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise FetchRefused("bad_url", f"not a valid URL: {exc}") from None
        scheme, host = parts.scheme.lower(), (parts.hostname or "")
        if scheme not in ("https", "http"):
            raise FetchRefused(
                "scheme_refused", f"scheme {scheme or '(none)'!r} is refused: https only"
            )
        if not host:
            raise FetchRefused("bad_url", "the URL has no host")
        if parts.username or parts.password:
            raise FetchRefused("bad_url", "credentials in the URL are refused")
        literal = None
        with contextlib.suppress(ValueError):  # a name, not an address
            literal = ipaddress.ip_address(host)
        if literal is None:
            host = ascii_host(host)
        if (
            literal is not None
            and not is_public(host)
            and not (
                self.policy.allow_loopback_http
                and literal.is_loopback
                and self.policy.host_allowed(host)
            )
        ):
            raise FetchRefused("address_refused", f"address {host} is not public")
        if not self.policy.host_allowed(host):
            raise FetchRefused("host_not_allowed", f"host {host!r} is not on the allowlist")
        loopback_dev = self.policy.allow_loopback_http and (
            host == "localhost" or (literal is not None and literal.is_loopback)
        )
        if scheme == "http" and not loopback_dev:
            raise FetchRefused("scheme_refused", "plain http is refused: https only")
        return scheme, host, port or (443 if scheme == "https" else 80)

    async def _address(self, scheme: str, host: str, port: int) -> str:
        try:
            addresses = await self._resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise FetchRefused("dns_failed", f"cannot resolve {host}: {exc}") from None
        if not addresses:
            raise FetchRefused("dns_failed", f"{host} has no address")
        loopback_ok = self.policy.allow_loopback_http and self.policy.host_allowed(host)
        for address in addresses:
            if not is_public(address) and not (loopback_ok and is_loopback(address)):
                raise FetchRefused(
                    "address_refused", f"{host} resolves to {address}, which is not public"
                )
        return addresses[0]

    async def fetch(self, url: str) -> bytes:
        try:
            async with asyncio.timeout(self.policy.total_timeout_s):
                return await self._fetch(url)
        except TimeoutError:
            raise FetchRefused(
                "timeout", f"the fetch took longer than {self.policy.total_timeout_s:g}s"
            ) from None
        except FetchRefused:
            raise
        except Exception as exc:  # any failure of this one fetch refuses it, with its class
            raise FetchRefused(
                "fetch_failed", f"{type(exc).__name__} fetching the invoice"
            ) from None

    async def _fetch(self, url: str) -> bytes:
        for _hop in range(self.policy.max_redirects + 1):
            scheme, host, port = self.check_url(url)
            address = await self._address(scheme, host, port)
            parts = urlsplit(url)
            netloc = f"[{address}]" if ":" in address else address
            pinned = parts._replace(netloc=f"{netloc}:{port}").geturl()
            request = self._client.build_request(
                "GET",
                pinned,
                headers={
                    "Host": f"{host}:{port}" if parts.port else host,
                    "Accept-Encoding": "identity",
                },
                extensions={"sni_hostname": host} if scheme == "https" else {},
            )
            response = await self._client.send(request, stream=True)
            try:
                if response.status_code in (301, 302, 303, 307, 308):
                    location = response.headers.get("location")
                    if not location:
                        raise FetchRefused(
                            "fetch_failed", f"redirect {response.status_code} without a Location"
                        )
                    url = urljoin(url, location)
                    continue
                if response.status_code != 200:
                    raise FetchRefused(
                        "fetch_failed", f"the invoice URL answered HTTP {response.status_code}"
                    )
                declared = response.headers.get("content-length")
                if (
                    declared is not None
                    and declared.isdigit()
                    and int(declared) > self.policy.max_bytes
                ):
                    raise FetchRefused(
                        "too_large",
                        f"the invoice is {declared} bytes; at most "
                        f"{self.policy.max_bytes} are accepted",
                    )
                coding = response.headers.get("content-encoding", "identity").strip().lower()
                if coding not in ("", "identity"):
                    raise FetchRefused(
                        "encoding_refused",
                        f"Content-Encoding {coding[:40]!r} is refused: identity only",
                    )
                body = bytearray()
                async for chunk in response.aiter_raw():  # never decoded: counted as sent
                    body += chunk
                    if len(body) > self.policy.max_bytes:
                        raise FetchRefused(
                            "too_large",
                            f"the invoice exceeded {self.policy.max_bytes} bytes while streaming",
                        )
                return bytes(body)
            finally:
                await response.aclose()
        raise FetchRefused("too_many_redirects", f"more than {self.policy.max_redirects} redirects")
