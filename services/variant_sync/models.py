"""The `variant-updates` topic: partial updates of one variant, keyed by its SKU."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import ConfigDict

from shared.m2e.models import VariantUpdate, optional

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
