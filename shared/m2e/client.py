"""The M2E Sales Channels API v4 client: one place for auth, rate limits and retries.

    client = M2EClient(base_url, credentials, limiter, retry=RetryPolicy())
    await client.update_variants(account_token, [{"sku": "A-1", "price": 9.5}])

The client is the one owner of the rate budget: it resolves an account token to its access
token once (`Credentials.lookup`: an unknown account raises `UnknownAccount`, the same
everywhere), and every call takes a token from that access token's limiter bucket first,
sends the access token, and feeds the rate-limit headers back to the limiter. The
scheduler asks it, not the limiter, when an account could send (`take`: a slot free then
is taken for the batch's first request, one round trip for both). Its errors are one tree
(shared.m2e.errors); a 2xx whose body is not the documented JSON is a transient failure,
like a 5xx. Access tokens never appear in an exception, a log line or a metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import httpx

from shared.limiter import LOST, UNSENT, Limiter, RateFeedback
from shared.m2e.credentials import Credentials
from shared.m2e.errors import (
    Abandoned,
    BatchRejected,
    M2EError,
    TransientFailure,
    Unauthorized,
    UnknownAccount,
    api_errors,
)
from shared.m2e.feedback import parse_feedback, parse_retry_at
from shared.m2e.flight import FLIGHT
from shared.m2e.models import CreateResponse, OrdersFindResponse

__all__ = [
    "PRODUCTION_BASE_URL",
    "Abandoned",
    "BatchRejected",
    "CallStats",
    "Credentials",
    "M2EClient",
    "M2EError",
    "Observer",
    "RetryPolicy",
    "TransientFailure",
    "Unauthorized",
    "UnknownAccount",
    "parse_feedback",
    "parse_retry_at",
]

PRODUCTION_BASE_URL = "https://m2e.cloud/api/v1/api"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter for 5xx, timeouts and resets."""

    attempts: int = 5
    base_s: float = 0.2
    cap_s: float = 10.0
    max_throttled: int = 50  # 429s waited out per call before giving the batch back

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        return float(rng() * min(self.cap_s, self.base_s * 2.0 ** (attempt - 1)))


@dataclass(frozen=True, slots=True)
class CallStats:
    """What one call cost: for metrics, results and logs."""

    endpoint: str
    status: int | str  # the HTTP status; "malformed": a 2xx whose body is not what it must be
    seconds: float
    limiter_wait_s: float


Observer = Callable[[str, CallStats], None]  # (account_token, stats)


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
        self._releases: set[asyncio.Task[None]] = set()  # kept until done (not collected)
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

    @property
    def credentials(self) -> Credentials:
        return self._credentials

    def catalog_of(self, account_token: str) -> str:
        """The name of the account's catalog (one per access token: accounts sharing a
        token share it) that may be stored and logged: its bucket id, not the token."""
        return self._credentials.lookup(account_token)[1]

    async def take(self, account_token: str, ticket: str, paced: bool = False) -> float:
        """Seconds until the account's budget allows a request (`paced`: a backlog's, evenly
        over the window); 0.0: a slot was taken under `ticket` (`Flight.prepaid`)."""
        return await self._limiter.take(self._credentials.lookup(account_token)[1], ticket, paced)

    def release(self, account_token: str, ticket: str) -> None:
        """A slot taken and never used: give it back."""
        with contextlib.suppress(UnknownAccount):  # removed meanwhile: the ticket expires
            self._release_later(self._credentials.lookup(account_token)[1], UNSENT, ticket)

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
        response, _ = await self._exchange(account_token, method, path, json, params, None)
        return response

    async def call(
        self,
        account_token: str,
        method: str,
        path: str,
        expect: Callable[[Any], T],
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> T:
        """A call whose 2xx body must be JSON that `expect` accepts (it raises ValueError,
        TypeError or KeyError otherwise). A body that is not — a gateway's HTML, a body
        cut short, another shape — is a transient failure of that request, retried like
        a 5xx: never taken for a success, never blamed on the items."""
        _, value = await self._exchange(account_token, method, path, json, params, expect)
        return cast(T, value)

    async def _exchange(
        self,
        account_token: str,
        method: str,
        path: str,
        json: Any,
        params: dict[str, str] | None,
        expect: Callable[[Any], Any] | None,
    ) -> tuple[httpx.Response, Any]:
        access_token, bucket = self._credentials.lookup(account_token)
        endpoint = f"{method} {path}"
        failures = throttled = 0
        flight = FLIGHT.get()
        while True:
            prepaid = None if flight is None else flight.use_prepaid(account_token)
            ticket, waited = prepaid or uuid.uuid4().hex, 0.0
            if prepaid is None:
                try:
                    waited = await self._limiter.acquire(bucket, ticket)
                except asyncio.CancelledError:  # perhaps granted as it was cancelled
                    self._release_later(bucket, UNSENT, ticket)
                    raise
            if flight is not None and flight.abandoned:
                await self._limiter.feedback(bucket, UNSENT, ticket)
                raise Abandoned(endpoint)
            started = time.monotonic()
            try:
                if flight is not None:
                    flight.sent()
                try:
                    response = await self._http.request(
                        method,
                        path,
                        json=json,
                        params=params,
                        headers={"access-token": access_token},
                    )
                except asyncio.CancelledError:  # a revocation, a shutdown: free its slot
                    self._release_later(bucket, LOST, ticket)
                    raise
                finally:
                    if flight is not None:
                        flight.answered()
            except httpx.TransportError as exc:  # timeouts, resets, refused connections
                await self._limiter.feedback(bucket, LOST, ticket)
                reason = f"{type(exc).__name__} on {endpoint}"
                self._observe(account_token, endpoint, 0, started, waited)
                failures += 1
                if failures >= self._retry.attempts:
                    raise TransientFailure(reason, failures) from None
                await self._sleep(self._retry.delay(failures))
                continue
            await self._limiter.feedback(bucket, parse_feedback(response), ticket)
            status = response.status_code
            problem = None
            if 200 <= status < 300 and expect is not None:
                try:
                    value = expect(response.json())
                except (ValueError, TypeError, KeyError) as exc:
                    problem = f"malformed body ({type(exc).__name__}) on {endpoint}"
            self._observe(
                account_token, endpoint, status if problem is None else "malformed", started, waited
            )
            if status == 429:  # a shared pause is in the limiter now; not a failure
                throttled += 1
                if throttled > self._retry.max_throttled:
                    raise TransientFailure(f"429 on {endpoint}", failures + throttled)
                continue
            if status >= 500 or problem is not None:
                failures += 1
                if failures >= self._retry.attempts:
                    raise TransientFailure(problem or f"HTTP {status} on {endpoint}", failures)
                await self._sleep(self._retry.delay(failures))
                continue
            if status == 401:
                raise Unauthorized(account_token)
            if status in (400, 404, 409, 413, 422):
                raise BatchRejected(status, api_errors(response))
            if status >= 300:
                raise TransientFailure(f"HTTP {status} on {endpoint}", failures + 1)
            return response, (value if expect is not None else None)

    def _release_later(self, bucket: str, feedback: RateFeedback, ticket: str) -> None:
        """Tell the limiter what became of a cancelled request's ticket, without awaiting it
        in the cancelled task (left alone, the ticket would count as in flight until it
        expires)."""

        async def release() -> None:
            with contextlib.suppress(Exception):
                await self._limiter.feedback(bucket, feedback, ticket)

        task = asyncio.get_running_loop().create_task(release())
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    def _observe(
        self, account: str, endpoint: str, status: int | str, started: float, waited: float
    ) -> None:
        if self._observer is not None:
            stats = CallStats(endpoint, status, time.monotonic() - started, waited)
            self._observer(account, stats)

    # ------------------------------------------------------------------ endpoints
    async def create_products(self, account_token: str, products: list[dict[str, Any]]) -> int:
        created = await self.call(
            account_token, "POST", "/catalog/product/", CreateResponse.model_validate, json=products
        )
        return created.count

    async def update_products(self, account_token: str, products: list[dict[str, Any]]) -> int:
        return await self.call(
            account_token,
            "PATCH",
            "/catalog/product/",
            _count("updated", len(products)),
            json={"products": products},
        )

    async def delete_products(self, account_token: str, skus: list[str]) -> int:
        return await self.call(
            account_token,
            "DELETE",
            "/catalog/product/",
            _count("deleted", len(skus)),
            json=[{"sku": s} for s in skus],
        )

    async def update_variants(self, account_token: str, variants: list[dict[str, Any]]) -> int:
        return await self.call(
            account_token,
            "PATCH",
            "/catalog/product/variant/",
            _count("updated", len(variants)),
            json={"variants": variants},
        )

    async def find_products(
        self, account_token: str, skus: list[str], *, offset: int = 0, limit: int = 500
    ) -> dict[str, Any]:
        body = {"filters": {"sku": skus}, "_result": {"offset": offset, "limit": limit}}
        return await self.call(account_token, "POST", "/catalog/product/find/", _listing, json=body)

    async def find_orders(
        self, account_token: str, channel: str, body: dict[str, Any]
    ) -> OrdersFindResponse:
        return await self.call(
            account_token,
            "POST",
            "/order/find/",
            OrdersFindResponse.model_validate,
            json=body,
            params={"channel": channel, "account_token": account_token},
        )

    async def upload_invoice(self, account_token: str, invoice: dict[str, Any]) -> None:
        await self.call(account_token, "POST", "/order/invoice/", _object, json=invoice)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise TypeError(f"a JSON object was expected, not {type(body).__name__}")
    return body


def _count(key: str, default: int) -> Callable[[Any], int]:
    """`{key: n}` (n items done); a body without the key counts every item."""

    def check(body: Any) -> int:
        value = _object(body).get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{key} is not a count")
        return value

    return check


def _listing(body: Any) -> dict[str, Any]:
    found = _object(body)
    if not isinstance(found.get("list"), list):
        raise TypeError("the body has no list")
    return found
