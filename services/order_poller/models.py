"""`order-poll-ticks` in, `orders` out, and the poller's durable cursor."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

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
    """Per (channel, account), in a compacted topic: how far polling got, and the content
    hash of every order inside the overlap window (what was published, so an unchanged
    order is not published again)."""

    channel: str
    account_token: str
    cursor: datetime | None = None  # the latest sale_date seen
    seen: dict[str, tuple[str, str]] = {}  # order token → (content hash, sale_date)
    polled_at: datetime | None = None
