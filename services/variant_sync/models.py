"""The `variant-updates` topic: partial updates of one variant, keyed by its SKU."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import ConfigDict

from shared.m2e.models import VariantUpdate, optional

TOPIC = "variant-updates"


def key_of(value: Mapping[str, Any]) -> str | None:
    """The message key the topic asks for: the variant SKU."""
    return value.get("sku")


EVENT_FIELDS = {"account_token", "event_id", "occurred_at"}


class VariantUpdateEvent(VariantUpdate):
    """`{account_token, sku, barcode?, price?, quantity?, images?, options?, attributes?}`.

    The variant fields are M2E's own (`CatalogProductsVariantsUpdate`), validated with the
    reference's ranges before any quota is spent. Unknown fields are refused.
    """

    model_config = ConfigDict(strict=True, extra="forbid")

    account_token: UUID
    event_id: str = optional()
    occurred_at: datetime = optional()
