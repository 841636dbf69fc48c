"""product-sync: `product-upserts` → M2E catalog creates, updates and deletes.

Within a batch window the last event per SKU wins (older ones are `superseded`). A batch
is resolved with as few requests as possible:

1. deletes: one `DELETE /catalog/product/` (an unknown SKU counts as deleted: the
   desired state holds);
2. SKUs the shared view of the catalog (shared.catalog) does not know: one
   `POST /catalog/product/find/` per 500;
3. new SKUs: `POST /catalog/product/` (rejected items isolated, shared.isolate); one that
   another writer created meanwhile (`conflict`) is found and updated instead;
4. known SKUs: `PATCH /catalog/product/` with the product fields and
   `PATCH /catalog/product/variant/` with the variant fields — each only for what changed
   since any writer last wrote or saw it (content hashes; a variant variant-sync wrote
   since counts as changed), so an unchanged product costs no request. A product deleted
   meanwhile (404) is created again.

ASSUMPTIONS (README): the API cannot add or remove variants of an existing product, so
an upsert whose variant SKUs differ from the catalog's fails with a reason; a product's
status is set on create only (the update schema has no status).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from typing import Any

from pydantic import ValidationError

from services.product_sync.known import KNOWN_CAP, PRODUCT_FIELDS, VARIANT_FIELDS, Known
from services.product_sync.mapping import (
    DEFAULT_MAX_VARIANTS,
    AccountDefaults,
    MappingError,
    sap_to_m2e,
    variants_problem,
)
from services.product_sync.models import TOPIC, ProductEvent, SapProduct
from shared.catalog import CatalogView, MemoryView
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
        view: CatalogView | None = None,
    ) -> None:
        self._accounts = known_accounts
        self._defaults = dict(defaults or {})
        self._max_variants = max_variants
        self.view: CatalogView = view or MemoryView(KNOWN_CAP)

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
        problem = variants_problem(product, self._max_variants)
        if problem is not None:
            raise InvalidMessage(problem, "ValidationError", account, product.sku)
        return product.model_dump(mode="json", exclude_unset=True)

    # ------------------------------------------------------------------ send
    async def send(
        self, client: M2EClient, account_token: str, operation: str, payloads: list[Payload]
    ) -> list[ItemOutcome]:
        catalog = client.catalog_of(account_token)
        outcomes: list[ItemOutcome | None] = [None] * len(payloads)

        deletes = [i for i, p in enumerate(payloads) if p["op"] == "delete"]
        if deletes:
            results = await send_isolating(
                [payloads[i]["sku"] for i in deletes],
                lambda skus: client.delete_products(account_token, skus),
            )
            gone = []
            for i, result in zip(deletes, results, strict=True):
                if result.status == "failed" and result.http_status != 404:
                    outcomes[i] = result
                    continue
                gone.append(payloads[i]["sku"])  # deleted, or already absent
                outcomes[i] = ItemOutcome("ok", 200, operation="delete")
            await self.view.forget(catalog, gone)

        upserts = [i for i, p in enumerate(payloads) if p["op"] == "upsert"]
        skus = [payloads[i]["product"]["sku"] for i in upserts]
        known = {s: Known.from_entry(e) for s, e in (await self.view.get(catalog, skus)).items()}
        await self._find(client, account_token, catalog, [s for s in skus if s not in known], known)

        creates = [i for i in upserts if payloads[i]["product"]["sku"] not in known]
        written: dict[str, Known] = {}
        conflicts = await self._create(
            client, account_token, catalog, payloads, creates, outcomes, written
        )
        if conflicts:  # created by another writer since we looked: update it instead
            await self._find(client, account_token, catalog, conflicts, known)
            for i in creates:
                if payloads[i]["product"]["sku"] in known:
                    outcomes[i] = None

        updates = [i for i in upserts if outcomes[i] is None]
        if updates:
            missing = await self._update(
                client, account_token, known, payloads, updates, outcomes, written
            )
            if missing:  # deleted by another writer: the upsert creates it again
                await self.view.forget(catalog, [payloads[i]["product"]["sku"] for i in missing])
                await self._create(
                    client, account_token, catalog, payloads, missing, outcomes, written
                )
        await self.view.put(catalog, {sku: k.entry() for sku, k in written.items()})
        return [o if o is not None else _failed(None, "internal", "no outcome") for o in outcomes]

    async def _find(
        self,
        client: M2EClient,
        account: str,
        catalog: str,
        skus: list[str],
        known: dict[str, Known],
    ) -> None:
        """Ask M2E, the truth, about SKUs the view does not know."""
        for start in range(0, len(skus), MAX_BATCH_ITEMS):
            found = await client.find_products(account, skus[start : start + MAX_BATCH_ITEMS])
            products = [p for p in found.get("list", []) if p.get("sku")]
            variants = [v["sku"] for p in products for v in p.get("variants", []) if v.get("sku")]
            marks = await self.view.marks(catalog, variants)
            for product in products:
                known[product["sku"]] = Known.of(product, marks)

    async def _create(
        self,
        client: M2EClient,
        account: str,
        catalog: str,
        payloads: list[Payload],
        creates: list[int],
        outcomes: list[ItemOutcome | None],
        written: dict[str, Known],
    ) -> list[str]:
        """Create the products; returns the SKUs answered `conflict` (they exist now)."""
        if not creates:
            return []
        products = [payloads[i]["product"] for i in creates]
        variants = [v["sku"] for p in products for v in p.get("variants", [])]
        marks = await self.view.marks(catalog, variants)
        results = await send_isolating(
            products, lambda items: client.create_products(account, items)
        )
        conflicts = []
        for i, product, result in zip(creates, products, results, strict=True):
            if result.status == "ok":
                written[product["sku"]] = Known.of(product, marks)
            elif result.error is not None and result.error.code == "conflict":
                conflicts.append(product["sku"])
            outcomes[i] = ItemOutcome(result.status, result.http_status, result.error, "create")
        return conflicts

    async def _update(
        self,
        client: M2EClient,
        account: str,
        known: dict[str, Known],
        payloads: list[Payload],
        updates: list[int],
        outcomes: list[ItemOutcome | None],
        written: dict[str, Known],
    ) -> list[int]:
        """Patch what changed; returns the upserts whose product M2E no longer holds (404)."""
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
        missing = []
        for i in updates:
            if outcomes[i] is not None:
                continue
            if i in failed:
                if failed[i].http_status == 404:
                    missing.append(i)
                else:
                    outcomes[i] = failed[i]
                continue
            product = payloads[i]["product"]
            written[product["sku"]] = Known.of(product, known[product["sku"]].marks)
            outcomes[i] = ItemOutcome("ok", 200, operation="update")
        return missing

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
