"""Poison isolation: one item that breaks the service's send never holds back its batch.

Anything but an M2E error (an encoding error, a value the API cannot take, a bug) splits
the batch until the items that raise stand alone; the rest goes on. Such an item is tried
again later (None), and after POISON_MAX_ATTEMPTS goes to the DLQ with the exception's
class and message. M2E errors propagate: they are about the account or the API, not the
items.
"""

from __future__ import annotations

import logging

from shared.coalescer import Pending
from shared.m2e.client import M2EClient, M2EError
from shared.results import ErrorInfo
from shared.service import PARTITIONS, Fatal, ItemOutcome
from shared.worker.context import Context

log = logging.getLogger("m2e_sync.worker")


async def send_isolating(
    ctx: Context, client: M2EClient, account: str, operation: str, batch: list[Pending]
) -> list[ItemOutcome | None]:
    """The service's send of `batch`, with poison isolated; one outcome per item."""
    PARTITIONS.set([p.sources[0].partition for p in batch])
    try:
        outcomes = await ctx.service.send(client, account, operation, [p.payload for p in batch])
        if len(outcomes) != len(batch):
            raise RuntimeError(
                f"{ctx.service.name}.send returned {len(outcomes)} outcomes for {len(batch)} items"
            )
        return list(outcomes)
    except (M2EError, Fatal):
        raise
    except Exception as exc:
        if len(batch) > 1:
            mid = len(batch) // 2
            left = await send_isolating(ctx, client, account, operation, batch[:mid])
            return left + await send_isolating(ctx, client, account, operation, batch[mid:])
        [pending] = batch
        log.warning(
            "item %r of account %s raised %s (attempt %d)",
            pending.key[:100],
            account,
            type(exc).__name__,
            pending.attempts,
        )
        if pending.attempts < ctx.settings.poison_max_attempts:
            return [None]
        error = ErrorInfo(code=type(exc).__name__, message=str(exc) or type(exc).__name__)
        return [ItemOutcome("failed", None, error, dead_letter=True)]
