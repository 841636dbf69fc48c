"""Auth, rate limiting (exact headers, 429, recovery), fault injection, admin endpoints."""

from __future__ import annotations

import time

import httpx
import pytest

from m2e_sandbox import API_BASE
from m2e_sandbox.config import FaultConfig
from m2e_sandbox.faults import Fault, pick

from .conftest import TOKEN, Api, FakeClock, SandboxFactory, demo_config


@pytest.mark.parametrize("token", [None, "wrong-token-123"])
async def test_auth_by_access_token_header(api: Api, token: str | None) -> None:
    resp = await api.call("GET", "/user/accounts/", token=token)
    assert resp.status_code == 401
    assert resp.json() == [{"code": "unauthorized", "message": "Unauthorized", "data": {}}]


async def test_a_revoked_access_token_answers_401_until_it_is_restored(api: Api) -> None:
    """A merchant revoking its token, as users reproduce it in their own CI."""
    assert (await api.call("GET", "/user/accounts/")).status_code == 200
    revoked = await api.admin("PUT", "/users/demo-shop/access", {"revoked": True})
    assert revoked.json() == {"user": "demo-shop", "revoked": True}
    assert (await api.call("GET", "/user/accounts/")).status_code == 401
    assert (await api.admin("POST", "/reset")).status_code == 200  # a reset keeps it revoked
    assert (await api.call("GET", "/user/accounts/")).status_code == 401
    assert (await api.admin("PUT", "/users/demo-shop/access", {"revoked": False})).is_success
    assert (await api.call("GET", "/user/accounts/")).status_code == 200
    assert (await api.admin("PUT", "/users/nobody/access", {"revoked": True})).status_code == 404
    bad = await api.admin("PUT", "/users/demo-shop/access", {"revoked": "yes"})
    assert bad.status_code == 400 and "revoked" in bad.text


async def test_a_rotated_access_token_serves_the_same_catalog_and_the_old_one_answers_401(
    api: Api,
) -> None:
    """A merchant rotating its token: the workers' credentials must follow."""
    before = (await api.call("GET", "/user/accounts/")).json()
    rotated = await api.admin("PUT", "/users/demo-shop/access", {"token": "rotated-token-0001"})
    assert rotated.json() == {"user": "demo-shop", "rotated": True}
    assert (await api.call("GET", "/user/accounts/")).status_code == 401
    after = await api.call("GET", "/user/accounts/", token="rotated-token-0001")
    assert after.status_code == 200 and after.json() == before
    assert (await api.admin("POST", "/reset")).status_code == 200  # a reset keeps it
    assert (await api.call("GET", "/user/accounts/", token="rotated-token-0001")).status_code == 200
    assert (await api.call("GET", "/user/accounts/")).status_code == 401
    short = await api.admin("PUT", "/users/demo-shop/access", {"token": "short"})
    assert short.status_code == 400


async def test_a_sliding_window_counts_each_request_for_a_period_after_it(
    make_api: SandboxFactory,
) -> None:
    """`rate_limit.mode: sliding`, as other gateways meter: no window opens or closes; a
    request frees its slot `period_s` after it was made."""
    clock = FakeClock(1_800_000_000.0)
    config = demo_config(rate_limit={"requests": 3, "period_s": 10, "mode": "sliding"})
    api = await make_api(config, clock)
    for _ in range(3):  # at 0, 4 and 8 s
        assert (await api.call("GET", "/user/accounts/")).status_code == 200
        clock.advance(4)
    refused = await api.call("GET", "/user/accounts/")  # at 12 s: the one of 0 s has gone
    assert refused.status_code == 200 and refused.headers["X-RateLimit-Remaining"] == "0"
    clock.advance(1)  # 13 s: 4, 8 and 12 s still count
    throttled = await api.call("GET", "/user/accounts/")
    assert throttled.status_code == 429
    assert throttled.headers["X-RateLimit-Retry-After"] == "2027-01-15T08:00:14Z"  # 4 s + 10
    clock.advance(1)  # 14 s: the one of 4 s stops counting
    assert (await api.call("GET", "/user/accounts/")).status_code == 200
    current = (await api.admin("GET", "/rate_limit")).json()
    assert current["mode"] == "sliding"
    back = await api.admin("PUT", "/rate_limit", {"mode": "fixed"})  # at run time
    assert back.is_success and (await api.call("GET", "/user/accounts/")).status_code == 200


async def test_rate_limit_headers_429_and_recovery(make_api: SandboxFactory) -> None:
    clock = FakeClock(1_800_000_000.25)
    api = await make_api(demo_config(rate_limit={"requests": 3, "period_s": 10}), clock)
    remaining = []
    for _ in range(3):
        resp = await api.call("GET", "/user/accounts/")
        assert resp.status_code == 200
        assert resp.headers["X-RateLimit-Limit"] == "3"
        # Window opened at ...00.25 and closes at ...10.25: rounded up to the second.
        assert resp.headers["X-RateLimit-Retry-After"] == "2027-01-15T08:00:11Z"
        remaining.append(resp.headers["X-RateLimit-Remaining"])
        clock.advance(1)
    assert remaining == ["2", "1", "0"]

    throttled = await api.call("POST", "/catalog/product/find/", {})
    assert throttled.status_code == 429
    assert throttled.json()[0]["message"] == "Too many requests."
    assert throttled.headers["X-RateLimit-Remaining"] == "0"
    assert throttled.headers["X-RateLimit-Retry-After"] == "2027-01-15T08:00:11Z"

    # Another access token has its own budget.
    other = await api.call("GET", "/user/accounts/", token="demo-access-token-0002")
    assert other.status_code == 200

    clock.advance(7)  # now past the window's end
    resp = await api.call("GET", "/user/accounts/")
    assert resp.status_code == 200
    assert resp.headers["X-RateLimit-Remaining"] == "2"

    stats = (await api.admin("GET", "/stats")).json()
    assert stats["requests"]["GET /user/accounts/"] == {"200": 5}
    assert stats["requests"]["POST /catalog/product/find/"] == {"429": 1}

    # The request log names the window each request counted in (none for the refused one):
    # benchmarks count served requests per window from it, exactly as the limiter did.
    log = (await api.admin("GET", "/requests")).json()["requests"]
    start = 1_800_000_000.25
    assert [(r["status"], r["window"]) for r in log] == [
        (200, start),
        (200, start),
        (200, start),
        (429, None),
        (200, start + 3),  # the other token's own window
        (200, start + 10),
    ]


async def test_rate_limit_changes_at_run_time(api: Api) -> None:
    resp = await api.admin("PUT", "/rate_limit", {"requests": 1})
    assert resp.json() == {"requests": 1, "period_s": 60.0, "mode": "fixed"}
    assert (await api.call("GET", "/user/accounts/")).status_code == 200
    second = await api.call("GET", "/user/accounts/")
    assert second.status_code == 429 and second.headers["X-RateLimit-Limit"] == "1"
    bad = await api.admin("PUT", "/rate_limit", {"requests": 0})
    assert bad.status_code == 400 and "requests" in bad.json()[0]["message"]


async def test_fault_500(api: Api) -> None:
    await api.admin("PUT", "/faults", {"error_rate": 1.0})
    resp = await api.call("GET", "/user/accounts/")
    assert resp.status_code == 500
    assert resp.json()[0]["message"] == "Internal server error."
    assert "X-RateLimit-Remaining" in resp.headers


async def test_fault_throttle_regardless_of_budget(api: Api) -> None:
    await api.admin("PUT", "/faults", {"throttle_rate": 1.0})
    resp = await api.call("GET", "/user/accounts/")
    assert resp.status_code == 429
    assert resp.headers["X-RateLimit-Remaining"] == "100"  # budget untouched
    assert resp.headers["X-RateLimit-Retry-After"] == "2027-01-15T08:00:01Z"


async def test_fault_latency(api: Api) -> None:
    await api.admin("PUT", "/faults", {"latency_ms": 300})
    started = time.monotonic()
    resp = await api.call("GET", "/user/accounts/")
    assert resp.status_code == 200
    assert time.monotonic() - started >= 0.3


async def test_fault_timeout_gives_no_response(make_api: SandboxFactory) -> None:
    api = await make_api(http_timeout=0.5)
    await api.admin("PUT", "/faults", {"timeout_rate": 1.0, "timeout_hold_s": 2.0})
    with pytest.raises(httpx.ReadTimeout):
        await api.call("GET", "/user/accounts/")


async def test_fault_connection_reset(api: Api) -> None:
    await api.admin("PUT", "/faults", {"reset_rate": 1.0})
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        await api.call("GET", "/user/accounts/")
    # The sandbox itself is fine: the next request without faults succeeds.
    await api.admin("PUT", "/faults", {"reset_rate": 0.0})
    assert (await api.call("GET", "/user/accounts/")).status_code == 200


async def test_fault_rates_are_proportional_and_seedable(api: Api) -> None:
    await api.admin("PUT", "/rate_limit", {"requests": 1000})
    await api.admin("PUT", "/faults", {"error_rate": 0.3, "seed": 7})
    statuses = [(await api.call("GET", "/user/accounts/")).status_code for _ in range(60)]
    errors = statuses.count(500)
    assert 8 <= errors <= 30, errors
    await api.admin("PUT", "/faults", {"error_rate": 0.3, "seed": 7})
    again = [(await api.call("GET", "/user/accounts/")).status_code for _ in range(60)]
    assert again == statuses


async def test_seeded_faults_per_route_do_not_depend_on_other_traffic(api: Api) -> None:
    # A client's n-th request to a route meets the same fault in every run, however
    # other routes and other access tokens interleave with it.
    await api.admin("PUT", "/rate_limit", {"requests": 1000})
    faults = {"error_rate": 0.3, "throttle_rate": 0.2, "seed": 11}
    await api.admin("PUT", "/faults", faults)
    alone = [(await api.call("GET", "/user/accounts/")).status_code for _ in range(40)]
    assert {500, 429, 200} <= set(alone)

    await api.admin("PUT", "/faults", faults)
    mixed = []
    for i in range(40):
        for _ in range(i % 3):
            await api.call("POST", "/catalog/product/find/", {})
            await api.call("GET", "/user/accounts/", token="demo-access-token-0002")
        mixed.append((await api.call("GET", "/user/accounts/")).status_code)
    assert mixed == alone


async def test_reset_keeps_run_time_faults_and_replays_their_seeded_sequence(api: Api) -> None:
    # A CI job that resets between test cases gets the same faults in each case.
    await api.admin("PUT", "/rate_limit", {"requests": 1000})
    await api.admin("PUT", "/faults", {"error_rate": 0.5, "seed": 3})
    first = [(await api.call("GET", "/user/accounts/")).status_code for _ in range(20)]
    assert {500, 200} <= set(first)
    assert (await api.admin("POST", "/reset")).json() == {"reset": True}
    assert (await api.admin("GET", "/faults")).json()["error_rate"] == 0.5
    assert (await api.admin("GET", "/rate_limit")).json() == {
        "requests": 1000,
        "period_s": 60.0,
        "mode": "fixed",
    }
    after = [(await api.call("GET", "/user/accounts/")).status_code for _ in range(20)]
    assert after == first


def test_each_request_meets_at_most_one_fault_by_its_share() -> None:
    config = FaultConfig(reset_rate=0.1, timeout_rate=0.1, throttle_rate=0.2, error_rate=0.3)
    assert [pick(config, d) for d in (0.05, 0.15, 0.25, 0.45, 0.65, 0.75)] == [
        Fault.RESET,
        Fault.TIMEOUT,
        Fault.THROTTLE,
        Fault.ERROR,
        Fault.ERROR,
        None,
    ]
    assert pick(FaultConfig(error_rate=1.0), 0.999) is Fault.ERROR
    assert pick(FaultConfig(), 0.0) is None


async def test_fault_shares_over_one_are_refused(api: Api) -> None:
    bad = await api.admin("PUT", "/faults", {"error_rate": 0.7, "throttle_rate": 0.4})
    assert bad.status_code == 400
    assert "must not exceed 1 (they add up to 1.1)" in bad.json()[0]["message"]
    with pytest.raises(ValueError, match="must not exceed 1"):
        FaultConfig(reset_rate=1.0, timeout_rate=0.5)


async def test_faults_from_config(make_api: SandboxFactory) -> None:
    api = await make_api(demo_config(faults={"error_rate": 1.0}))
    assert (await api.call("GET", "/user/accounts/")).status_code == 500
    bad = await api.admin("PUT", "/faults", {"error_rate": 2})
    assert bad.status_code == 400 and "error_rate" in bad.json()[0]["message"]


async def test_admin_stats_items_reset_state_and_request_log(api: Api) -> None:
    batch = [
        {
            "sku": f"S{i}",
            "status": 1,
            "is_simple": True,
            "currency": "EUR",
            "title": "t",
            "variants": [{"sku": f"S{i}-v", "barcode": None, "price": 1, "quantity": 1}],
        }
        for i in range(7)
    ]
    await api.call("POST", "/catalog/product/", batch)
    await api.call(
        "PATCH", "/catalog/product/variant/", {"variants": [{"sku": "S1-v", "price": 2}]}
    )
    stats = (await api.admin("GET", "/stats")).json()
    assert stats == {
        "requests": {
            "POST /catalog/product/": {"200": 1},
            "PATCH /catalog/product/variant/": {"200": 1},
        },
        "items": {"POST /catalog/product/": 7, "PATCH /catalog/product/variant/": 1},
    }
    state = (await api.admin("GET", "/state")).json()
    catalog = state["users"]["demo-shop"]["catalog"]
    assert [p["sku"] for p in catalog] == [f"S{i}" for i in range(7)]
    assert catalog[1]["variants"][0]["price"] == 2
    assert state["users"]["demo-outlet"]["catalog"] == []
    log = (await api.admin("GET", "/requests")).json()["requests"]
    assert [(r["route"], r["status"], r["items"], r["user"]) for r in log] == [
        ("POST /catalog/product/", 200, 7, "demo-shop"),
        ("PATCH /catalog/product/variant/", 200, 1, "demo-shop"),
    ]
    assert (await api.admin("POST", "/reset")).json() == {"reset": True}
    assert (await api.admin("GET", "/stats")).json() == {"requests": {}, "items": {}}
    state = (await api.admin("GET", "/state")).json()
    assert state["users"]["demo-shop"]["catalog"] == []


async def test_accounts(api: Api) -> None:
    resp = await api.call("GET", "/user/accounts/")
    accounts = resp.json()
    assert [(a["channel"], a["is_valid"]) for a in accounts] == [("ebay", True), ("amazon", True)]
    assert {"token", "title", "identifier", "create_date"} <= accounts[0].keys()


async def test_the_admin_api_answers_only_to_this_machines_names(api: Api) -> None:
    # DNS rebinding: a page on attacker.example whose name now points at 127.0.0.1.
    for host in ("attacker.example", "attacker.example:8765", "127.0.0.1.nip.io"):
        refused = await api.http.get("/_sandbox/state", headers={"Host": host})
        assert refused.status_code == 403, host
    for host in ("localhost:8765", "127.0.0.1", "[::1]:8765", "LOCALHOST"):
        assert (await api.http.get("/_sandbox/stats", headers={"Host": host})).status_code == 200


async def test_admin_changes_need_a_json_body(api: Api) -> None:
    await api.call("GET", "/user/accounts/")  # state that a reset would clear
    # What a web page can send across origins without asking: no body, or text/plain.
    for kwargs in ({}, {"content": "{}", "headers": {"content-type": "text/plain"}}):
        refused = await api.http.post("/_sandbox/reset", **kwargs)  # type: ignore[arg-type]
        assert refused.status_code == 415
    faults = await api.http.put(
        "/_sandbox/faults",
        content='{"error_rate": 1.0}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert faults.status_code == 415 and api.sandbox.faults.error_rate == 0.0
    assert api.sandbox.stats.requests["GET /user/accounts/"]["200"] == 1  # nothing was reset
    assert (await api.admin("POST", "/reset")).status_code == 200


async def test_requests_to_unique_paths_cannot_grow_the_stats(api: Api) -> None:
    for i in range(300):
        await api.call("GET", f"/no/such/path/{i}", token=None)
        await api.call("GET", f"/also/unknown/{i}")
    routes = set((await api.admin("GET", "/stats")).json()["requests"])
    assert routes == {"(unknown route)"}, sorted(routes)[:5]


async def test_deeply_nested_json_is_a_400_not_a_500(api: Api) -> None:
    body = "[" * 100_000 + "]" * 100_000
    resp = await api.http.post(
        API_BASE + "/catalog/product/",
        content=body,
        headers={"access-token": TOKEN, "content-type": "application/json"},
    )
    assert resp.status_code == 400 and "nested" in resp.json()[0]["message"]


async def test_misbehaving_gateway_faults(api: Api) -> None:
    body = {"variants": [{"sku": "SKU-1", "price": 5.0}]}
    await api.call("POST", "/catalog/product/", [{"sku": "P1", "status": 1, "is_simple": True, "currency": "EUR", "title": "t", "images": [], "variants": [{"sku": "SKU-1", "barcode": None, "price": 1.0, "quantity": 1}]}])  # fmt: skip

    await api.admin("PUT", "/faults", {"html_error_rate": 1.0})
    html = await api.call("PATCH", "/catalog/product/variant/", body)
    assert html.status_code == 502 and html.headers["content-type"].startswith("text/html")
    assert api.sandbox.users[TOKEN].catalog.get("P1")["variants"][0]["price"] == 1.0  # type: ignore[index]

    await api.admin("PUT", "/faults", {"html_error_rate": 0.0, "malformed_body_rate": 1.0})
    malformed = await api.call("PATCH", "/catalog/product/variant/", body)
    assert malformed.status_code == 200
    with pytest.raises(ValueError):
        malformed.json()
    assert api.sandbox.users[TOKEN].catalog.get("P1")["variants"][0]["price"] == 5.0  # type: ignore[index]

    await api.admin("PUT", "/faults", {"malformed_body_rate": 0.0, "truncated_body_rate": 1.0})
    with pytest.raises(httpx.TransportError):  # cut short, then closed
        await api.call("PATCH", "/catalog/product/variant/", body)

    await api.admin(
        "PUT", "/faults", {"truncated_body_rate": 0.0, "bad_ratelimit_headers_rate": 1.0}
    )
    garbage = await api.call("PATCH", "/catalog/product/variant/", body)
    assert garbage.status_code == 200 and garbage.json() == {"updated": 1}
    assert garbage.headers["X-RateLimit-Limit"] == "lots"


def test_fault_rates_above_one_in_all_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match="html_error_rate"):
        FaultConfig(error_rate=0.5, malformed_body_rate=0.6)
