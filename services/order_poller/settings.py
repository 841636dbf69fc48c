"""order-poller's and `m2e-sync tick`'s settings, beside the worker's own."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.config import WorkerSettings

ORDERS_TOPIC = "orders"
# Compacted state: the order poller's durable cursor per (channel, account).
ORDER_CURSORS_TOPIC = "m2e-sync.order-cursors"


class OrderPollerSettings(WorkerSettings):
    orders_topic: str = ORDERS_TOPIC
    order_cursor_topic: str = ORDER_CURSORS_TOPIC
    order_overlap_days: Annotated[float, Field(gt=0)] = 7.0
    order_initial_lookback_days: Annotated[float, Field(gt=0)] = 30.0
    # Prefix of the transactional ids, one per tick partition: `<prefix>.<partition>`.
    order_transactional_id: str | None = None  # default: m2e-sync.order-poller.<tick topic>
    tick_accounts: str = ""  # "channel:account_token,…"; empty: every account the API lists
