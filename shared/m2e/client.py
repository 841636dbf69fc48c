"""The M2E Sales Channels API v4 client: one place for auth, rate limits and retries.

    client = M2EClient(base_url, credentials, limiter, retry=RetryPolicy())
    await client.update_variants(account_token, [{"sku": "A-1", "price": 9.5}])

The client is the one owner of the rate budget: it resolves an account token to its
access token once (`Credentials.lookup`: an unknown account raises `UnknownAccount`,
the same everywhere), and every call takes a token from that access token's limiter
bucket first, sends the access token, and feeds the rate-limit headers back to the
limiter. The scheduler asks it, not the limiter, when an account could send
(`ready_in`). Exceptions:

    M2EError
     ├── UnknownAccount      no access token is configured for the account token
     ├── Unauthorized        401: stop calling for this account
     ├── BatchRejected       400/404 naming items: isolate them (shared.isolate)
     └── TransientFailure    5xx, timeouts, connection errors or 429s past the retry
                             budget: keep the items, back off, try again later

Access tokens never appear in an exception, a log line or a metric.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from shared.limiter import PUBLIC_BUCKET_KEY, Limiter, RateFeedback, bucket_id
from shared.m2e.models import ApiError, CreateResponse, OrdersFindResponse

PRODUCTION_BASE_URL = "https://m2e.cloud/api/v1/api"


class M2EError(Exception):
    """Base of the client's errors."""


class UnknownAccount(M2EError):
    def __init__(self, account_token: str) -> None:
        super().__init__(f"no access token configured for account {account_token}")
        self.account_token = account_token


class Unauthorized(M2EError):
    def __init__(self, account_token: str) -> None:
        super().__init__(f"M2E answered 401 Unauthorized for account {account_token}")
        self.account_token = account_token


class BatchRejected(M2EError):
    """The API refused the request (400 or 404) and said why."""

    def __init__(self, status: int, errors: list[ApiError]) -> None:
        text = "; ".join(e.message for e in errors[:3]) or f"HTTP {status}"
        super().__init__(f"M2E rejected the request ({status}): {text}")
        self.status = status
        self.errors = errors

    def item_errors(self, size: int) -> dict[int, ApiError]:
        """Errors that name an item of the request by index (`data.index`)."""
        named: dict[int, ApiError] = {}
        for error in self.errors:
            index = error.data.get("index") if isinstance(error.data, dict) else None
            if isinstance(index, int) and 0 <= index < size and index not in named:
                named[index] = error
        return named


class TransientFailure(M2EError):
    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(f"{reason} (after {attempts} attempts)")
        self.reason = reason
        self.attempts = attempts


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter for 5xx, timeouts and resets."""

    attempts: int = 5
    base_s: float = 0.2
    cap_s: float = 10.0
    max_throttled: int = 50  # 429s waited out per call before giving the batch back

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        return float(rng() * min(self.cap_s, self.base_s * 2.0 ** (attempt - 1)))


class Credentials(Mapping[str, str]):
    """account token → access token. Values are secrets: never printed."""

    def __init__(self, tokens: Mapping[str, str], bucket_key: bytes = PUBLIC_BUCKET_KEY) -> None:
        self._tokens = dict(tokens)
        self._buckets = {
            access: bucket_id(access, bucket_key) for access in set(self._tokens.values())
        }

    def lookup(self, account_token: str) -> tuple[str, str]:
        """(access token, limiter bucket) of an account; UnknownAccount when none is set."""
        try:
            access = self._tokens[account_token]
        except KeyError:
            raise UnknownAccount(account_token) from None
        return access, self._buckets[access]

    def __getitem__(self, account_token: str) -> str:
        return self._tokens[account_token]

    def __iter__(self) -> Any:
        return iter(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def __repr__(self) -> str:
        return f"Credentials({len(self._tokens)} accounts)"

    def secrets(self) -> set[str]:
        return set(self._tokens.values())


@dataclass(frozen=True, slots=True)
class CallStats:
    """What one call cost: for metrics, results and logs."""

    endpoint: str
    status: int
    seconds: float
    limiter_wait_s: float


Observer = Callable[[str, CallStats], None]  # (account_token, stats)


def parse_feedback(response: httpx.Response) -> RateFeedback:
    def number(name: str) -> int | None:
        value = response.headers.get(name)
        try:
            return int(float(value)) if value is not None else None
        except ValueError:
            return None

    raw = response.headers.get("X-RateLimit-Retry-After")
    return RateFeedback(
        limit=number("X-RateLimit-Limit"),
        remaining=number("X-RateLimit-Remaining"),
        retry_at=parse_retry_at(raw) if raw else None,
        throttled=response.status_code == 429,
    )


def parse_retry_at(raw: str, now: Callable[[], float] = time.time) -> float | None:
    """`X-RateLimit-Retry-After` as epoch seconds: an RFC 3339 date (a `z` in either case;
    without an offset it is UTC, never the pod's local time), or seconds from now."""
    try:
        moment = datetime.fromisoformat(raw.strip().upper().replace("Z", "+00:00"))
    except ValueError:
        try:  # some servers send seconds instead of a date
            return now() + float(raw)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _errors(response: httpx.Response) -> list[ApiError]:
    try:
        body = response.json()
    except ValueError:
        return [ApiError(code=response.status_code, message=response.text[:500] or "no body")]
    items = body if isinstance(body, list) else [body]
    errors = []
    for item in items:
        try:
            errors.append(ApiError.model_validate(item))
        except ValueError:
            errors.append(ApiError(code=response.status_code, message=str(item)[:500]))
    return errors


class M2EClient:
    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        limiter: Limiter,
        *,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: Observer | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._credentials = credentials
        self._limiter = limiter
        self._retry = retry or RetryPolicy()
        self._observer = observer
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout or httpx.Timeout(30.0, connect=5.0),
            transport=transport,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            headers={"user-agent": "m2e-sync"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def ready_in(self, account_token: str) -> float:
        """Seconds until the account's budget allows a request (0.0: now); takes nothing."""
        _access, bucket = self._credentials.lookup(account_token)
        return await self._limiter.ready_in(bucket)

    async def request(
        self,
        account_token: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One API call with the rate limit and the retry policy applied."""
        access_token, bucket = self._credentials.lookup(account_token)
        endpoint = f"{method} {path}"
        failures = throttled = 0
        while True:
            waited = await self._limiter.acquire(bucket)
            started = time.monotonic()
            try:
                response = await self._http.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    headers={"access-token": access_token},
                )
            except httpx.TransportError as exc:  # timeouts, resets, refused connections
                reason = f"{type(exc).__name__} on {endpoint}"
                self._observe(account_token, endpoint, 0, started, waited)
                failures += 1
                if failures >= self._retry.attempts:
                    raise TransientFailure(reason, failures) from None
                await self._sleep(self._retry.delay(failures))
                continue
            self._observe(account_token, endpoint, response.status_code, started, waited)
            await self._limiter.feedback(bucket, parse_feedback(response))
            status = response.status_code
            if status == 429:  # a shared pause is in the limiter now; not a failure
                throttled += 1
                if throttled > self._retry.max_throttled:
                    raise TransientFailure(f"429 on {endpoint}", failures + throttled)
                continue
            if status >= 500:
                failures += 1
                if failures >= self._retry.attempts:
                    raise TransientFailure(f"HTTP {status} on {endpoint}", failures)
                await self._sleep(self._retry.delay(failures))
                continue
            if status == 401:
                raise Unauthorized(account_token)
            if status in (400, 404, 409, 413, 422):
                raise BatchRejected(status, _errors(response))
            if status >= 300:
                raise TransientFailure(f"HTTP {status} on {endpoint}", failures + 1)
            return response

    def _observe(
        self, account: str, endpoint: str, status: int, started: float, waited: float
    ) -> None:
        if self._observer is not None:
            stats = CallStats(endpoint, status, time.monotonic() - started, waited)
            self._observer(account, stats)

    # ------------------------------------------------------------------ endpoints
    async def create_products(self, account_token: str, products: list[dict[str, Any]]) -> int:
        resp = await self.request(account_token, "POST", "/catalog/product/", json=products)
        return CreateResponse.model_validate(resp.json()).count

    async def update_products(self, account_token: str, products: list[dict[str, Any]]) -> int:
        resp = await self.request(
            account_token, "PATCH", "/catalog/product/", json={"products": products}
        )
        return int(resp.json().get("updated", len(products)))

    async def delete_products(self, account_token: str, skus: list[str]) -> int:
        resp = await self.request(
            account_token, "DELETE", "/catalog/product/", json=[{"sku": s} for s in skus]
        )
        return int(resp.json().get("deleted", len(skus)))

    async def update_variants(self, account_token: str, variants: list[dict[str, Any]]) -> int:
        resp = await self.request(
            account_token, "PATCH", "/catalog/product/variant/", json={"variants": variants}
        )
        return int(resp.json().get("updated", len(variants)))

    async def find_products(
        self, account_token: str, skus: list[str], *, offset: int = 0, limit: int = 500
    ) -> dict[str, Any]:
        body = {"filters": {"sku": skus}, "_result": {"offset": offset, "limit": limit}}
        resp = await self.request(account_token, "POST", "/catalog/product/find/", json=body)
        result: dict[str, Any] = resp.json()
        return result

    async def find_orders(
        self, account_token: str, channel: str, body: dict[str, Any]
    ) -> OrdersFindResponse:
        resp = await self.request(
            account_token,
            "POST",
            "/order/find/",
            json=body,
            params={"channel": channel, "account_token": account_token},
        )
        return OrdersFindResponse.model_validate(resp.json())

    async def upload_invoice(self, account_token: str, invoice: dict[str, Any]) -> None:
        await self.request(account_token, "POST", "/order/invoice/", json=invoice)
