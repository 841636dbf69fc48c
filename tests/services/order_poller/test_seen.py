"""The orders a poll has seen, kept small: 14 bytes an order, by sale day, in parts."""

from __future__ import annotations

from datetime import date, timedelta

from services.order_poller.cursors import records
from services.order_poller.models import Cursor, CursorPart
from services.order_poller.seen import Seen
from services.order_poller.service import content_hash

KAFKA_DEFAULT_MAX_MESSAGE = 1_048_588


def orders(n: int, days: int, start: date = date(2026, 11, 24)) -> list[tuple[str, str, str]]:
    """(token, content hash, sale_date) of n orders over `days` days, a third on the first."""
    out = []
    for i in range(n):
        day = start if i % 3 == 0 else start + timedelta(days=i % days)
        out.append((f"order-{i:07d}", content_hash({"i": i}), f"{day.isoformat()}T12:00:00Z"))
    return out


def test_an_order_is_new_once_and_again_only_when_its_content_changes() -> None:
    seen = Seen()
    assert seen.update("o1", content_hash({"s": "Pending"}), "2026-11-30T10:00:00Z")
    assert not seen.update("o1", content_hash({"s": "Pending"}), "2026-11-30T10:00:00Z")
    assert seen.update("o1", content_hash({"s": "Shipped"}), "2026-11-30T10:00:00Z")
    assert seen.touched == {"2026-11-30"}


def test_parts_round_trip_and_days_leave_the_window() -> None:
    seen = Seen()
    for token, digest, sale in orders(1000, 7):
        seen.update(token, digest, sale)
    copy = Seen()
    for day, count in seen.days(100).items():
        parts = list(seen.parts(day, 100))
        assert len(parts) == count
        for part in parts:
            copy.load(day, part)
    assert len(copy) == 1000
    assert all(not copy.update(t, d, s) for t, d, s in orders(1000, 7))
    copy.expire("2026-11-26")
    assert min(copy.days()) == "2026-11-26" and len(copy) < 1000


def test_200k_orders_in_the_window_fit_kafkas_default_record_size() -> None:
    seen = Seen()
    for token, digest, sale in orders(200_000, 7):  # 85,714 on one day
        seen.update(token, digest, sale)
    head, out = records(
        "cursors", "ebay:acct", None, Cursor(channel="ebay", account_token="acct"), seen
    )
    sizes = [len(k) + len(v or b"") for _t, k, v in out]
    assert max(sizes) < KAFKA_DEFAULT_MAX_MESSAGE / 2, max(sizes)
    assert sum(head.days.values()) == len(out) - 1
    assert head.days["2026-11-24"] == 4  # the busy day (85,714 orders) in four parts
    loaded = Seen()
    for _t, key, value in out[:-1]:
        assert value is not None
        loaded.load(key.decode().split("#")[1], CursorPart.model_validate_json(value).entries)
    assert len(loaded) == 200_000


def test_a_poll_rewrites_only_the_days_it_touched_and_deletes_what_left() -> None:
    seen = Seen()
    for token, digest, sale in orders(300, 3):
        seen.update(token, digest, sale)
    first, _ = records("c", "k", None, Cursor(channel="ebay", account_token="a"), seen, 50)
    seen.touched.clear()
    seen.update("new-order", content_hash({"n": 1}), "2026-11-26T09:00:00Z")
    seen.expire("2026-11-25")  # 2026-11-24 left the window
    head, out = records("c", "k", first, first, seen, 50)
    written = {k.decode(): v for _t, k, v in out}
    assert {k for k, v in written.items() if v is None} == {
        f"k#2026-11-24#{i}" for i in range(first.days["2026-11-24"])
    }
    assert {k.split("#")[1] for k, v in written.items() if v is not None and "#" in k} == {
        "2026-11-26"
    }
    assert "2026-11-24" not in head.days and written["k"] is not None


def test_a_cursor_written_inline_before_parts_is_read_and_rewritten_whole() -> None:
    legacy = {"o1": (content_hash({"a": 1}), "2026-11-30T10:00:00Z")}
    seen = Seen.from_inline(legacy)
    assert not seen.update("o1", content_hash({"a": 1}), "2026-11-30T10:00:00Z")
    assert seen.touched == {"2026-11-30"}
