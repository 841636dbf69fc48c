"""The `invoice-uploads` topic: one invoice for one order, inline or by URL."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.m2e.models import Key, ShortText, Url, optional

TOPIC = "invoice-uploads"


def key_of(value: Mapping[str, Any]) -> str | None:
    """The message key the topic asks for: the order id."""
    return value.get("order_id")


Amount = Annotated[float, Field(ge=0)]


class InvoiceEvent(BaseModel):
    """`{account_token, order_id, invoice_number, total_amount?, total_vat_amount?,
    shipping_id?, transaction_id?}` plus exactly one of `invoice_pdf_base64` or
    `invoice_url` (a claim check for PDFs too large for a Kafka message)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    account_token: UUID
    order_id: Key
    invoice_number: Key
    total_amount: Amount | None = None
    total_vat_amount: Amount | None = None
    shipping_id: ShortText | None = None
    transaction_id: ShortText | None = None
    invoice_pdf_base64: str | None = None
    invoice_url: Url | None = None
    event_id: str = optional()
    occurred_at: datetime = optional()

    @model_validator(mode="after")
    def _one_source(self) -> InvoiceEvent:
        if (self.invoice_pdf_base64 is None) == (self.invoice_url is None):
            raise ValueError("give exactly one of invoice_pdf_base64 or invoice_url")
        return self
