"""Operator tools without a broker: keys, samples, JSON lines, filters."""

from __future__ import annotations

import json

import pytest

from services import ops
from services.invoice_upload.models import InvoiceEvent
from services.order_poller.models import TickEvent
from services.product_sync.models import ProductEvent
from services.variant_sync.models import VariantUpdateEvent

ACCT = "6f1c2d3e-0001-4a5b-8c9d-000000000001"


@pytest.mark.parametrize(
    ("topic", "model"),
    [
        ("product-upserts", ProductEvent),
        ("variant-updates", VariantUpdateEvent),
        ("invoice-uploads", InvoiceEvent),
        ("order-poll-ticks", TickEvent),
    ],
)
def test_samples_are_valid_events_keyed_by_the_contract(topic: str, model: type) -> None:
    events = ops.samples(topic, 6, ACCT)
    assert len(events) == 6
    for key, value in events:
        model.model_validate_json(json.dumps(value))  # as the worker reads it
        assert key == ops.key_for(topic, value)


def test_jsonl_values_and_keyed_lines() -> None:
    events = ops.read_jsonl('{"sku": "A", "price": 1}\n\n{"key": "B", "value": {"sku": "B"}}\n')
    assert events == [(None, {"sku": "A", "price": 1}), ("B", {"sku": "B"})]
    with pytest.raises(ValueError, match="line 1: not JSON"):
        ops.read_jsonl("{oops")


def test_keys_follow_the_topic_even_with_a_prefix() -> None:
    assert ops.key_for("it.ab12.product-upserts", {"product": {"code": "P1"}}) == "P1"
    assert (
        ops.key_for("order-poll-ticks", {"channel": "ebay", "account_token": ACCT})
        == f"ebay:{ACCT}"
    )


def test_filters_need_header_and_value() -> None:
    assert ops.parse_filters(["error.class=MappingError"]) == {"error.class": "MappingError"}
    with pytest.raises(ValueError, match="HEADER=VALUE"):
        ops.parse_filters(["error.class"])
