"""Orders generated over time, found with filters and paging; invoices per order."""

from __future__ import annotations

import base64
from typing import Any

from .conftest import AMAZON, EBAY, KAUFLAND, Api, FakeClock, SandboxFactory, demo_config

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


async def find(
    api: Api,
    account: str = EBAY,
    channel: str = "ebay",
    body: Any = None,
    token: str = "demo-access-token-0001",
) -> Any:
    resp = await api.call(
        "POST",
        "/order/find/",
        body if body is not None else {},
        params={"channel": channel, "account_token": account},
        token=token,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


async def all_orders(api: Api, account: str = EBAY, channel: str = "ebay") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = await find(
            api,
            account,
            channel,
            {"sort": {"field": "sale_date"}, "_result": {"offset": len(out), "limit": 500}},
        )
        out += page["list"]
        if len(out) >= page["total"]:
            return out


async def test_initial_orders_are_deterministic_and_sorted(make_api: SandboxFactory) -> None:
    a = await make_api(clock=FakeClock())
    b = await make_api(clock=FakeClock())
    orders_a, orders_b = await all_orders(a), await all_orders(b)
    assert len(orders_a) == 200
    assert orders_a == orders_b
    dates = [o["sale_date"] for o in orders_a]
    assert dates == sorted(dates)
    keys = {
        "token",
        "order_id",
        "source_order_id",
        "buyer_name",
        "buyer_email",
        "status",
        "is_archived",
        "sale_date",
        "ship_date",
        "ship_by_date",
        "shipping_address",
        "country_code",
        "total",
        "items",
    }
    assert keys <= orders_a[0].keys()
    other = await make_api(demo_config(orders={"seed": 2}), clock=FakeClock())
    assert (await all_orders(other))[0]["token"] != orders_a[0]["token"]


async def test_new_orders_and_status_changes_appear_over_time(api: Api) -> None:
    before = {o["order_id"]: o["status"] for o in await all_orders(api)}
    api.clock.advance(120)  # 30 new per minute, 10 status changes per minute
    after = {o["order_id"]: o["status"] for o in await all_orders(api)}
    assert len(after) == len(before) + 60
    changed = [k for k in before if before[k] != after[k]]
    assert 1 <= len(changed) <= 20
    assert all(after[k] in ("Unshipped", "Shipped") for k in changed)


async def test_filters_paging_and_sort(api: Api) -> None:
    everything = await all_orders(api)
    cut = everything[150]["sale_date"]
    recent = await find(api, body={"filters": {"sale_date_from": cut}, "_result": {"limit": 500}})
    assert recent["total"] == 50
    assert all(o["sale_date"] >= cut for o in recent["list"])
    desc = await find(
        api, body={"sort": {"field": "sale_date", "direction": "desc"}, "_result": {"limit": 3}}
    )
    assert [o["order_id"] for o in desc["list"]] == [o["order_id"] for o in everything[::-1][:3]]
    shipped = await find(api, body={"filters": {"status": ["Shipped"]}, "_result": {"limit": 500}})
    assert all(o["status"] == "Shipped" for o in shipped["list"]) and shipped["total"] > 0


async def test_orders_need_channel_and_an_account_of_the_user(api: Api) -> None:
    resp = await api.call("POST", "/order/find/", {}, params={"channel": "ebay"})
    assert resp.status_code == 400 and resp.json()[0]["data"] == {"field": "account_token"}
    resp = await api.call(
        "POST", "/order/find/", {}, params={"channel": "ebay", "account_token": KAUFLAND}
    )
    assert resp.status_code == 404
    resp = await api.call(
        "POST", "/order/find/", {}, params={"channel": "amazon", "account_token": EBAY}
    )
    assert resp.status_code == 404
    assert (await find(api, AMAZON, "amazon"))["total"] == 200


async def _upload(api: Api, order_id: str, data: str, number: str = "INV-1") -> Any:
    return await api.call(
        "POST",
        "/order/invoice/",
        {
            "order_id": order_id,
            "invoice_number": number,
            "total_amount": 10.5,
            "invoice_data": data,
        },
    )


async def test_invoice_upload_and_refusals(api: Api) -> None:
    order_id = (await find(api))["list"][0]["order_id"]
    ok = await _upload(api, order_id, base64.b64encode(PDF).decode())
    assert ok.status_code == 200
    assert ok.json() == {"order_id": order_id, "invoice_number": "INV-1", "status": "uploaded"}
    invoices = (await api.admin("GET", "/state")).json()["users"]["demo-shop"]["invoices"]
    assert [(i["order_id"], i["invoice_number"], i["size"]) for i in invoices] == [
        (order_id, "INV-1", len(PDF))
    ]
    not_b64 = await _upload(api, order_id, "%%%not base64%%%")
    assert not_b64.status_code == 400 and "not valid base64" in not_b64.json()[0]["message"]
    not_pdf = await _upload(api, order_id, base64.b64encode(b"GIF89a....").decode())
    assert not_pdf.status_code == 400 and "not a PDF" in not_pdf.json()[0]["message"]
    unknown = await _upload(api, "NO-SUCH-ORDER", base64.b64encode(PDF).decode())
    assert unknown.status_code == 404
    missing = await api.call("POST", "/order/invoice/", {"order_id": order_id, "invoice_data": "x"})
    assert missing.status_code == 400 and missing.json()[0]["data"] == {"field": "invoice_number"}
