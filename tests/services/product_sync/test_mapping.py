"""SAP Anywhere → M2E on realistic payloads (shapes from the SAP Anywhere Products API)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.product_sync.mapping import AccountDefaults, MappingError, sap_to_m2e
from services.product_sync.models import Pricing, SapProduct
from shared.m2e.models import ProductCreate

# A T-shirt with variants enabled, as SAP Anywhere's GET /Products/{id}?expand=* returns it
# (fields we do not map — tax class, UoMs, vendor, stamp — included on purpose).
TSHIRT: dict[str, Any] = {
    "id": 1001, "code": "TSHIRT-ORG", "name": "Organic Cotton T-Shirt", "status": "Active",
    "description": "Soft organic cotton, regular fit.",
    "category": {"id": 12, "name": "Apparel"}, "batchSerial": "None",
    "productTaxClass": {"id": 1, "description": "Standard"},
    "weight": 0.2, "length": 30, "height": 2, "width": 25, "weightUnitId": 2, "lengthUnitId": 2,
    "hsTariffCode": "6109100010", "countryofOrigin": "PT",
    "brand": {"id": 3, "name": "GreenWear"}, "manufacturer": {"id": 8, "name": "Textil Norte Lda"},
    "variantEnabled": True, "inventoryEnabled": True,
    "salesUom": {"id": 1, "name": "Each"}, "vendor": {"id": 5, "name": "Textil Norte"},
    "skus": [
        {"id": 5001, "code": "TSHIRT-ORG-S-BLK", "name": "S / Black", "barcode": "5601234000017",
         "variantValues": [{"value": "S", "code": "S", "variant": {"id": 1, "name": "Size"}},
                           {"value": "Black", "code": "BLK", "variant": {"id": 2, "name": "Colour"}}]},
        {"id": 5002, "code": "TSHIRT-ORG-M-BLK", "name": "M / Black", "barcode": "5601234000024",
         "weight": 0.22,
         "variantValues": [{"value": "M", "code": "M", "variant": {"id": 1, "name": "Size"}},
                           {"value": "Black", "code": "BLK", "variant": {"id": 2, "name": "Colour"}}]},
    ],
    "attributes": [{"id": 77, "attribute1": "organic", "attribute2": "", "attribute3": None,
                    "attribute4": "regular-fit"}],
    "customFields": {"care": "30°C wash", "season": "SS27", "recycled_pct": 40, "empty": ""},
    "images": ["https://cdn.example.com/tshirt-org.jpg"],
    "creationTime": "2026-01-12T09:30:00Z", "updateTime": "2026-11-20T14:02:11Z", "deleted": False,
}  # fmt: skip
PRICING = Pricing.model_validate({"currency": "EUR", "variants": {
    "TSHIRT-ORG-S-BLK": {"price": 19.9, "quantity": 40}, "TSHIRT-ORG-M-BLK": {"price": 19.9, "quantity": 0}}})  # fmt: skip


def test_variants_enabled_map_to_a_configurable_product() -> None:
    m2e = sap_to_m2e(SapProduct.model_validate(TSHIRT), PRICING, AccountDefaults())
    ProductCreate.model_validate(m2e)  # valid for the API as it stands
    assert (m2e["sku"], m2e["title"], m2e["status"], m2e["is_simple"], m2e["currency"]) == (
        "TSHIRT-ORG", "Organic Cotton T-Shirt", 1, False, "EUR")  # fmt: skip
    small, medium = m2e["variants"]
    assert small == {
        "sku": "TSHIRT-ORG-S-BLK", "barcode": "5601234000017", "price": 19.9, "quantity": 40,
        "weight": 0.2, "weight_unit": "KILOGRAMS", "depth": 30, "height": 2, "width": 25,
        "dimension_unit": "CENTILITERS",
        "options": [{"name": "Size", "value": "S"}, {"name": "Colour", "value": "Black"}],
    }  # fmt: skip
    assert medium["weight"] == 0.22 and medium["quantity"] == 0  # the SKU's own weight wins
    assert m2e["attributes"] == [
        {"name": "attribute1", "value": "organic"}, {"name": "attribute4", "value": "regular-fit"},
        {"name": "brand", "value": "GreenWear"}, {"name": "manufacturer", "value": "Textil Norte Lda"},
        {"name": "category", "value": "Apparel"}, {"name": "hs_tariff_code", "value": "6109100010"},
        {"name": "country_of_origin", "value": "PT"}, {"name": "care", "value": "30°C wash"},
        {"name": "recycled_pct", "value": "40"}, {"name": "season", "value": "SS27"},
    ]  # fmt: skip
    assert m2e["images"] == ["https://cdn.example.com/tshirt-org.jpg"]
    assert m2e["description"] == "Soft organic cotton, regular fit."


def test_variants_disabled_is_one_variant_with_the_product_code() -> None:
    mug = {"code": "MUG-01", "name": "Enamel Mug", "status": "Inactive", "variantEnabled": False,
           "weight": 350, "weightUnitId": 1}  # fmt: skip
    m2e = sap_to_m2e(SapProduct.model_validate(mug), None, AccountDefaults("GBP", 12.5, 7))
    assert m2e["is_simple"] is True and m2e["status"] == 2 and m2e["currency"] == "GBP"
    assert m2e["variants"] == [{"sku": "MUG-01", "barcode": None, "price": 12.5, "quantity": 7, "weight": 350,
                                "weight_unit": "GRAMS", "depth": None, "height": None, "width": None,
                                "dimension_unit": None}]  # fmt: skip
    ProductCreate.model_validate(m2e)


def test_pricing_wins_over_account_defaults_per_variant() -> None:
    pricing = Pricing.model_validate({"variants": {"TSHIRT-ORG-S-BLK": {"price": 25.0}}})
    m2e = sap_to_m2e(SapProduct.model_validate(TSHIRT), pricing, AccountDefaults("USD", 9.99, 3))
    assert [(v["price"], v["quantity"]) for v in m2e["variants"]] == [(25.0, 3), (9.99, 3)]
    assert m2e["currency"] == "USD"


@pytest.mark.parametrize(
    ("change", "pricing", "defaults", "field"),
    [
        ({}, None, AccountDefaults(currency="EUR"), "price"),
        ({}, None, AccountDefaults(currency="EUR", price=1.0), "quantity"),
        ({}, None, AccountDefaults(price=1.0, quantity=1), "currency"),
        ({"status": "Discontinued"}, PRICING, AccountDefaults(), "status"),
        ({"weightUnitId": 42}, PRICING, AccountDefaults(), "weightUnitId"),
        ({"lengthUnitId": 99}, PRICING, AccountDefaults(), "lengthUnitId"),
    ],
)
def test_what_cannot_be_mapped_fails_naming_the_field(change: dict[str, Any], pricing: Pricing | None,
                                                      defaults: AccountDefaults, field: str) -> None:  # fmt: skip
    product = {**copy.deepcopy(TSHIRT), **change}
    with pytest.raises(MappingError, match=f"^{field}:"):
        sap_to_m2e(SapProduct.model_validate(product), pricing, defaults)


def test_more_variants_than_listed_per_product_is_refused_whole() -> None:
    product = copy.deepcopy(TSHIRT)
    product["skus"] = [{"code": f"V-{i}"} for i in range(251)]
    with pytest.raises(MappingError, match="skus: 251 variants; at most 250"):
        sap_to_m2e(SapProduct.model_validate(product), None, AccountDefaults("EUR", 1, 1))
    product["skus"] = product["skus"][:250]
    assert (
        len(
            sap_to_m2e(SapProduct.model_validate(product), None, AccountDefaults("EUR", 1, 1))[
                "variants"
            ]
        )
        == 250
    )
