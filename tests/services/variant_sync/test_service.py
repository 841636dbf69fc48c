"""variant-sync decoding: reference ranges checked before any quota is spent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.variant_sync import VariantSync
from shared.service import InvalidMessage

ACCT = "6f1c2d3e-0001-4a5b-8c9d-000000000001"


def decode(value: Any, key: bytes | None = b"V1") -> Any:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return VariantSync({ACCT}).decode(key, raw, [])


def test_partial_update_keeps_only_given_fields() -> None:
    d = decode(
        {
            "account_token": ACCT,
            "sku": "V1",
            "price": 9.5,
            "event_id": "e1",
            "occurred_at": "2026-11-23T10:00:00Z",
        }
    )
    assert (d.account_token, d.operation, d.key, d.event_id) == (ACCT, "variant.update", "V1", "e1")
    # The event time rides along (not sent): shared.coalescer.AT.
    assert d.payload == {"sku": "V1", "price": 9.5, "_at": 1795428000.0}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"account_token": ACCT, "sku": "V1", "price": -1}, "price"),
        ({"account_token": ACCT, "sku": "V1", "price": 1_000_000.5}, "price"),
        ({"account_token": ACCT, "sku": "V1", "quantity": 1_000_001}, "quantity"),
        ({"account_token": ACCT, "sku": "V1", "quantity": 2.5}, "quantity"),
        ({"account_token": ACCT, "sku": "V1", "price": "9.99"}, "price"),
        ({"account_token": ACCT, "sku": "V1", "price": 1, "colour": "red"}, "colour"),
        ({"account_token": "not-a-uuid", "sku": "V1", "price": 1}, "account_token"),
        ({"sku": "V1", "price": 1}, "account_token"),
        ({"account_token": ACCT, "price": 1}, "sku"),
        ({"account_token": ACCT, "sku": "V1"}, "nothing to update"),
        (
            {"account_token": "6f1c2d3e-0009-4a5b-8c9d-000000000009", "sku": "V1", "price": 1},
            "unknown account_token",
        ),
        (b"{not json", "Invalid JSON"),
        (b"\xff\xfe", "Invalid JSON"),
        ([1, 2], "Input should be"),
    ],
)
def test_invalid_updates_name_the_problem(value: Any, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        decode(value)


def test_key_must_be_the_sku_and_tombstones_are_refused() -> None:
    with pytest.raises(InvalidMessage, match="not the variant sku") as info:
        decode({"account_token": ACCT, "sku": "V1", "price": 1}, key=b"V2")
    assert info.value.error_class == "KeyMismatch"
    with pytest.raises(InvalidMessage, match="tombstone"):
        VariantSync({ACCT}).decode(b"V1", None, [])


def test_a_message_keyed_by_its_account_is_accepted() -> None:
    """Trickle-heavy merchants may key by account: every event of the account, so of each
    SKU, shares one partition."""
    event = decode({"account_token": ACCT, "sku": "V1", "price": 1}, key=ACCT.encode())
    assert (event.key, event.account_token) == ("V1", ACCT)
