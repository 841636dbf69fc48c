"""order-poller: new and changed orders from M2E to the `orders` topic, exactly once."""

from services.order_poller.service import OrderPoller, content_hash, merge_ticks

__all__ = ["OrderPoller", "content_hash", "merge_ticks"]
