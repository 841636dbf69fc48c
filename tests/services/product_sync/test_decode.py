"""product-sync decoding: both sources, deletes, tombstones and refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.product_sync import AccountDefaults, ProductSync
from shared.service import InvalidMessage

from .test_mapping import TSHIRT

ACCT = "6f1c2d3e-0001-4a5b-8c9d-000000000001"
M2E_PRODUCT = {"sku": "P1", "status": 1, "is_simple": True, "currency": "EUR", "title": "Lamp",
               "variants": [{"sku": "P1", "barcode": None, "price": 30.0, "quantity": 2}]}  # fmt: skip


def svc() -> ProductSync:
    return ProductSync({ACCT}, {"*": AccountDefaults("EUR", 10.0, 1)})


def decode(value: Any, key: bytes | None = b"P1", headers: Any = ()) -> Any:
    raw = value if value is None or isinstance(value, bytes) else json.dumps(value).encode()
    return svc().decode(key, raw, list(headers))


def test_m2e_shaped_upsert() -> None:
    d = decode({"account_token": ACCT, "product": M2E_PRODUCT, "event_id": "e-9"})
    assert (d.operation, d.key, d.event_id, d.payload["op"]) == ("product", "P1", "e-9", "upsert")
    assert d.payload["product"]["variants"][0]["barcode"] is None


def test_sap_shaped_upsert_uses_defaults() -> None:
    d = decode(
        {"account_token": ACCT, "source": "sap-anywhere", "product": TSHIRT}, key=b"TSHIRT-ORG"
    )
    assert d.payload["product"]["currency"] == "EUR"
    assert [v["price"] for v in d.payload["product"]["variants"]] == [10.0, 10.0]


def test_deletes_tombstones_and_sap_deleted_flag() -> None:
    assert decode({"account_token": ACCT, "op": "delete", "sku": "P1"}).payload == {
        "op": "delete",
        "sku": "P1",
    }
    tomb = decode(None, headers=[("account_token", ACCT.encode())])
    assert tomb.payload == {"op": "delete", "sku": "P1"} and tomb.account_token == ACCT
    gone = decode({"account_token": ACCT, "source": "sap-anywhere", "product": {**TSHIRT, "deleted": True}},
                  key=b"TSHIRT-ORG")  # fmt: skip
    assert gone.payload == {"op": "delete", "sku": "TSHIRT-ORG"}


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        ({"account_token": ACCT, "product": {**M2E_PRODUCT, "currency": "eur"}}, b"P1", "currency"),
        ({"account_token": ACCT, "product": {**M2E_PRODUCT, "variants": []}}, b"P1", "variants"),
        (
            {
                "account_token": ACCT,
                "product": {
                    **M2E_PRODUCT,
                    "is_simple": True,
                    "variants": M2E_PRODUCT["variants"] * 2,
                },
            },
            b"P1",
            "variants",
        ),
        ({"account_token": ACCT, "product": M2E_PRODUCT}, b"P2", "not the product sku"),
        ({"account_token": ACCT}, b"P1", "product: required"),
        ({"account_token": ACCT, "op": "remove", "product": M2E_PRODUCT}, b"P1", "op"),
        ({"account_token": ACCT, "product": M2E_PRODUCT, "colour": "red"}, b"P1", "colour"),
        (
            {"account_token": "6f1c2d3e-0009-4a5b-8c9d-000000000009", "product": M2E_PRODUCT},
            b"P1",
            "unknown account",
        ),
        (
            {
                "account_token": ACCT,
                "source": "sap-anywhere",
                "product": {**TSHIRT, "status": "Retired"},
            },
            b"TSHIRT-ORG",
            "status",
        ),
        (
            {"account_token": ACCT, "source": "sap-anywhere", "product": {"name": "no code"}},
            b"X",
            "code",
        ),
        (b"\x00\x01garbage", b"P1", "Invalid JSON"),
    ],
)
def test_refusals_name_the_problem(value: Any, key: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        decode(value, key=key)


def test_tombstone_without_account_header_is_refused() -> None:
    with pytest.raises(InvalidMessage, match="account_token header"):
        decode(None)
