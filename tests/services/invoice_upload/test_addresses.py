"""Which addresses an invoice fetch may reach: every special form refused, public ones
allowed, whatever the Python patch release says about them."""

from __future__ import annotations

import pytest

from services.invoice_upload.addresses import is_public

REFUSED = [
    ("64:ff9b::a9fe:a9fe", "NAT64 of 169.254.169.254 (cloud metadata)"),
    ("64:ff9b::a00:1", "NAT64 of 10.0.0.1"),
    ("64:ff9b:1::1", "local-use NAT64 (RFC 8215)"),
    ("64:ff9b:1:ffff::7f00:1", "local-use NAT64 of loopback"),
    ("2002:7f00:1::", "6to4 of 127.0.0.1"),
    ("2002:a9fe:a9fe::1", "6to4 of 169.254.169.254"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo whose client is 192.0.2.45"),
    ("::7f00:1", "IPv4-compatible loopback"),
    ("::a00:1", "IPv4-compatible 10.0.0.1"),
    ("::ffff:0:7f00:1", "IPv4-translated loopback"),
    ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
    ("::ffff:169.254.169.254", "IPv4-mapped metadata"),
    ("fec0::1", "site-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%2", "link-local with a zone"),
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("ff02::1", "multicast"),
    ("100::1", "discard-only"),
    ("2001:db8::1", "documentation"),
    ("2001:2::1", "IETF protocol assignment (benchmarking)"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("192.0.0.8", "IETF protocol assignment"),
    ("192.0.0.170", "NAT64 discovery"),
    ("192.88.99.1", "6to4 relay anycast"),
    ("0.0.0.0", "this network"),
    ("10.1.2.3", "private"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("127.0.0.1", "loopback"),
    ("169.254.169.254", "link-local (cloud metadata)"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("198.18.0.1", "benchmarking"),
    ("203.0.113.9", "documentation"),
    ("224.0.0.1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
]

ALLOWED = [
    ("8.8.8.8", "public IPv4"),
    ("93.184.215.14", "public IPv4"),
    ("2606:4700:4700::1111", "public IPv6"),
    ("2a00:1450:4001:80b::200e", "public IPv6"),
    ("64:ff9b::808:808", "NAT64 of a public IPv4: how an IPv6-only cluster reaches it"),
    ("::ffff:8.8.8.8", "IPv4-mapped public"),
    ("2002:808:808::1", "6to4 of a public IPv4"),
]


@pytest.mark.parametrize(("address", "why"), REFUSED, ids=[a for a, _ in REFUSED])
def test_refused(address: str, why: str) -> None:
    assert not is_public(address), why


@pytest.mark.parametrize(("address", "why"), ALLOWED, ids=[a for a, _ in ALLOWED])
def test_allowed(address: str, why: str) -> None:
    assert is_public(address), why
