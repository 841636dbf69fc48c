"""`m2e-sync tick [--every SECONDS]`: publish poll ticks for the configured accounts.

For a Kubernetes CronJob (once) or a loop (`--every`). The accounts are `TICK_ACCOUNTS`
(`channel:account_token,…`) or, when empty, every account `GET /user/accounts/` lists for
the configured access tokens (asked once per start).
"""

from __future__ import annotations

import asyncio
import json

from aiokafka import AIOKafkaProducer

from services.order_poller.models import TOPIC
from services.order_poller.settings import OrderPollerSettings
from shared.bootstrap import build_client
from shared.budget import build_limiter
from shared.metrics import Metrics


async def accounts(settings: OrderPollerSettings) -> list[tuple[str, str]]:
    """(channel, account_token) pairs to tick."""
    if settings.tick_accounts.strip():
        pairs = []
        for item in settings.tick_accounts.split(","):
            channel, _, account = item.strip().partition(":")
            if not channel or not account:
                raise ValueError(f"TICK_ACCOUNTS: {item!r} is not channel:account_token")
            pairs.append((channel, account))
        return pairs
    credentials = settings.credentials()
    metrics = Metrics("tick")
    client = build_client(settings, credentials, build_limiter(settings, metrics), metrics)
    found: list[tuple[str, str]] = []
    try:
        by_token: dict[str, str] = {}
        for account, access in credentials.items():
            by_token.setdefault(access, account)  # one call per access token
        for account in by_token.values():
            response = await client.request(account, "GET", "/user/accounts/")
            found += [
                (a["channel"], a["token"]) for a in response.json() if a["token"] in credentials
            ]
    finally:
        await client.aclose()
    return sorted(set(found))


async def tick(settings: OrderPollerSettings, every: float | None, topic: str = TOPIC) -> int:
    pairs = await accounts(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", **settings.kafka_security()
    )
    await producer.start()
    try:
        while True:
            for channel, account in pairs:
                value = json.dumps({"account_token": account, "channel": channel}).encode()
                await producer.send_and_wait(topic, value, key=f"{channel}:{account}".encode())
            print(f"ticked {len(pairs)} accounts", flush=True)
            if every is None:
                return 0
            await asyncio.sleep(every)
    finally:
        await producer.stop()
