"""The M2E client against httpx.MockTransport: retries, 429 feedback, errors, secrets."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from shared.m2e.client import (
    BatchRejected,
    Credentials,
    M2EClient,
    RetryPolicy,
    TransientFailure,
    Unauthorized,
    UnknownAccount,
)
from tests.shared.fakes import FakeLimiter

SECRET = "super-secret-access-token"


def make(handler: Any, attempts: int = 3) -> tuple[M2EClient, FakeLimiter, list[float]]:
    limiter = FakeLimiter()
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    client = M2EClient(
        "http://m2e.test/api/v1/api",
        Credentials({"acct": SECRET}),
        limiter,
        retry=RetryPolicy(attempts=attempts, base_s=0.1, cap_s=1.0),
        transport=httpx.MockTransport(handler),
        sleep=sleep,
    )
    return client, limiter, sleeps


HEADERS = {
    "X-RateLimit-Limit": "100",
    "X-RateLimit-Remaining": "42",
    "X-RateLimit-Retry-After": "2027-01-15T08:00:11Z",
}


async def test_sends_access_token_and_feeds_rate_headers_back() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"updated": 2}, headers=HEADERS)

    client, limiter, _ = make(handler)
    assert await client.update_variants("acct", [{"sku": "a"}, {"sku": "b"}]) == 2
    assert seen[0].headers["access-token"] == SECRET
    assert seen[0].url.path == "/api/v1/api/catalog/product/variant/"
    assert json.loads(seen[0].content) == {"variants": [{"sku": "a"}, {"sku": "b"}]}
    assert limiter.taken == 1
    fb = limiter.feedback_seen[0]
    assert (fb.limit, fb.remaining, fb.throttled) == (100, 42, False)
    assert fb.retry_at == 1800000011.0


async def test_create_accepts_created_and_deleted() -> None:
    answers = iter([{"created": 3}, {"deleted": 4}])
    client, _, _ = make(lambda r: httpx.Response(200, json=next(answers)))
    assert await client.create_products("acct", [{}]) == 3
    assert await client.create_products("acct", [{}]) == 4


async def test_5xx_and_timeouts_are_retried_with_backoff_then_given_up() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ReadTimeout("slow", request=request)
        if len(calls) == 2:
            return httpx.Response(503, json=[{"code": 503, "message": "down"}])
        return httpx.Response(200, json={"updated": 1})

    client, limiter, sleeps = make(handler)
    assert await client.update_variants("acct", [{"sku": "a"}]) == 1
    assert len(calls) == 3 and limiter.taken == 3  # every attempt takes a token
    assert len(sleeps) == 2 and all(0 <= s <= 1.0 for s in sleeps)

    always = make(lambda r: httpx.Response(500, json=[{"message": "x"}]), attempts=3)[0]
    with pytest.raises(TransientFailure, match="after 3 attempts"):
        await always.update_variants("acct", [{"sku": "a"}])


async def test_429_waits_through_the_limiter_and_is_not_a_failure() -> None:
    answers = iter([429, 429, 429, 429, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        return httpx.Response(
            status,
            json={"updated": 1} if status == 200 else [{"message": "Too many requests."}],
            headers={**HEADERS, "X-RateLimit-Remaining": "0"},
        )

    client, limiter, sleeps = make(handler, attempts=2)
    assert await client.update_variants("acct", [{"sku": "a"}]) == 1
    assert sum(fb.throttled for fb in limiter.feedback_seen) == 4
    assert sleeps == []  # waiting is the limiter's job


async def test_401_and_rejections() -> None:
    client, _, _ = make(
        lambda r: httpx.Response(401, json=[{"code": 401, "message": "Unauthorized"}])
    )
    with pytest.raises(Unauthorized) as info:
        await client.update_variants("acct", [{"sku": "a"}])
    assert SECRET not in str(info.value)

    body = [
        {"code": None, "message": "All array items must match schema"},
        {"code": "validation_error", "message": "item 1: price: bad", "data": {"index": 1}},
    ]
    client, _, _ = make(lambda r: httpx.Response(400, json=body))
    with pytest.raises(BatchRejected) as rejected:
        await client.update_variants("acct", [{"sku": "a"}, {"sku": "b"}])
    assert rejected.value.status == 400
    assert rejected.value.item_errors(2)[1].message == "item 1: price: bad"
    assert rejected.value.item_errors(1) == {}  # index outside the sent batch


async def test_unknown_account_and_no_secret_in_repr() -> None:
    client, _, _ = make(lambda r: httpx.Response(200, json={}))
    with pytest.raises(UnknownAccount):
        await client.update_variants("nobody", [{"sku": "a"}])
    # One lookup, one behaviour: asking when it could send fails the same way (the budget
    # of an unknown account is never the account token's own).
    with pytest.raises(UnknownAccount):
        await client.take("nobody", "ticket")
    creds = Credentials({"acct": SECRET})
    assert SECRET not in repr(creds) and SECRET not in str(creds)


@pytest.mark.parametrize(
    "raw",
    [
        "2027-01-15T08:00:11Z",
        "2027-01-15T08:00:11z",  # lowercase z
        "2027-01-15T08:00:11",  # no offset: UTC, not the pod's local time
        "2027-01-15t08:00:11z",
        "2027-01-15T09:00:11+01:00",
    ],
)
def test_retry_after_is_read_as_utc_whatever_the_pods_timezone(
    raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from shared.m2e.client import parse_retry_at

    monkeypatch.setenv("TZ", "America/Los_Angeles")  # a pod west of UTC
    time.tzset()
    try:
        assert parse_retry_at(raw) == 1_800_000_011.0  # 2027-01-15T08:00:11Z
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert parse_retry_at("2.5", now=lambda: 100.0) == 102.5
    assert parse_retry_at("soon") is None


MISBEHAVING = [
    ("HTML 502 from a load balancer", 502, b"<html><body>Bad Gateway</body></html>", "text/html"),
    ("HTML 503", 503, b"<html>Service Unavailable</html>", "text/html"),
    ("a 200 that is not JSON", 200, b"<html>OK</html>", "text/html"),
    ("a 200 cut short", 200, b'{"updated": 4', "application/json"),
    ("a 200 of another shape", 200, b'["updated", 4]', "application/json"),
    ("a 200 with a count that is not one", 200, b'{"updated": "all"}', "application/json"),
]


@pytest.mark.parametrize(
    ("why", "status", "body", "kind"), MISBEHAVING, ids=[m[0] for m in MISBEHAVING]
)
async def test_a_misbehaving_gateway_is_a_transient_failure_never_an_ok(
    why: str, status: int, body: bytes, kind: str
) -> None:
    calls: list[int] = []
    seen: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status, content=body, headers={"content-type": kind})

    client, _, sleeps = make(handler, attempts=3)
    client._observer = lambda account, stats: seen.append(stats.status)
    with pytest.raises(TransientFailure):
        await client.update_variants("acct", [{"sku": "a"}])
    assert len(calls) == 3 and len(sleeps) == 2, why  # retried with back-off
    assert seen == ([status] * 3 if status >= 500 else ["malformed"] * 3)  # metrics say which


async def test_garbage_rate_limit_headers_are_ignored_not_fatal() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={"updated": 1},
            headers={
                "X-RateLimit-Limit": "lots",
                "X-RateLimit-Remaining": "-",
                "X-RateLimit-Retry-After": "tomorrow-ish",
            },
        )

    client, limiter, _ = make(handler)
    assert await client.update_variants("acct", [{"sku": "a"}]) == 1
    fb = limiter.feedback_seen[0]
    assert fb.limit is None and fb.remaining is None and fb.retry_at is None
