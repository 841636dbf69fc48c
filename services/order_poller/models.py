"""`order-poll-ticks` in, `orders` out, and the poller's durable cursor."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, RootModel

from shared.m2e.models import Channel, optional

TOPIC = "order-poll-ticks"


def key_of(value: Mapping[str, Any]) -> str | None:
    """The message key the topic asks for: `channel:account_token`, one poll per pair."""
    return f"{value.get('channel')}:{value.get('account_token')}"


class TickEvent(BaseModel):
    """`{account_token, channel, since?}`; `since` forces a backfill from that time."""

    model_config = ConfigDict(extra="forbid")

    account_token: UUID
    channel: Channel
    since: datetime = optional()
    event_id: str = optional()
    occurred_at: datetime = optional()


class OrderRecord(BaseModel):
    """One new or changed order (`orders`, keyed by the order token)."""

    account_token: str
    channel: str
    order: dict[str, Any]
    fetched_at: datetime


class Cursor(BaseModel):
    """Per (channel, account), key `channel:account_token`, in a compacted topic: how far
    polling got, and which parts hold the orders seen inside the overlap window (what was
    published, so an unchanged order is not published again; services.order_poller.seen)."""

    channel: str
    account_token: str
    cursor: datetime | None = None  # the latest sale_date seen
    polled_at: datetime | None = None
    days: dict[str, int] = {}  # sale day "YYYY-MM-DD" → its parts, keys `<key>#<day>#<part>`
    # Written before parts existed: order token → (content hash, sale_date). Read, converted.
    seen: dict[str, tuple[str, str]] | None = None


class CursorPart(BaseModel):
    """Key `channel:account_token#YYYY-MM-DD#part`: orders of that sale day seen inside the
    overlap window, 14 bytes each (8 of blake2b-64 of the order token, then the first 6 of
    its content hash), sorted, base64."""

    entries: str


class CursorRecord(RootModel[Cursor | CursorPart]):
    """A record of the cursor topic: a cursor or one of its parts (a tombstone deletes)."""
