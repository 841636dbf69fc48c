"""The rate budget a worker's settings ask for, and the Redis connection it shares.

`build_limiter` picks the limiter (shared.limiter, shared.redis_limiter): none when
`RATE_LIMIT_ENABLED=false`, in-process without `REDIS_URL`, otherwise the window-aware
budget in Redis with an in-process fallback while Redis does not answer.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.config import WorkerSettings
from shared.limiter import FailoverLimiter, Limiter, LocalLimiter, RatePolicy, UnlimitedLimiter
from shared.metrics import Metrics
from shared.redis_limiter import Learned, RedisLimiter

log = logging.getLogger("m2e_sync.budget")


def redis_client(settings: WorkerSettings, timeout_s: float) -> Any:
    """A client of `REDIS_URL` (None without one). A Redis that stops answering fails a call
    within `timeout_s`, never the worker."""
    if settings.redis_url is None:
        return None
    from redis.asyncio import Redis

    return Redis.from_url(
        settings.redis_url,
        password=settings.redis_password.get_secret_value() if settings.redis_password else None,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )


def build_limiter(settings: WorkerSettings, metrics: Metrics, priority: int = 1) -> Limiter:
    """`priority`: the service's default claim on a shared token (RATE_LIMIT_PRIORITY wins)."""
    if not settings.rate_limit_enabled:
        return UnlimitedLimiter()
    policy = RatePolicy(
        settings.rate_limit_requests,
        settings.rate_limit_period_s,
        settings.rate_limit_safety,
        jitter_s=settings.rate_limit_jitter_ms / 1000,
        priority=settings.rate_limit_priority or priority,
        min_share=settings.rate_limit_min_share,
    )
    redis = redis_client(settings, timeout_s=1.0)
    if redis is None:
        return LocalLimiter(policy)
    degraded = metrics.limiter_degraded.labels(metrics.service)

    def on_learned(bucket: str, learned: Learned) -> None:
        log.info(
            "rate budget of bucket %s learned from the server: %d requests per %.1f s",
            bucket,
            learned.limit,
            learned.period_s,
        )
        metrics.learned_budget(bucket, learned.limit, learned.period_s)

    return FailoverLimiter(
        RedisLimiter(
            redis,
            policy,
            prefix=settings.rate_limit_redis_prefix,
            inflight_ttl_s=2 * settings.m2e_timeout_s,  # a request out longer has died
            on_learned=on_learned,
        ),
        LocalLimiter(policy, share=1 / settings.expected_replicas),
        on_change=lambda is_degraded: degraded.set(int(is_degraded)),
    )
