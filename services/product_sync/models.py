"""The `product-upserts` topic: M2E-shaped or SAP Anywhere-shaped products, or deletes.

    {"account_token": "<uuid>", "op": "upsert"|"delete", "source": "m2e"|"sap-anywhere",
     "product": {...}, "pricing"?: {"currency": "EUR", "variants": {"<sku>": {"price", "quantity"}}},
     "event_id"?, "occurred_at"?}

A null value (tombstone) keyed by the product SKU with an `account_token` header deletes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.m2e.models import Currency, Key, NonEmptyStr, Price, Quantity, optional

TOPIC = "product-upserts"


def key_of(value: Mapping[str, Any]) -> str | None:
    """The message key the topic asks for: the product SKU (M2E `sku`, SAP Anywhere `code`)."""
    product = value.get("product") or {}
    return value.get("sku") or product.get("sku") or product.get("code")


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class VariantPricing(_Event):
    price: Price = optional()
    quantity: Quantity = optional()


class Pricing(_Event):
    """Prices and stock SAP Anywhere does not carry, per variant SKU."""

    currency: Currency = optional()
    variants: dict[str, VariantPricing] = {}


class ProductEvent(_Event):
    account_token: UUID
    op: Literal["upsert", "delete"] = "upsert"
    source: Literal["m2e", "sap-anywhere"] = "m2e"
    product: dict[str, Any] | None = None  # validated by its source's model
    sku: Key = optional()  # for deletes without a product body
    pricing: Pricing = optional()
    event_id: str = optional()
    occurred_at: datetime = optional()


# ------------------------------------------------------------------ SAP Anywhere


class _Sap(BaseModel):
    # SAP Anywhere returns many fields we do not map (tax classes, UoMs, vendors, …).
    model_config = ConfigDict(extra="ignore", populate_by_name=True, allow_inf_nan=False)


class SapRef(_Sap):
    id: int | None = None
    name: str | None = None


class SapAttribute(_Sap):
    attribute1: str | None = None
    attribute2: str | None = None
    attribute3: str | None = None
    attribute4: str | None = None


class SapVariantValue(_Sap):
    """A SKU's value of one variant (e.g. variant "Size", value "M")."""

    value: str
    code: str | None = None
    variant: SapRef | None = None


class SapSku(_Sap):
    """One SKU of a product with variants enabled. The reference lists only `id`, `name`
    and `code`; the other fields are what SAP Anywhere's SKU records carry and what a
    publisher may include (all optional)."""

    code: Key
    name: str | None = None
    barcode: str | None = None
    status: str | None = None
    variant_values: list[SapVariantValue] = Field(default=[], alias="variantValues")
    weight: Annotated[float, Field(ge=0)] | None = None
    length: Annotated[float, Field(ge=0)] | None = None
    height: Annotated[float, Field(ge=0)] | None = None
    width: Annotated[float, Field(ge=0)] | None = None
    images: list[str] = []


class SapProduct(_Sap):
    code: Key
    name: NonEmptyStr
    status: str | None = "Active"
    description: str | None = None
    weight: Annotated[float, Field(ge=0)] | None = None
    length: Annotated[float, Field(ge=0)] | None = None
    height: Annotated[float, Field(ge=0)] | None = None
    width: Annotated[float, Field(ge=0)] | None = None
    weight_unit_id: int | None = Field(default=None, alias="weightUnitId")
    length_unit_id: int | None = Field(default=None, alias="lengthUnitId")
    brand: SapRef | None = None
    manufacturer: SapRef | None = None
    category: SapRef | None = None
    model: str | None = None
    hs_tariff_code: str | None = Field(default=None, alias="hsTariffCode")
    country_of_origin: str | None = Field(default=None, alias="countryofOrigin")
    variant_enabled: bool | None = Field(default=None, alias="variantEnabled")
    skus: list[SapSku] = []
    attributes: list[SapAttribute] = []
    custom_fields: dict[str, Any] = Field(default={}, alias="customFields")
    images: list[str] = []  # image URLs the publisher resolved (SAP stores binaries)
    deleted: bool = False
