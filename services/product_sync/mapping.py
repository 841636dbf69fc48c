"""SAP Anywhere `Product` → M2E `CatalogProductCreate`, documented and tested.

| SAP Anywhere | M2E |
|---|---|
| `code` | `sku` (product) |
| `name` | `title` |
| `description` | `description` |
| `status` `Active` / `Inactive` | `status` 1 / 2 (anything else fails the item, naming `status`) |
| `skus[]` (variants enabled) | `variants[]`, `is_simple: false`; each `skus[].code` a variant SKU |
| no `skus` (variants disabled) | one variant with the product's `code`, `is_simple: true` |
| `skus[].variantValues[]` (`variant.name`, `value`) | variant `options` (`name`, `value`) |
| `skus[].barcode` | variant `barcode` |
| `attributes[].attribute1..4` | product `attributes` `attribute1..4` |
| `brand.name`, `manufacturer.name`, `category.name`, `model`, `hsTariffCode`, `countryofOrigin` | product `attributes` `brand`, `manufacturer`, `category`, `model`, `hs_tariff_code`, `country_of_origin` |
| `customFields` (`{name: value}`) | product `attributes` (`name`, `value` as text) |
| `weight` + `weightUnitId` | variant `weight` + `weight_unit` (table below); a SKU's own values win |
| `length`, `height`, `width` + `lengthUnitId` | variant `depth`, `height`, `width` + `dimension_unit` |
| `images` (URLs), `skus[].images` | product `images`, variant `images` |
| `pricing.currency` or the account default | `currency` |
| `pricing.variants[sku].price/quantity` or the account default | variant `price` / `quantity` |
| `deleted: true` | a delete of the product |

ASSUMPTIONS (README): SAP Anywhere gives units as ids of its unit master data, which the
reference does not list; the tables below are the defaults of a new SAP Anywhere company.
M2E's dimension enum names volume units (MILLILITERS, CENTILITERS) where lengths are
meant (the reference's example gives headphones a height of 10.0 CENTILITERS); we map
millimetres and centimetres to them. Products with more than `max_variants` variants are
refused whole: listing a part of a product would be worse than listing none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.product_sync.models import Pricing, SapProduct, SapSku
from shared.m2e.models import ProductCreate

WEIGHT_UNITS = {1: "GRAMS", 2: "KILOGRAMS", 3: "OUNCES", 4: "POUNDS", 5: "TONNES"}
LENGTH_UNITS = {
    1: "MILLILITERS",
    2: "CENTILITERS",
    3: "DECIMETERS",
    4: "METERS",
    5: "INCHES",
    6: "FEET",
    7: "YARD",
}
STATUS = {"Active": 1, "Inactive": 2}
DEFAULT_MAX_VARIANTS = 250  # eBay's limit: the strictest of the channels M2E lists on


class MappingError(ValueError):
    """The product cannot be mapped; the message names the field."""


@dataclass(frozen=True, slots=True)
class AccountDefaults:
    currency: str | None = None
    price: float | None = None
    quantity: int | None = None


def _unit(table: dict[int, str], unit_id: int | None, field: str) -> str | None:
    if unit_id is None:
        return None
    if unit_id not in table:
        raise MappingError(f"{field}: unknown unit id {unit_id} (known: {sorted(table)})")
    return table[unit_id]


def _attributes(product: SapProduct) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for attrs in product.attributes:
        for name in ("attribute1", "attribute2", "attribute3", "attribute4"):
            value = getattr(attrs, name)
            if value:
                out.append({"name": name, "value": value})
    named = {
        "brand": product.brand.name if product.brand else None,
        "manufacturer": product.manufacturer.name if product.manufacturer else None,
        "category": product.category.name if product.category else None,
        "model": product.model,
        "hs_tariff_code": product.hs_tariff_code,
        "country_of_origin": product.country_of_origin,
    }
    out += [{"name": k, "value": v} for k, v in named.items() if v]
    for name, value in sorted(product.custom_fields.items()):
        if value is not None and value != "":
            out.append({"name": name, "value": value if isinstance(value, str) else str(value)})
    return out


def _price(sku: str, pricing: Pricing | None, defaults: AccountDefaults) -> tuple[float, int]:
    own = pricing.variants.get(sku) if pricing is not None else None
    price = own.price if own is not None and own.price is not None else defaults.price
    quantity = own.quantity if own is not None and own.quantity is not None else defaults.quantity
    if price is None:
        raise MappingError(
            f"price: no price for variant {sku!r} in pricing.variants and no account default"
        )
    if quantity is None:
        raise MappingError(
            f"quantity: no quantity for variant {sku!r} in pricing.variants and no account default"
        )
    return price, quantity


def _variant(
    product: SapProduct, sku: SapSku | None, pricing: Pricing | None, defaults: AccountDefaults
) -> dict[str, Any]:
    code = sku.code if sku is not None else product.code
    price, quantity = _price(code, pricing, defaults)

    def own(name: str) -> float | None:
        value: float | None = getattr(sku, name) if sku is not None else None
        if value is None:
            value = getattr(product, name)
        return value

    weight = own("weight")
    dims = {"depth": own("length"), "height": own("height"), "width": own("width")}
    variant: dict[str, Any] = {
        "sku": code,
        "barcode": sku.barcode if sku is not None else None,
        "price": price,
        "quantity": quantity,
        "weight": weight,
        "weight_unit": _unit(WEIGHT_UNITS, product.weight_unit_id, "weightUnitId")
        if weight is not None
        else None,
        **dims,
        "dimension_unit": _unit(LENGTH_UNITS, product.length_unit_id, "lengthUnitId")
        if any(v is not None for v in dims.values())
        else None,
    }
    if sku is not None:
        if sku.variant_values:
            variant["options"] = [
                {
                    "name": (vv.variant.name if vv.variant and vv.variant.name else "option"),
                    "value": vv.value,
                }
                for vv in sku.variant_values
            ]
        if sku.images:
            variant["images"] = sku.images
    return variant


def sap_to_m2e(
    product: SapProduct,
    pricing: Pricing | None,
    defaults: AccountDefaults,
    max_variants: int = DEFAULT_MAX_VARIANTS,
) -> dict[str, Any]:
    """The M2E create payload for a SAP Anywhere product (raises MappingError)."""
    status = STATUS.get(product.status or "Active")
    if status is None:
        raise MappingError(f"status: {product.status!r} is not Active or Inactive")
    currency = (
        pricing.currency if pricing is not None and pricing.currency else None
    ) or defaults.currency
    if currency is None:
        raise MappingError("currency: no pricing.currency and no account default")
    if len(product.skus) > max_variants:
        raise MappingError(
            f"skus: {len(product.skus)} variants; at most {max_variants} are listed per product"
        )
    skus: list[SapSku | None] = list(product.skus) if product.skus else [None]
    out: dict[str, Any] = {
        "sku": product.code,
        "status": status,
        "is_simple": not product.skus,
        "currency": currency,
        "title": product.name,
        "variants": [_variant(product, sku, pricing, defaults) for sku in skus],
    }
    if product.description:
        out["description"] = product.description
    if product.images:
        out["images"] = product.images
    attributes = _attributes(product)
    if attributes:
        out["attributes"] = attributes
    return out


def variants_problem(product: ProductCreate, max_variants: int) -> str | None:
    """Why M2E cannot take the product's variants as they are, or None."""
    if len(product.variants) > max_variants:
        return (
            f"variants: {len(product.variants)} variants; at most {max_variants} "
            "are listed per product"
        )
    if product.is_simple and len(product.variants) != 1:
        return "variants: a simple product has exactly one variant"
    seen: set[str] = set()
    for sku in (v.sku for v in product.variants):
        if sku in seen:
            return f"variants: the variant SKU {sku!r} appears twice"
        seen.add(sku)
    return None
