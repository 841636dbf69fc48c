"""product-sync: `product-upserts` → M2E catalog creates, updates and deletes.

Within a batch window the last event per SKU wins (older ones are `superseded`). A batch
is resolved with as few requests as possible:

1. deletes: one `DELETE /catalog/product/` (an unknown SKU counts as deleted: the
   desired state holds);
2. SKUs this process has not seen yet: one `POST /catalog/product/find/` per 500;
3. new SKUs: `POST /catalog/product/` (rejected items isolated, shared.isolate);
4. known SKUs: `PATCH /catalog/product/` with the product fields and
   `PATCH /catalog/product/variant/` with the variant fields — each only for what changed
   since this process last sent or saw it (content hashes), so an unchanged product
   costs no request.

ASSUMPTIONS (README): the API cannot add or remove variants of an existing product, so
an upsert whose variant SKUs differ from the catalog's fails with a reason; a product's
status is set on create only (the update schema has no status).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from services.product_sync.mapping import (
    DEFAULT_MAX_VARIANTS,
    AccountDefaults,
    MappingError,
    sap_to_m2e,
)
from services.product_sync.models import TOPIC, ProductEvent, SapProduct
from shared.coalescer import MergeRule, Payload, last_write_wins
from shared.m2e.client import M2EClient
from shared.m2e.models import MAX_BATCH_ITEMS, ProductCreate
from shared.results import ErrorInfo
from shared.service import (
    Decoded,
    Headers,
    InvalidMessage,
    ItemOutcome,
    Service,
    check_account,
    check_key,
    describe,
    send_isolating,
)

OPERATION = "product"
PRODUCT_FIELDS = ("currency", "title", "description", "images", "attributes")
VARIANT_FIELDS = ("barcode", "price", "quantity", "images", "options", "attributes")
KNOWN_CAP = 200_000  # SKUs remembered per process; past it the oldest are forgotten


def _hash(values: Mapping[str, Any], names: tuple[str, ...]) -> str:
    picked = {n: values.get(n) or None for n in names}  # absent, null and [] alike
    return hashlib.blake2b(json.dumps(picked, sort_keys=True).encode(), digest_size=12).hexdigest()


@dataclass(slots=True)
class Known:
    """What the catalog holds for a SKU, as far as this process knows."""

    product: str  # hash of the product fields
    variants: dict[str, str] = field(default_factory=dict)  # variant SKU → hash

    @classmethod
    def of(cls, product: Mapping[str, Any]) -> Known:
        return cls(
            _hash(product, PRODUCT_FIELDS),
            {v["sku"]: _hash(v, VARIANT_FIELDS) for v in product.get("variants", [])},
        )


def _failed(status: int | None, code: str, message: str) -> ItemOutcome:
    return ItemOutcome("failed", status, ErrorInfo(code=code, message=message))


class ProductSync(Service):
    name = "product-sync"
    input_topic = TOPIC
    key_field = "sku"
    merge_rules: Mapping[str, MergeRule] = {OPERATION: last_write_wins}

    def __init__(
        self,
        known_accounts: Set[str],
        defaults: Mapping[str, AccountDefaults] | None = None,
        max_variants: int = DEFAULT_MAX_VARIANTS,
    ) -> None:
        self._accounts = known_accounts
        self._defaults = dict(defaults or {})
        self._max_variants = max_variants
        self._known: dict[str, OrderedDict[str, Known]] = {}

    # ------------------------------------------------------------------ decode
    def decode(self, key: bytes | None, value: bytes | None, headers: Headers) -> Decoded:
        sku_key = key.decode("utf-8", "replace") if key is not None else None
        if value is None:
            account = next((v.decode() for k, v in headers if k == "account_token"), None)
            if account is None or sku_key is None:
                raise InvalidMessage(
                    "a tombstone needs the product SKU as key and an account_token header",
                    "EmptyValue",
                    account,
                    sku_key,
                )
            check_account(self._accounts, account, sku_key)
            return Decoded(account, OPERATION, sku_key, {"op": "delete", "sku": sku_key})
        try:
            event = ProductEvent.model_validate_json(value)
        except ValidationError as exc:
            raise InvalidMessage(describe(exc), "ValidationError", None, sku_key) from None
        account = str(event.account_token)
        if event.op == "delete":
            sku = event.sku or _product_sku(event.product)
            if not sku:
                raise InvalidMessage(
                    "a delete needs `sku` or a product with its SKU",
                    "ValidationError",
                    account,
                    sku_key,
                )
            return self._decoded(
                account, sku, sku_key, {"op": "delete", "sku": sku}, event.event_id
            )
        if event.product is None:
            raise InvalidMessage(
                "product: required for an upsert", "ValidationError", account, sku_key
            )
        product = self._to_m2e(event, account, sku_key)
        if product is None:  # SAP Anywhere marks it deleted
            sku = _product_sku(event.product) or ""
            return self._decoded(
                account, sku, sku_key, {"op": "delete", "sku": sku}, event.event_id
            )
        return self._decoded(
            account, product["sku"], sku_key, {"op": "upsert", "product": product}, event.event_id
        )

    def _decoded(
        self, account: str, sku: str, key: str | None, payload: Payload, event_id: str | None
    ) -> Decoded:
        check_account(self._accounts, account, sku)
        check_key(key, sku, "the product sku", account)
        return Decoded(account, OPERATION, sku, payload, event_id)

    def _to_m2e(self, event: ProductEvent, account: str, key: str | None) -> dict[str, Any] | None:
        raw = event.product or {}
        try:
            if event.source == "sap-anywhere":
                sap = SapProduct.model_validate(raw)
                if sap.deleted:
                    return None
                defaults = (
                    self._defaults.get(account) or self._defaults.get("*") or AccountDefaults()
                )
                raw = sap_to_m2e(sap, event.pricing, defaults, self._max_variants)
            product = ProductCreate.model_validate(raw)
        except ValidationError as exc:
            raise InvalidMessage(
                f"product: {describe(exc)}",
                "ValidationError",
                account,
                _product_sku(event.product) or key,
            ) from None
        except MappingError as exc:
            raise InvalidMessage(
                str(exc), "MappingError", account, _product_sku(event.product) or key
            ) from None
        if len(product.variants) > self._max_variants:
            raise InvalidMessage(
                f"variants: {len(product.variants)} variants; at most {self._max_variants} "
                "are listed per product",
                "ValidationError",
                account,
                product.sku,
            )
        if product.is_simple and len(product.variants) != 1:
            raise InvalidMessage(
                "variants: a simple product has exactly one variant",
                "ValidationError",
                account,
                product.sku,
            )
        seen: set[str] = set()
        for sku in (v.sku for v in product.variants):
            if sku in seen:
                raise InvalidMessage(
                    f"variants: the variant SKU {sku!r} appears twice",
                    "ValidationError",
                    account,
                    product.sku,
                )
            seen.add(sku)
        return product.model_dump(mode="json", exclude_unset=True)

    # ------------------------------------------------------------------ send
    def _cache(self, account: str) -> OrderedDict[str, Known]:
        cache = self._known.get(account)
        if cache is None:
            cache = self._known[account] = OrderedDict()
        while len(cache) > KNOWN_CAP:
            cache.popitem(last=False)
        return cache

    async def send(
        self, client: M2EClient, account_token: str, operation: str, payloads: list[Payload]
    ) -> list[ItemOutcome]:
        known = self._cache(account_token)
        outcomes: list[ItemOutcome | None] = [None] * len(payloads)

        deletes = [i for i, p in enumerate(payloads) if p["op"] == "delete"]
        if deletes:
            results = await send_isolating(
                [payloads[i]["sku"] for i in deletes],
                lambda skus: client.delete_products(account_token, skus),
            )
            for i, result in zip(deletes, results, strict=True):
                if result.status == "failed" and result.http_status != 404:
                    outcomes[i] = result
                    continue
                known.pop(payloads[i]["sku"], None)  # deleted, or already absent
                outcomes[i] = ItemOutcome("ok", 200, operation="delete")

        upserts = [i for i, p in enumerate(payloads) if p["op"] == "upsert"]
        unseen = [
            payloads[i]["product"]["sku"]
            for i in upserts
            if payloads[i]["product"]["sku"] not in known
        ]
        for start in range(0, len(unseen), MAX_BATCH_ITEMS):
            found = await client.find_products(
                account_token, unseen[start : start + MAX_BATCH_ITEMS]
            )
            for product in found.get("list", []):
                if product.get("sku"):
                    known[product["sku"]] = Known.of(product)

        creates = [i for i in upserts if payloads[i]["product"]["sku"] not in known]
        if creates:
            products = [payloads[i]["product"] for i in creates]
            results = await send_isolating(
                products, lambda items: client.create_products(account_token, items)
            )
            for i, product, result in zip(creates, products, results, strict=True):
                if result.status == "ok":
                    known[product["sku"]] = Known.of(product)
                outcomes[i] = ItemOutcome(result.status, result.http_status, result.error, "create")

        updates = [i for i in upserts if outcomes[i] is None]
        if updates:
            await self._update(client, account_token, known, payloads, updates, outcomes)
        return [o if o is not None else _failed(None, "internal", "no outcome") for o in outcomes]

    async def _update(
        self,
        client: M2EClient,
        account: str,
        known: OrderedDict[str, Known],
        payloads: list[Payload],
        updates: list[int],
        outcomes: list[ItemOutcome | None],
    ) -> None:
        product_patches: list[tuple[int, dict[str, Any]]] = []
        variant_patches: list[tuple[int, dict[str, Any]]] = []
        for i in updates:
            product = payloads[i]["product"]
            state = known[product["sku"]]
            wanted = Known.of(product)
            if set(wanted.variants) != set(state.variants):
                outcomes[i] = _failed(
                    None,
                    "variants_changed",
                    f"variants {sorted(set(wanted.variants) ^ set(state.variants))} differ from "
                    "the catalog's; M2E cannot add or remove variants of a product: delete and "
                    "re-create it",
                )
                continue
            if wanted.product != state.product:
                patch = {
                    "sku": product["sku"],
                    **{k: product[k] for k in PRODUCT_FIELDS if k in product},
                }
                product_patches.append((i, patch))
            for variant in product["variants"]:
                if wanted.variants[variant["sku"]] != state.variants[variant["sku"]]:
                    patch = {
                        k: variant[k]
                        for k in ("sku", *VARIANT_FIELDS)
                        if variant.get(k) is not None
                    }
                    variant_patches.append((i, patch))
        failed: dict[int, ItemOutcome] = {}
        for patches, call in (
            (product_patches, lambda items: client.update_products(account, items)),
            (variant_patches, lambda items: client.update_variants(account, items)),
        ):
            await self._send_patches(patches, call, failed)
        for i in updates:
            if outcomes[i] is not None:
                continue
            if i in failed:
                outcomes[i] = failed[i]
                continue
            product = payloads[i]["product"]
            known[product["sku"]] = Known.of(product)
            known.move_to_end(product["sku"])
            outcomes[i] = ItemOutcome("ok", 200, operation="update")

    @staticmethod
    async def _send_patches(
        patches: list[tuple[int, dict[str, Any]]],
        call: Callable[[list[dict[str, Any]]], Any],
        failed: dict[int, ItemOutcome],
    ) -> None:
        for start in range(0, len(patches), MAX_BATCH_ITEMS):
            chunk = patches[start : start + MAX_BATCH_ITEMS]
            results = await send_isolating([p for _, p in chunk], call)
            for (i, _), result in zip(chunk, results, strict=True):
                if result.status == "failed" and i not in failed:
                    failed[i] = ItemOutcome("failed", result.http_status, result.error, "update")


def _product_sku(product: dict[str, Any] | None) -> str | None:
    if not product:
        return None
    sku = product.get("sku") or product.get("code")
    return sku if isinstance(sku, str) and sku else None
