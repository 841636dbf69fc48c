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

from collections.abc import Container, Mapping
from typing import Any

from pydantic import ValidationError

from services.product_sync.known import KNOWN_CAP, Known
from services.product_sync.mapping import (
    DEFAULT_MAX_VARIANTS,
    AccountDefaults,
    MappingError,
    sap_to_m2e,
    variants_problem,
)
from services.product_sync.models import TOPIC, ProductEvent, SapProduct
from services.product_sync.patches import failed, update
from shared.catalog import STALE, CatalogView, MemoryView, stale
from shared.coalescer import AT, MergeRule, Payload, by_event_time, last_write_wins
from shared.m2e.client import M2EClient
from shared.m2e.models import MAX_BATCH_ITEMS, ProductCreate
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


class ProductSync(Service):
    name = "product-sync"
    budget_priority = 4
    input_topic = TOPIC
    key_field = "sku"
    merge_rules: Mapping[str, MergeRule] = {OPERATION: by_event_time(last_write_wins)}

    def __init__(
        self,
        known_accounts: Container[str],
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
            return self._decoded(account, sku, sku_key, {"op": "delete", "sku": sku}, event)
        if event.product is None:
            raise InvalidMessage(
                "product: required for an upsert", "ValidationError", account, sku_key
            )
        product = self._to_m2e(event, account, sku_key)
        if product is None:  # SAP Anywhere marks it deleted
            sku = _product_sku(event.product) or ""
            return self._decoded(account, sku, sku_key, {"op": "delete", "sku": sku}, event)
        return self._decoded(
            account, product["sku"], sku_key, {"op": "upsert", "product": product}, event
        )

    def _decoded(
        self, account: str, sku: str, key: str | None, payload: Payload, event: ProductEvent
    ) -> Decoded:
        check_account(self._accounts, account, sku)
        check_key(key, sku, "the product sku", account)
        if event.occurred_at is not None:
            payload[AT] = event.occurred_at.timestamp()
        return Decoded(account, OPERATION, sku, payload, event.event_id)

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
        skus = [p["sku"] if p["op"] == "delete" else p["product"]["sku"] for p in payloads]
        at = [p.get(AT) for p in payloads]
        for i in await stale(self.view, catalog, "product", list(zip(skus, at, strict=True))):
            outcomes[i] = STALE  # a later event of this product was written already

        deletes = [i for i, p in enumerate(payloads) if p["op"] == "delete" and not outcomes[i]]
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

        upserts = [i for i, p in enumerate(payloads) if p["op"] == "upsert" and not outcomes[i]]
        wanted = [skus[i] for i in upserts]
        known = {s: Known.from_entry(e) for s, e in (await self.view.get(catalog, wanted)).items()}
        await self._find(
            client, account_token, catalog, [s for s in wanted if s not in known], known
        )
        newer = await self._newer_variants(catalog, payloads, upserts)

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
            missing = await update(
                client, account_token, known, payloads, updates, outcomes, written, newer
            )
            if missing:  # deleted by another writer: the upsert creates it again
                await self.view.forget(catalog, [payloads[i]["product"]["sku"] for i in missing])
                await self._create(
                    client, account_token, catalog, payloads, missing, outcomes, written
                )
        await self.view.put(catalog, {sku: k.entry() for sku, k in written.items()})
        done = [i for i, o in enumerate(outcomes) if o is not None and o.status == "ok"]
        await self.view.advance(
            catalog, "product", {skus[i]: t for i in done if (t := at[i]) is not None}
        )
        variants = {
            v["sku"]: t
            for i in done
            if (t := at[i]) is not None and payloads[i]["op"] == "upsert"
            for v in payloads[i]["product"]["variants"]
            if v["sku"] not in newer
        }
        await self.view.advance(catalog, "variant", variants)
        return [o if o is not None else failed(None, "internal", "no outcome") for o in outcomes]

    async def _newer_variants(
        self, catalog: str, payloads: list[Payload], upserts: list[int]
    ) -> set[str]:
        """Variants a later event (variant-sync's) wrote already: this upsert leaves them."""
        pairs = [
            (v["sku"], t)
            for i in upserts
            if (t := payloads[i].get(AT)) is not None
            for v in payloads[i]["product"]["variants"]
        ]
        return {pairs[i][0] for i in await stale(self.view, catalog, "variant", pairs)}

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


def _product_sku(product: dict[str, Any] | None) -> str | None:
    if not product:
        return None
    sku = product.get("sku") or product.get("code")
    return sku if isinstance(sku, str) and sku else None
