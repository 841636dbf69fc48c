"""variant-sync: `variant-updates` → batched `PATCH /catalog/product/variant/`.

Updates for one SKU within a batch window merge field by field (the later value of each
field wins), so price and stock changes reach M2E in full batches without losing any
field an earlier event set.

An update for a SKU M2E does not know (404) is not failed at once: its product may be on
its way through product-sync, published at the same moment. The core sends it again with
back-off, outside its batch, for `VARIANT_NOT_FOUND_RETRY_S`.

Each variant written is marked in the shared view of the catalog (shared.catalog), so that
product-sync re-sends it when the product is published again, even unchanged.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import replace

from pydantic import ValidationError

from services.variant_sync.models import EVENT_FIELDS, TOPIC, VariantUpdateEvent
from shared.catalog import STALE, CatalogView, MemoryView, stale
from shared.coalescer import AT, MergeRule, Payload, by_event_time, merge_fields
from shared.m2e.client import M2EClient
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

OPERATION = "variant.update"


def variant_payload(event: VariantUpdateEvent) -> Payload:
    """The M2E variant update: the fields the event set, and the event's time (`AT`, not
    sent). (Read off the validated model: a full dump per message costs more than the rest
    of decoding.)"""
    payload: Payload = {}
    if event.occurred_at is not None:
        payload[AT] = event.occurred_at.timestamp()
    values = event.__dict__
    for name in event.model_fields_set:
        if name in EVENT_FIELDS:
            continue
        value = values[name]
        if name in ("options", "attributes"):
            value = [item.model_dump() for item in value]
        payload[name] = value
    return payload


class VariantSync(Service):
    name = "variant-sync"
    budget_priority = 1
    input_topic = TOPIC
    key_field = "sku"
    merge_rules: Mapping[str, MergeRule] = {OPERATION: by_event_time(merge_fields)}

    def __init__(
        self,
        known_accounts: Container[str],
        not_found_retry_s: float = 0.0,
        view: CatalogView | None = None,
    ) -> None:
        self._accounts = known_accounts
        self._not_found_retry_s = not_found_retry_s
        self._view = view or MemoryView()

    def decode(self, key: bytes | None, value: bytes | None, headers: Headers) -> Decoded:
        if value is None:
            raise InvalidMessage("a variant update cannot be a tombstone", "EmptyValue")
        try:
            event = VariantUpdateEvent.model_validate_json(value)
        except ValidationError as exc:
            raise InvalidMessage(describe(exc), "ValidationError") from None
        account = str(event.account_token)
        check_account(self._accounts, account, event.sku)
        check_key(
            key.decode("utf-8", "replace") if key is not None else None,
            event.sku,
            "the variant sku",
            account,
        )
        payload = variant_payload(event)
        if len(payload) - (AT in payload) < 2:
            raise InvalidMessage(
                "nothing to update: give at least one of barcode, price, "
                "quantity, images, options, attributes",
                "ValidationError",
                account,
                event.sku,
            )
        return Decoded(account, OPERATION, event.sku, payload, event.event_id)

    async def send(
        self, client: M2EClient, account_token: str, operation: str, payloads: list[Payload]
    ) -> list[ItemOutcome]:
        catalog = client.catalog_of(account_token)
        older = await stale(
            self._view, catalog, "variant", [(p["sku"], p.get(AT)) for p in payloads]
        )
        sent = [i for i in range(len(payloads)) if i not in older]
        results = await send_isolating(
            [{k: v for k, v in payloads[i].items() if k != AT} for i in sent],
            lambda items: client.update_variants(account_token, items),
        )
        outcomes = [STALE] * len(payloads)
        for i, result in zip(sent, results, strict=True):
            outcomes[i] = result
        ok = [payloads[i] for i in sent if outcomes[i].status == "ok"]
        # product-sync must not take its own hashes of these variants as current any more.
        await self._view.written(catalog, [p["sku"] for p in ok])
        await self._view.advance(catalog, "variant", {p["sku"]: p[AT] for p in ok if AT in p})
        if not self._not_found_retry_s:
            return outcomes
        return [
            replace(o, retry_for_s=self._not_found_retry_s) if o.http_status == 404 else o
            for o in outcomes
        ]
