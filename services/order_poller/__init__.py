"""order-poller: new and changed orders from M2E to the `orders` topic, exactly once."""

from __future__ import annotations

from datetime import timedelta

from services.order_poller import samples
from services.order_poller.models import TOPIC, TickEvent, key_of
from services.order_poller.service import OrderPoller, content_hash, merge_ticks
from services.order_poller.settings import ORDER_CURSORS_TOPIC, ORDERS_TOPIC, OrderPollerSettings
from services.spec import ServiceSpec
from shared.topics import TopicSpec


def build(settings: OrderPollerSettings) -> OrderPoller:
    topic = settings.kafka_input_topic or TOPIC
    return OrderPoller(
        settings.credentials(),
        settings.kafka_bootstrap_servers,
        orders_topic=settings.orders_topic,
        cursor_topic=settings.order_cursor_topic,
        transactional_id=settings.order_transactional_id or f"m2e-sync.order-poller.{topic}",
        overlap=timedelta(days=settings.order_overlap_days),
        initial_lookback=timedelta(days=settings.order_initial_lookback_days),
        kafka=settings.kafka_security(),
    )


SPEC = ServiceSpec.of(
    OrderPoller,
    event=TickEvent,
    settings=OrderPollerSettings,
    build=build,
    key=key_of,
    samples=samples,
    outputs=(TopicSpec(ORDERS_TOPIC), TopicSpec(ORDER_CURSORS_TOPIC, compacted=True)),
)

__all__ = ["SPEC", "OrderPoller", "OrderPollerSettings", "build", "content_hash", "merge_ticks"]
