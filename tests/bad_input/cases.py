"""Malformed and hostile inputs, per topic, with what the DLQ reason must name.

Each case is (name, key, value, reason pattern). The value is the raw record bytes (None:
a tombstone). The pattern is a regular expression the DLQ record's `error.message` must
match: the reason names the problem, not just "invalid".
"""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.integration.harness import ACCT_A

TICK_KEY = f"ebay:{ACCT_A}".encode()
UNKNOWN = "00000000-0000-4000-8000-000000000000"
HUGE = "x" * 1_000_000  # a 1 MB string: near the broker's default message limit
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
Case = tuple[str, bytes | None, bytes | None, str]


def js(value: Any) -> bytes:
    return json.dumps(value).encode()


def variant(**fields: Any) -> dict[str, Any]:
    return {"account_token": ACCT_A, "sku": "BAD-V", **fields}


def product(**fields: Any) -> dict[str, Any]:
    body = {
        "sku": "BAD-P",
        "status": 1,
        "is_simple": True,
        "currency": "EUR",
        "title": "Mug",
        "images": [],
        "variants": [{"sku": "BAD-P", "barcode": None, "price": 12.5, "quantity": 20}],
    }
    return {"account_token": ACCT_A, "source": "m2e", "product": {**body, **fields}}


def invoice(**fields: Any) -> dict[str, Any]:
    return {
        "account_token": ACCT_A,
        "order_id": "BAD-O",
        "invoice_number": "INV-BAD",
        "invoice_pdf_base64": base64.b64encode(PDF).decode(),
        **fields,
    }


def tick(**fields: Any) -> dict[str, Any]:
    return {"account_token": ACCT_A, "channel": "ebay", **fields}


def without(doc: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != field}


def nested(depth: int) -> bytes:
    return b'{"account_token": "%s", "sku": "BAD-V", "attributes": ' % ACCT_A.encode() + (
        b"[" * depth + b"]" * depth + b"}"
    )


VARIANT_UPDATES: list[Case] = [
    (
        "broken JSON",
        b"BAD-V",
        b'{"account_token": "' + ACCT_A.encode() + b'", "sku": ',
        r"json|EOF",
    ),
    ("not JSON at all", b"BAD-V", b"\x00\x01\x02binary", r"json|invalid"),
    # JSON's 1e999 is infinity to a float parser; no API takes it and JSON cannot send it.
    (
        "an infinite price",
        b"BAD-V",
        b'{"account_token": "%s", "sku": "BAD-V", "price": 1e999}' % ACCT_A.encode(),
        r"price.*finite",
    ),
    (
        "a NaN quantity",
        b"BAD-V",
        b'{"account_token": "%s", "sku": "BAD-V", "quantity": NaN}' % ACCT_A.encode(),
        r"quantity",
    ),
    ("a tombstone", b"BAD-V", None, r"tombstone"),
    ("a JSON array", b"BAD-V", js([variant(price=1.0)]), r"object|dict|instance"),
    ("a JSON string", b"BAD-V", js("price=1"), r"object|dict|instance"),
    (
        "missing account_token",
        b"BAD-V",
        js(without(variant(price=1.0), "account_token")),
        r"account_token",
    ),
    (
        "account_token not a UUID",
        b"BAD-V",
        js(variant(account_token="acct-1", price=1.0)),
        r"account_token",
    ),
    (
        "unknown account_token",
        b"BAD-V",
        js(variant(account_token=UNKNOWN, price=1.0)),
        r"unknown account_token",
    ),
    ("price as a string", b"BAD-V", js(variant(price="12.50")), r"price"),
    ("negative price", b"BAD-V", js(variant(price=-1)), r"price"),
    ("quantity beyond range", b"BAD-V", js(variant(quantity=10**12)), r"quantity"),
    ("quantity a float", b"BAD-V", js(variant(quantity=1.5)), r"quantity"),
    (
        "NaN price",
        b"BAD-V",
        b'{"account_token": "%s", "sku": "BAD-V", "price": NaN}' % ACCT_A.encode(),
        r"price|json",
    ),
    ("an extra field", b"BAD-V", js(variant(price=1.0, colour="red")), r"colour"),
    ("nothing to update", b"BAD-V", js(variant()), r"nothing to update"),
    ("a 1 MB sku", HUGE[:100].encode(), js(variant(sku=HUGE, price=1.0)), r"sku"),
    ("key is not the sku", b"OTHER", js(variant(price=1.0)), r"message key"),
    (
        "Latin-1 bytes",
        b"BAD-V",
        js(variant(price=1.0))[:-1] + b', "barcode": "caf\xe9"}',
        r"utf-8|unicode|json",
    ),
    ("UTF-16 JSON", b"BAD-V", json.dumps(variant(price=1.0)).encode("utf-16"), r"json|invalid"),
    ("100,000-deep nesting", b"BAD-V", nested(100_000), r"recursion|depth|json|attributes"),
    ("images not a list", b"BAD-V", js(variant(images="http://x/y.jpg")), r"images"),
]

PRODUCT_UPSERTS: list[Case] = [
    ("broken JSON", b"BAD-P", b'{"account_token": ', r"json|EOF"),
    ("no product and no sku", b"BAD-P", js({"account_token": ACCT_A}), r"product|sku"),
    ("unknown source", b"BAD-P", js({**product(), "source": "shopify"}), r"source"),
    ("unknown op", b"BAD-P", js({**product(), "op": "merge"}), r"op"),
    (
        "unknown account_token",
        b"BAD-P",
        js({**product(), "account_token": UNKNOWN}),
        r"unknown account_token",
    ),
    ("lower-case currency", b"BAD-P", js(product(currency="eur")), r"currency"),
    (
        "price out of range",
        b"BAD-P",
        js(product(variants=[{"sku": "BAD-P", "barcode": None, "price": -5, "quantity": 1}])),
        r"price",
    ),
    ("title a number", b"BAD-P", js(product(title=42)), r"title"),
    ("a 1 MB title", b"BAD-P", js(product(title=HUGE)), r"title"),
    ("variants not a list", b"BAD-P", js(product(variants={"sku": "BAD-P"})), r"variants"),
    (
        "5,000 variants in one product",
        b"BAD-P",
        js(
            product(
                is_simple=False,
                variants=[
                    {"sku": f"BAD-P-{i}", "barcode": None, "price": 1.0, "quantity": 1}
                    for i in range(5000)
                ],
            )
        ),
        r"variants",
    ),
    (
        "duplicate variant SKUs",
        b"BAD-P",
        js(
            product(
                is_simple=False,
                variants=[{"sku": "BAD-P-1", "barcode": None, "price": 1.0, "quantity": 1}] * 2,
            )
        ),
        r"BAD-P-1.*twice",
    ),
    ("an extra top-level field", b"BAD-P", js({**product(), "priority": "high"}), r"priority"),
    ("key is not the sku", b"NOT-IT", js(product()), r"message key"),
    ("a tombstone without an account header", b"BAD-P", None, r"account_token"),
]

INVOICE_UPLOADS: list[Case] = [
    ("broken JSON", b"BAD-O", b"{{}", r"json"),
    (
        "both PDF and URL",
        b"BAD-O",
        js(invoice(invoice_url="https://files.example.com/a.pdf")),
        r"exactly one",
    ),
    ("neither PDF nor URL", b"BAD-O", js(without(invoice(), "invoice_pdf_base64")), r"exactly one"),
    ("empty order_id", b"", js(invoice(order_id="")), r"order_id"),
    ("negative total", b"BAD-O", js(invoice(total_amount=-1)), r"total_amount"),
    (
        "base64 that is not base64",
        b"BAD-O",
        js(invoice(invoice_pdf_base64="%%%not-base64%%%")),
        r"base64",
    ),
    (
        "base64 of a non-PDF",
        b"BAD-O",
        js(invoice(invoice_pdf_base64=base64.b64encode(b"MZ\x90\x00exe").decode())),
        r"not a PDF",
    ),
    (
        "unknown account_token",
        b"BAD-O",
        js(invoice(account_token=UNKNOWN)),
        r"unknown account_token",
    ),
    (
        "file:// URL",
        b"BAD-O",
        js(without(invoice(invoice_url="file:///etc/passwd"), "invoice_pdf_base64")),
        r"invoice_url.*scheme|https",
    ),
    (
        "cloud metadata URL",
        b"BAD-O",
        js(
            without(
                invoice(invoice_url="http://169.254.169.254/latest/meta-data/"),
                "invoice_pdf_base64",
            )
        ),
        r"invoice_url",
    ),
    (
        "loopback URL",
        b"BAD-O",
        js(without(invoice(invoice_url="https://127.0.0.1:6379/"), "invoice_pdf_base64")),
        r"invoice_url",
    ),
    (
        "credentials in the URL",
        b"BAD-O",
        js(
            without(
                invoice(invoice_url="https://user:pw@files.example.com/a.pdf"), "invoice_pdf_base64"
            )
        ),
        r"invoice_url",
    ),
    (
        "a host off the allowlist",
        b"BAD-O",
        js(without(invoice(invoice_url="https://evil.example.net/a.pdf"), "invoice_pdf_base64")),
        r"invoice_url",
    ),
    (
        "gopher URL",
        b"BAD-O",
        js(
            without(invoice(invoice_url="gopher://files.example.com:70/_SET"), "invoice_pdf_base64")
        ),
        r"invoice_url",
    ),
    (
        "a 1 MB URL",
        b"BAD-O",
        js(without(invoice(invoice_url="https://files.example.com/" + HUGE), "invoice_pdf_base64")),
        r"invoice_url",
    ),
    ("an extra field", b"BAD-O", js(invoice(customer_email="x@example.com")), r"customer_email"),
    *[
        (name, b"BAD-O", js(without(invoice(invoice_url=url), "invoice_pdf_base64")), pattern)
        for name, url, pattern in (
            # Each passed decode once and was retried forever, stopping the partition's commits.
            ("a control character in the path", "https://files.example.com/a\x01.pdf", "control"),
            ("a NUL in the host", "https://localhost\x00.cdn.example.com/a.pdf", "control"),
            ("a host with trailing dots", "https://x.cdn.example.com../a.pdf", "domain name"),
            ("a label over 63 characters", f"https://{'a' * 64}.cdn.example.com/a", "domain name"),
            ("a host IDNA refuses", "https://ex\u2028ample.cdn.example.com/a", "domain name"),
            # IPv6 forms that carry an internal IPv4 address.
            ("NAT64 metadata", "https://[64:ff9b::a9fe:a9fe]/a.pdf", "not public"),
            ("local-use NAT64", "https://[64:ff9b:1::a00:1]/a.pdf", "not public"),
            ("6to4 loopback", "https://[2002:7f00:1::]/a.pdf", "not public"),
            ("IPv4-compatible loopback", "https://[::7f00:1]/a.pdf", "not public"),
            ("IPv4-translated loopback", "https://[::ffff:0:7f00:1]/a.pdf", "not public"),
            ("site-local", "https://[fec0::1]/a.pdf", "not public"),
            ("an IETF protocol address", "https://192.0.0.8/a.pdf", "not public"),
        )
    ],
]

ORDER_POLL_TICKS: list[Case] = [
    ("broken JSON", TICK_KEY, b"[", r"json|EOF"),
    ("unknown channel", TICK_KEY, js(tick(channel="myspace")), r"channel"),
    ("missing channel", TICK_KEY, js(without(tick(), "channel")), r"channel"),
    ("unknown account_token", TICK_KEY, js(tick(account_token=UNKNOWN)), r"unknown account_token"),
    ("since not a date", TICK_KEY, js(tick(since="yesterday")), r"since"),
    ("a tombstone", TICK_KEY, None, r"tombstone"),
    ("an extra field", TICK_KEY, js(tick(page=2)), r"page"),
]

CASES = {
    "variant-updates": VARIANT_UPDATES,
    "product-upserts": PRODUCT_UPSERTS,
    "invoice-uploads": INVOICE_UPLOADS,
    "order-poll-ticks": ORDER_POLL_TICKS,
}
