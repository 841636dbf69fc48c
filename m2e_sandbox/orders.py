"""Orders per (channel, account token), generated deterministically from a seed.

At the sandbox's origin time each account has `per_account` orders spread over the last
`history_days`. After it, a new order appears every 60/`new_per_minute` seconds and an
open order advances its status every 60/`status_change_per_minute` seconds, so a poller
always has new and changed orders to find. The same seed, origin and time give the same
orders, byte for byte.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from m2e_sandbox.config import OrdersConfig
from shared.clock import Clock

# Status flow. ASSUMPTION: the reference gives no enum; these are the names we use.
NEXT_STATUS = {"Pending": "Unshipped", "Unshipped": "Shipped"}
OPEN_STATUSES = ("Pending", "Unshipped")
FIRST_NAMES = ("Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Greta", "Hugo", "Ines", "Jonas")
LAST_NAMES = ("Meyer", "Smith", "Rossi", "Dubois", "Novak", "Garcia", "Larsen", "Kowalski")
COUNTRIES = ("DE", "US", "GB", "FR", "IT", "ES", "PL", "NL")
CURRENCY = {
    "DE": "EUR",
    "US": "USD",
    "GB": "GBP",
    "FR": "EUR",
    "IT": "EUR",
    "ES": "EUR",
    "PL": "PLN",
    "NL": "EUR",
}


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class _AccountOrders:
    channel: str
    token: str
    orders: list[dict[str, Any]] = field(default_factory=list)
    new_made: int = 0
    changes_made: int = 0


class OrderBook:
    def __init__(
        self, config: OrdersConfig, accounts: Sequence[tuple[str, str]], origin: float, clock: Clock
    ) -> None:
        """`accounts`: (account token, channel) pairs."""
        self._config = config
        self._origin = origin
        self._clock = clock
        self._accounts: dict[str, _AccountOrders] = {}
        for token, channel in accounts:
            book = _AccountOrders(channel=channel, token=token)
            span = config.history_days * 86400
            for k in range(config.per_account):
                sale = origin - span + span * k / max(1, config.per_account)
                book.orders.append(self._make(book, k, sale, initial=True))
            self._accounts[token] = book

    def _rng(self, *parts: object) -> random.Random:
        return random.Random(":".join(str(p) for p in (self._config.seed, *parts)))

    def _make(self, book: _AccountOrders, k: int, sale: float, initial: bool) -> dict[str, Any]:
        rng = self._rng(book.token, "order", k)
        country = rng.choice(COUNTRIES)
        items: list[dict[str, Any]] = []
        for i in range(rng.randint(1, 3)):
            sku = f"SKU-{rng.randint(1, 2000):05d}"
            items.append(
                {
                    "title": f"Item {sku}",
                    "sku": sku,
                    "barcode": f"{rng.randint(10**11, 10**12 - 1)}",
                    "item_id": f"{k}-{i}",
                    "quantity": rng.randint(1, 4),
                    "price": round(rng.uniform(3, 300), 2),
                    "tracking_service": None,
                    "tracking_numbers": [],
                }
            )
        subtotal = round(sum(it["price"] * it["quantity"] for it in items), 2)
        old = initial and sale < self._origin - 3 * 86400
        status = "Shipped" if old else rng.choice(OPEN_STATUSES)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        order = {
            "token": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "order_id": f"{book.channel.upper()}-{book.token[:8]}-{k:06d}",
            "source_order_id": f"{100000 + k}",
            "buyer_name": f"{first} {last}",
            "buyer_email": f"{first.lower()}.{last.lower()}@example.com",
            "status": status,
            "is_archived": False,
            "sale_date": rfc3339(sale),
            "ship_date": rfc3339(sale + 86400) if status == "Shipped" else None,
            "ship_by_date": rfc3339(sale + 3 * 86400),
            "shipping_address": {
                "name": f"{first} {last}",
                "street": f"{rng.randint(1, 200)} Market Street",
                "city": "Springfield",
                "postal_code": f"{rng.randint(10000, 99999)}",
                "country_code": country,
            },
            "country_code": country,
            "total": {
                "currency": CURRENCY[country],
                "subtotal": subtotal,
                "shipping": 4.95,
                "tax": round(subtotal * 0.19, 2),
                "amount": round(subtotal * 1.19 + 4.95, 2),
            },
            "items": items,
        }
        if status == "Shipped":
            for it in items:
                it["tracking_service"] = "DHL"
                it["tracking_numbers"] = [f"00340434{rng.randint(10**9, 10**10 - 1)}"]
        return order

    def _advance(self, book: _AccountOrders, now: float) -> None:
        cfg = self._config
        elapsed = max(0.0, now - self._origin)
        due_new = int(elapsed * cfg.new_per_minute / 60)
        due_changes = int(elapsed * cfg.status_change_per_minute / 60)
        # Replay both event streams in time order so a change only sees orders that exist.
        events: list[tuple[float, int, int]] = []
        for n in range(book.new_made, due_new):
            events.append((self._origin + (n + 1) * 60 / cfg.new_per_minute, 0, n))
        for j in range(book.changes_made, due_changes):
            events.append((self._origin + (j + 1) * 60 / cfg.status_change_per_minute, 1, j))
        for at, kind, n in sorted(events):
            if kind == 0:
                book.orders.append(self._make(book, cfg.per_account + n, at, initial=False))
                book.new_made = n + 1
            else:
                self._change_status(book, n, at)
                book.changes_made = n + 1

    def _change_status(self, book: _AccountOrders, j: int, at: float) -> None:
        open_orders = [o for o in book.orders if o["status"] in OPEN_STATUSES]
        if not open_orders:
            return
        order = self._rng(book.token, "change", j).choice(open_orders)
        order["status"] = NEXT_STATUS[order["status"]]
        if order["status"] == "Shipped":
            order["ship_date"] = rfc3339(at)
            for it in order["items"]:
                it["tracking_service"] = "DHL"
                it["tracking_numbers"] = [f"TRK{order['source_order_id']}{it['item_id']}"]

    def has_account(self, token: str, channel: str) -> bool:
        book = self._accounts.get(token)
        return book is not None and book.channel == channel

    def orders(self, token: str) -> list[dict[str, Any]]:
        """The account's orders as of now, in sale-date order."""
        book = self._accounts[token]
        self._advance(book, self._clock())
        return book.orders

    def find_by_order_id(self, tokens: list[str], order_id: str) -> dict[str, Any] | None:
        for token in tokens:
            for order in self.orders(token):
                if order["order_id"] == order_id:
                    return order
        return None
