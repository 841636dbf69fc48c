"""What product-sync compares a product with: the content hashes of what M2E holds for its
SKU, as an entry of the shared view of the catalog (shared.catalog)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.catalog import Entry

PRODUCT_FIELDS = ("currency", "title", "description", "images", "attributes")
VARIANT_FIELDS = ("barcode", "price", "quantity", "images", "options", "attributes")
KNOWN_CAP = 200_000  # SKUs remembered per process without Redis; past it the oldest go


def _hash(values: Mapping[str, Any], names: tuple[str, ...]) -> str:
    picked = {n: values.get(n) or None for n in names}  # absent, null and [] alike
    return hashlib.blake2b(json.dumps(picked, sort_keys=True).encode(), digest_size=12).hexdigest()


@dataclass(slots=True)
class Known:
    """What the catalog holds for a SKU, as its writers last left it (a view entry)."""

    product: str  # hash of the product fields
    variants: dict[str, str] = field(default_factory=dict)  # variant SKU → hash ("": stale)
    marks: dict[str, int] = field(default_factory=dict)  # variant write marks seen with it

    @classmethod
    def of(cls, product: Mapping[str, Any], marks: Mapping[str, int] | None = None) -> Known:
        return cls(
            _hash(product, PRODUCT_FIELDS),
            {v["sku"]: _hash(v, VARIANT_FIELDS) for v in product.get("variants", [])},
            dict(marks or {}),
        )

    @classmethod
    def from_entry(cls, entry: Entry) -> Known:
        return cls(entry["p"], dict(entry.get("v", {})), dict(entry.get("w", {})))

    def entry(self) -> Entry:
        return {"p": self.product, "v": self.variants, "w": self.marks}
