"""order-poller decoding and tick merging."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.order_poller import OrderPoller, content_hash, merge_ticks
from shared.service import InvalidMessage

ACCT = "6f1c2d3e-0001-4a5b-8c9d-000000000001"


def poller() -> OrderPoller:
    return OrderPoller(
        {ACCT},
        "127.0.0.1:9092",
        orders_topic="orders",
        cursor_topic="cursors",
        transactional_id="t",
    )


def decode(value: Any, key: bytes | None = f"ebay:{ACCT}".encode()) -> Any:
    return poller().decode(key, json.dumps(value).encode(), [])


def test_tick_decodes_to_a_poll_of_channel_and_account() -> None:
    d = decode({"account_token": ACCT, "channel": "ebay", "since": "2026-11-01T00:00:00+00:00"})
    assert (d.key, d.operation, d.payload) == (
        f"ebay:{ACCT}",
        "poll",
        {"channel": "ebay", "since": "2026-11-01T00:00:00Z"},
    )


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        ({"account_token": ACCT, "channel": "myspace"}, None, "channel"),
        ({"account_token": ACCT}, None, "channel"),
        ({"account_token": ACCT, "channel": "ebay", "since": "yesterday"}, None, "since"),
        (
            {"account_token": "6f1c2d3e-0009-4a5b-8c9d-000000000009", "channel": "ebay"},
            None,
            "unknown account",
        ),
        ({"account_token": ACCT, "channel": "ebay"}, b"amazon:x", "not channel:account_token"),
        # Not the account alone, though other topics allow it: a poll lives in one partition.
        ({"account_token": ACCT, "channel": "ebay"}, ACCT.encode(), "not channel:account_token"),
    ],
)
def test_bad_ticks_name_the_problem(value: Any, key: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=reason):
        poller().decode(key, json.dumps(value).encode(), [])


def test_ticks_collapse_and_the_earliest_backfill_wins() -> None:
    merged, replaced = merge_ticks(
        {"channel": "ebay", "since": "2026-10-01T00:00:00Z"}, {"channel": "ebay", "since": None}
    )
    assert merged["since"] == "2026-10-01T00:00:00Z" and replaced is False
    merged, _ = merge_ticks(merged, {"channel": "ebay", "since": "2026-09-01T00:00:00Z"})
    assert merged["since"] == "2026-09-01T00:00:00Z"
    assert (
        merge_ticks({"channel": "ebay", "since": None}, {"channel": "ebay", "since": None})[0][
            "since"
        ]
        is None
    )


def test_content_hash_sees_a_status_change_and_ignores_key_order() -> None:
    order = {"token": "t1", "status": "Pending", "items": [{"sku": "a"}]}
    assert content_hash(order) == content_hash(dict(reversed(list(order.items()))))
    assert content_hash(order) != content_hash({**order, "status": "Shipped"})
