"""Pydantic models of the M2E Sales Channels API v4, as reconstructed from the reference.

Request models are strict (they are what the sandbox validates against and what the
workers check locally before spending quota); response models are lenient, because the
reference contradicts itself. Where the reference is silent we assume a shape; every
such place is marked ASSUMPTION and listed in the README (why: docs/design.md, "Where
the API is silent").
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_BATCH_ITEMS = 500  # maxItems of every catalog batch endpoint

NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
# ASSUMPTION: the reference gives no lengths. We cap text where marketplaces do (SKUs
# and order ids of at most 255 characters, titles of 1,000, URLs of 2,048) so a hostile
# 1 MB string is refused before it spends quota; the sandbox enforces the same.
Key = Annotated[str, StringConstraints(min_length=1, max_length=255)]
ShortText = Annotated[str, StringConstraints(max_length=255)]
Title = Annotated[str, StringConstraints(max_length=1000)]
Text = Annotated[str, StringConstraints(max_length=100_000)]
Url = Annotated[str, StringConstraints(max_length=2048)]
Currency = Annotated[str, StringConstraints(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")]
Price = Annotated[float, Field(ge=0, le=1_000_000)]
Quantity = Annotated[int, Field(ge=0, le=1_000_000)]
NonNegative = Annotated[float, Field(ge=0)]
WeightUnit = Literal["GRAMS", "KILOGRAMS", "OUNCES", "POUNDS", "TONNES"]
DimensionUnit = Literal[
    "MILLILITERS", "CENTILITERS", "DECIMETERS", "METERS", "INCHES", "YARD", "FEET"
]
Channel = Literal["ebay", "amazon", "walmart", "kaufland", "tiktok", "temu", "shein", "onbuy"]

# The create endpoint takes the status as an integer; reads return its name.
PRODUCT_STATUS_NAMES: dict[int, str] = {
    1: "Active",
    2: "Inactive",
    3: "Disabled",
    4: "Preorder",
    5: "Available",
    7: "Draft",
    8: "Pending",
    9: "Private",
    10: "Publish",
    11: "Archive",
}
ProductStatus = Literal[1, 2, 3, 4, 5, 7, 8, 9, 10, 11]


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def optional(alias: str | None = None) -> Any:
    """An optional field that may be absent but not null (the reference's `type: string`)."""
    return Field(default=None, alias=alias, json_schema_extra=_drop_default)


class _Request(BaseModel):
    # Strict types: "12" is not a price. Unknown fields are ignored, as most APIs do. No
    # infinity or NaN (a JSON 1e999 is infinity): no API can take it, and JSON cannot
    # encode it, so it would fail at send time instead of at decode. Subclasses inherit it.
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class NameValue(_Request):
    name: ShortText
    value: ShortText


class VariantCreate(_Request):
    sku: Key
    barcode: ShortText | None
    price: Price
    quantity: Quantity
    images: list[Url] = optional()
    options: list[NameValue] = optional()
    attributes: list[NameValue] = optional()
    weight: NonNegative | None = None
    weight_unit: WeightUnit | None = None
    height: NonNegative | None = None
    depth: NonNegative | None = None
    width: NonNegative | None = None
    dimension_unit: DimensionUnit | None = None


class ProductCreate(_Request):
    sku: Key
    status: ProductStatus
    is_simple: bool
    currency: Currency
    title: Title
    description: Text = optional()
    images: list[Url] = optional()
    attributes: list[NameValue] = optional()
    variants: Annotated[list[VariantCreate], Field(min_length=1)]


class ProductUpdate(_Request):
    sku: Key
    currency: Currency = optional()
    title: Title = optional()
    description: Text = optional()
    images: list[Url] = optional()
    attributes: list[NameValue] = optional()


class ProductsUpdateRequest(_Request):
    products: Annotated[list[ProductUpdate], Field(min_length=1, max_length=MAX_BATCH_ITEMS)]


class VariantUpdate(_Request):
    sku: Key
    barcode: ShortText = optional()
    price: Price = optional()
    quantity: Quantity = optional()
    images: list[Url] = optional()
    options: list[NameValue] = optional()
    attributes: list[NameValue] = optional()


class VariantsUpdateRequest(_Request):
    variants: Annotated[list[VariantUpdate], Field(min_length=1, max_length=MAX_BATCH_ITEMS)]


class ProductDelete(_Request):
    sku: Key


class InvoiceUpload(_Request):
    order_id: Key
    invoice_number: Key
    total_amount: float | None = None
    total_vat_amount: float | None = None
    shipping_id: ShortText | None = None
    transaction_id: ShortText | None = None
    invoice_data: NonEmptyStr = Field(
        json_schema_extra={"contentEncoding": "base64", "contentMediaType": "application/pdf"}
    )


# ASSUMPTION: paging is `_result: {offset, limit}`, limit at most 500.
class ResultPage(_Request):
    offset: Annotated[int, Field(ge=0)] = 0
    limit: Annotated[int, Field(ge=1, le=MAX_BATCH_ITEMS)] = 100


# ASSUMPTION: sort is `{field, direction}`.
class CatalogSort(_Request):
    field: Literal["sku", "title", "update_date"] = "sku"
    direction: Literal["asc", "desc"] = "asc"


# ASSUMPTION: catalog filters select by product SKU list (or one SKU) and status names.
class CatalogFilters(_Request):
    sku: list[NonEmptyStr] | NonEmptyStr = optional()
    status: list[str] = optional()


class CatalogFindRequest(_Request):
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)

    sort: CatalogSort = optional()
    filters: CatalogFilters = optional()
    result: ResultPage = optional(alias="_result")


class OrderSort(_Request):
    field: Literal["sale_date"] = "sale_date"
    direction: Literal["asc", "desc"] = "asc"


# ASSUMPTION: order filters are a sale-date window (inclusive from, exclusive to) and
# a status list. RFC 3339 strings.
class OrderFilters(_Request):
    model_config = ConfigDict(strict=False, extra="ignore")

    sale_date_from: datetime = optional()
    sale_date_to: datetime = optional()
    status: list[str] = optional()


class OrdersFindRequest(_Request):
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)

    sort: OrderSort = optional()
    filters: OrderFilters = optional()
    search: str | None = None
    result: ResultPage = optional(alias="_result")


# ----------------------------------------------------------------------------- responses


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


class ApiError(_Response):
    # The reference's examples give code as null, a number or a string.
    code: str | int | None = None
    message: str
    data: dict[str, Any] | list[Any] | None = None


class CatalogVariant(_Response):
    token: str
    sku: str | None
    barcode: str | None
    price: float
    quantity: int
    images: list[str]
    options: list[dict[str, Any]]
    attributes: list[dict[str, Any]]
    weight: float | None
    weight_unit: str | None
    height: float | None
    depth: float | None
    width: float | None
    dimension_unit: str | None
    update_date: datetime


class CatalogProduct(_Response):
    token: str
    external_id: str | None
    sku: str | None
    quantity: int
    is_simple: bool
    status: str
    title: str
    images: list[str]
    attributes: list[dict[str, Any]]
    update_date: datetime
    variants: list[CatalogVariant]


class CatalogFindResponse(_Response):
    list: list[CatalogProduct]
    total: int


class CreateResponse(_Response):
    # The reference requires `created` but its example returns `deleted`: accept both.
    created: int | None = None
    deleted: int | None = None

    @property
    def count(self) -> int:
        return self.created if self.created is not None else (self.deleted or 0)


class OrderItem(_Response):
    title: str
    sku: str
    barcode: str
    item_id: str
    quantity: int
    price: float
    tracking_service: str | None
    tracking_numbers: list[str]


class Order(_Response):
    token: str
    order_id: str
    source_order_id: str
    buyer_name: str | None
    buyer_email: str | None
    status: str
    is_archived: bool
    sale_date: datetime
    ship_date: datetime | None
    ship_by_date: datetime | None
    shipping_address: dict[str, Any]
    country_code: str
    total: dict[str, Any]
    items: list[OrderItem]


class OrdersFindResponse(_Response):
    list: list[Order]
    total: int


class Account(_Response):
    token: str
    channel: str
    title: str
    identifier: str
    is_valid: bool
    create_date: datetime
