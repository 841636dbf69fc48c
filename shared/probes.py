"""The worker's HTTP endpoints beside /metrics: the probes Kubernetes asks, and the
per-account view operators ask (`m2e-sync status` gathers it)."""

from __future__ import annotations

import json
from typing import Any

from faststream.asgi import AsgiResponse, get

from shared.worker import Worker


def probes(worker: Worker) -> list[tuple[str, Any]]:
    @get(include_in_schema=False)
    async def healthz(scope: Any) -> AsgiResponse:
        if worker.alive:
            return AsgiResponse(b"ok", 200)
        why = worker.signals.fatal or "poll loop stalled"
        return AsgiResponse(why.encode(), 503)

    @get(include_in_schema=False)
    async def readyz(scope: Any) -> AsgiResponse:
        if worker.ready:
            return AsgiResponse(b"ready", 200)
        return AsgiResponse(b"not assigned", 503)

    @get(include_in_schema=False)
    async def accounts(scope: Any) -> AsgiResponse:
        body = json.dumps({"accounts": worker.accounts.rows()}).encode()
        return AsgiResponse(body, 200, headers={"content-type": "application/json"})

    return [("/healthz", healthz), ("/readyz", readyz), ("/accounts", accounts)]
