"""One user's catalog: products with variants, keyed by SKU.

Semantics where the reference is silent (ASSUMPTION; the README lists them):
- create of an existing product SKU, or of a variant SKU another product already uses,
  is an item error (`conflict`); so is a SKU repeated within one batch;
- update or delete of an unknown SKU is an item error (`not_found`, the API's 404);
- a simple product (`is_simple: true`) has exactly one variant;
- PATCH replaces the fields it names; lists (images, options, attributes) are replaced whole;
- a product's `quantity` is the sum of its variants' quantities.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from m2e_sandbox.orders import rfc3339
from shared.clock import Clock
from shared.m2e.models import (
    PRODUCT_STATUS_NAMES,
    CatalogFindRequest,
    ProductCreate,
    ProductUpdate,
    VariantUpdate,
)


@dataclass(frozen=True, slots=True)
class ItemError:
    index: int
    field: str
    message: str
    code: str = "validation_error"  # | "not_found" | "conflict"
    sku: str | None = None

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"index": self.index, "field": self.field}
        if self.sku is not None:
            data["sku"] = self.sku
        return {
            "code": self.code,
            "message": f"item {self.index}: {self.field}: {self.message}",
            "data": data,
        }


@dataclass(slots=True)
class _Seen:
    """SKUs claimed earlier in the same batch."""

    products: set[str] = field(default_factory=set)
    variants: set[str] = field(default_factory=set)


class Catalog:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.products: dict[str, dict[str, Any]] = {}
        self._variant_owner: dict[str, str] = {}

    # ------------------------------------------------------------------ create
    def check_create(self, index: int, item: ProductCreate, seen: _Seen) -> ItemError | None:
        if item.sku in self.products or item.sku in seen.products:
            return ItemError(
                index, "sku", f"product '{item.sku}' already exists", "conflict", item.sku
            )
        if item.is_simple and len(item.variants) != 1:
            return ItemError(
                index, "variants", "a simple product has exactly one variant", sku=item.sku
            )
        mine: set[str] = set()
        for v_index, variant in enumerate(item.variants):
            taken = variant.sku in self._variant_owner or variant.sku in seen.variants
            if taken or variant.sku in mine:
                return ItemError(
                    index,
                    f"variants[{v_index}].sku",
                    f"variant '{variant.sku}' already exists",
                    "conflict",
                    item.sku,
                )
            mine.add(variant.sku)
        seen.products.add(item.sku)
        seen.variants |= mine
        return None

    def create(self, item: ProductCreate) -> None:
        now = rfc3339(self._clock())
        variants: list[dict[str, Any]] = [
            {
                "token": str(uuid.uuid4()),
                "sku": v.sku,
                "barcode": v.barcode,
                "price": v.price,
                "quantity": v.quantity,
                "images": v.images or [],
                "options": [o.model_dump() for o in v.options or []],
                "attributes": [a.model_dump() for a in v.attributes or []],
                "weight": v.weight,
                "weight_unit": v.weight_unit,
                "height": v.height,
                "depth": v.depth,
                "width": v.width,
                "dimension_unit": v.dimension_unit,
                "update_date": now,
            }
            for v in item.variants
        ]
        product = {
            "token": str(uuid.uuid4()),
            "external_id": None,
            "sku": item.sku,
            "quantity": sum(v["quantity"] for v in variants),
            "is_simple": item.is_simple,
            "status": PRODUCT_STATUS_NAMES[item.status],
            "title": item.title,
            "description": item.description,
            "currency": item.currency,
            "images": item.images or [],
            "attributes": [a.model_dump() for a in item.attributes or []],
            "update_date": now,
            "variants": variants,
        }
        self.products[item.sku] = product
        for v in item.variants:
            self._variant_owner[v.sku] = item.sku

    # ------------------------------------------------------------------ update
    def check_update(self, index: int, item: ProductUpdate, seen: _Seen) -> ItemError | None:
        if item.sku not in self.products:
            return ItemError(
                index, "sku", f"product '{item.sku}' is not found", "not_found", item.sku
            )
        return None

    def update(self, item: ProductUpdate) -> None:
        product = self.products[item.sku]
        for key, value in item.model_dump(exclude={"sku"}, exclude_none=True).items():
            product[key] = value
        product["update_date"] = rfc3339(self._clock())

    # ------------------------------------------------------------------ variants
    def check_variant_update(
        self, index: int, item: VariantUpdate, seen: _Seen
    ) -> ItemError | None:
        if item.sku not in self._variant_owner:
            return ItemError(
                index, "sku", f"variant '{item.sku}' is not found", "not_found", item.sku
            )
        return None

    def update_variant(self, item: VariantUpdate) -> None:
        product = self.products[self._variant_owner[item.sku]]
        now = rfc3339(self._clock())
        for variant in product["variants"]:
            if variant["sku"] == item.sku:
                variant.update(item.model_dump(exclude={"sku"}, exclude_none=True))
                variant["update_date"] = now
        product["quantity"] = sum(v["quantity"] for v in product["variants"])
        product["update_date"] = now

    def variant(self, sku: str) -> dict[str, Any] | None:
        owner = self._variant_owner.get(sku)
        if owner is None:
            return None
        variants: list[dict[str, Any]] = self.products[owner]["variants"]
        return next(v for v in variants if v["sku"] == sku)

    # ------------------------------------------------------------------ delete
    def check_delete(self, index: int, sku: str, seen: _Seen) -> ItemError | None:
        if sku not in self.products or sku in seen.products:
            return ItemError(index, "sku", f"product '{sku}' is not found", "not_found", sku)
        seen.products.add(sku)
        return None

    def delete(self, sku: str) -> None:
        product = self.products.pop(sku)
        for variant in product["variants"]:
            self._variant_owner.pop(variant["sku"], None)

    # ------------------------------------------------------------------ read
    def get(self, sku: str) -> dict[str, Any] | None:
        return self.products.get(sku)

    def find(self, request: CatalogFindRequest) -> tuple[list[dict[str, Any]], int]:
        products: list[dict[str, Any]]
        filters = request.filters
        if filters is not None and filters.sku is not None:
            skus = [filters.sku] if isinstance(filters.sku, str) else filters.sku
            products = [self.products[s] for s in dict.fromkeys(skus) if s in self.products]
        else:
            products = list(self.products.values())
        if filters is not None and filters.status is not None:
            wanted = set(filters.status)
            products = [p for p in products if p["status"] in wanted]
        sort = request.sort
        key = sort.field if sort is not None else "sku"
        products.sort(key=lambda p: p[key], reverse=sort is not None and sort.direction == "desc")
        page = request.result
        offset, limit = (page.offset, page.limit) if page is not None else (0, 100)
        return products[offset : offset + limit], len(products)


def new_seen() -> _Seen:
    return _Seen()
