"""Catalog endpoints: happy paths, validation per the reference, item semantics."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from .conftest import (
    VENDORED_EXAMPLE,
    Api,
    SandboxFactory,
    demo_config,
    example_from_page,
    reference_create_example,
)


def product(sku: str, variants: int = 1, **kw: Any) -> dict[str, Any]:
    return {
        "sku": sku,
        "status": 1,
        "is_simple": variants == 1,
        "currency": "EUR",
        "title": f"Product {sku}",
        "variants": [
            {"sku": f"{sku}-v{i}", "barcode": None, "price": 10.0 + i, "quantity": 5}
            for i in range(variants)
        ],
        **kw,
    }


async def test_reference_create_example_is_accepted_and_readable(api: Api) -> None:
    created = await api.call("POST", "/catalog/product/", reference_create_example())
    assert created.status_code == 200, created.text
    assert created.json() == {"created": 1}
    for header in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Retry-After"):
        assert header in created.headers

    got = await api.call("GET", "/catalog/product/", params={"sku": "test-product-SKU"})
    assert got.status_code == 200
    body = got.json()
    assert body["status"] == "Active"
    assert body["quantity"] == 100
    assert body["title"] == "Wireless Bluetooth Headphones"
    variant = body["variants"][0]
    assert (variant["sku"], variant["price"], variant["weight_unit"]) == (
        "WBH-12345",
        79.99,
        "GRAMS",
    )
    for key in ("token", "update_date", "options", "attributes", "dimension_unit"):
        assert key in variant


def test_vendored_example_is_the_reference_pages() -> None:
    import json

    page = example_from_page()
    if page is not None:  # where the reference pages are at hand
        assert json.loads(VENDORED_EXAMPLE.read_text()) == page


def _break(path: list[Any], value: Any = ...) -> Any:
    """A mutation of the reference example: set `path` to `value`, or delete it (...)."""

    def mutate(doc: list[dict[str, Any]]) -> None:
        target: Any = doc[0]
        for key in path[:-1]:
            target = target[key]
        if value is ...:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return mutate


BROKEN = [
    ("sku missing", _break(["sku"]), "sku"),
    ("sku empty", _break(["sku"], ""), "sku"),
    ("status missing", _break(["status"]), "status"),
    ("status not in enum", _break(["status"], 6), "status"),
    ("status as string", _break(["status"], "Active"), "status"),
    ("is_simple not bool", _break(["is_simple"], "no"), "is_simple"),
    ("currency missing", _break(["currency"]), "currency"),
    ("currency lower case", _break(["currency"], "usd"), "currency"),
    ("currency 4 letters", _break(["currency"], "EURO"), "currency"),
    ("title missing", _break(["title"]), "title"),
    ("description null", _break(["description"], None), "description"),
    ("images not array", _break(["images"], "https://example.com/a.jpg"), "images"),
    ("attribute without value", _break(["attributes", 0, "value"]), "attributes[0].value"),
    ("variants missing", _break(["variants"]), "variants"),
    ("variants empty", _break(["variants"], []), "variants"),
    ("variant sku missing", _break(["variants", 0, "sku"]), "variants[0].sku"),
    ("variant barcode missing", _break(["variants", 0, "barcode"]), "variants[0].barcode"),
    ("price negative", _break(["variants", 0, "price"], -0.01), "variants[0].price"),
    ("price too high", _break(["variants", 0, "price"], 1_000_000.01), "variants[0].price"),
    ("price as string", _break(["variants", 0, "price"], "79.99"), "variants[0].price"),
    ("quantity negative", _break(["variants", 0, "quantity"], -1), "variants[0].quantity"),
    ("quantity too high", _break(["variants", 0, "quantity"], 1_000_001), "variants[0].quantity"),
    ("quantity fractional", _break(["variants", 0, "quantity"], 1.5), "variants[0].quantity"),
    ("weight negative", _break(["variants", 0, "weight"], -1), "variants[0].weight"),
    (
        "weight unit unknown",
        _break(["variants", 0, "weight_unit"], "STONE"),
        "variants[0].weight_unit",
    ),
    (
        "dimension unit unknown",
        _break(["variants", 0, "dimension_unit"], "CM"),
        "variants[0].dimension_unit",
    ),
    ("height negative", _break(["variants", 0, "height"], -2), "variants[0].height"),
    (
        "option without name",
        _break(["variants", 0, "options", 0, "name"]),
        "variants[0].options[0].name",
    ),
]


@pytest.mark.parametrize(("case", "mutate", "field"), BROKEN, ids=[c[0] for c in BROKEN])
async def test_broken_copy_of_reference_is_rejected_naming_the_field(
    api: Api, case: str, mutate: Any, field: str
) -> None:
    doc = copy.deepcopy(reference_create_example())
    mutate(doc)
    resp = await api.call("POST", "/catalog/product/", doc)
    assert resp.status_code == 400, case
    errors = resp.json()
    assert errors[0]["message"] == "All array items must match schema"
    messages = [e["message"] for e in errors[1:]]
    assert any(m.startswith(f"item 0: {field}:") for m in messages), messages
    assert all({"code", "message", "data"} <= e.keys() for e in errors)
    # Nothing was created.
    found = await api.call("POST", "/catalog/product/find/", {})
    assert found.json()["total"] == 0


@pytest.mark.parametrize("count", [0, 501])
async def test_batch_size_bounds(api: Api, count: int) -> None:
    resp = await api.call("POST", "/catalog/product/", [product(f"S{i}") for i in range(count)])
    assert resp.status_code == 400
    assert "1 to 500" in resp.json()[0]["message"]


async def test_500_items_are_accepted(api: Api) -> None:
    resp = await api.call("POST", "/catalog/product/", [product(f"S{i}") for i in range(500)])
    assert resp.status_code == 200
    assert resp.json() == {"created": 500}


async def test_not_json_and_not_array(api: Api) -> None:
    resp = await api.call(
        "POST", "/catalog/product/", content=b"{nope", token="demo-access-token-0001"
    )
    assert resp.status_code == 400 and "not valid JSON" in resp.json()[0]["message"]
    resp = await api.call("POST", "/catalog/product/", {"sku": "x"})
    assert resp.status_code == 400 and "must be an array" in resp.json()[0]["message"]
    resp = await api.call("POST", "/catalog/product/", content=b"[NaN]")
    assert resp.status_code == 400


async def test_one_bad_item_rejects_the_whole_batch_naming_its_index(api: Api) -> None:
    batch = [product("A"), product("B"), product("C")]
    batch[1]["variants"][0]["price"] = -5
    resp = await api.call("POST", "/catalog/product/", batch)
    assert resp.status_code == 400
    errors = resp.json()
    assert errors[0]["data"] == {"invalid_items": [1]}
    assert errors[1]["message"].startswith("item 1: variants[0].price:")
    assert errors[1]["data"]["index"] == 1
    assert (await api.call("POST", "/catalog/product/find/", {})).json()["total"] == 0


async def test_partial_mode_applies_the_valid_items(make_api: SandboxFactory) -> None:
    api = await make_api(demo_config(validation={"reject_whole_batch": False}))
    batch = [product("A"), product("B"), product("C")]
    batch[1]["currency"] = "eur"
    resp = await api.call("POST", "/catalog/product/", batch)
    assert resp.status_code == 200
    body = resp.json()
    assert body["created"] == 2
    assert [e["data"]["index"] for e in body["errors"]] == [1]
    found = await api.call("POST", "/catalog/product/find/", {})
    assert [p["sku"] for p in found.json()["list"]] == ["A", "C"]


async def test_create_response_key_can_follow_the_reference_example(
    make_api: SandboxFactory,
) -> None:
    api = await make_api(demo_config(create_response_key="deleted"))
    resp = await api.call("POST", "/catalog/product/", [product("A")])
    assert resp.json() == {"deleted": 1}


async def test_create_existing_sku_is_a_conflict(api: Api) -> None:
    assert (await api.call("POST", "/catalog/product/", [product("A")])).status_code == 200
    resp = await api.call("POST", "/catalog/product/", [product("A")])
    assert resp.status_code == 400
    assert resp.json()[1]["code"] == "conflict"
    assert resp.json()[1]["data"]["sku"] == "A"
    dup = await api.call("POST", "/catalog/product/", [product("X"), product("X")])
    assert dup.status_code == 400 and dup.json()[1]["data"]["index"] == 1
    # A variant SKU belongs to one product.
    clash = product("Y")
    clash["variants"][0]["sku"] = "A-v0"
    resp = await api.call("POST", "/catalog/product/", [clash])
    assert resp.status_code == 400 and resp.json()[1]["message"].startswith(
        "item 0: variants[0].sku"
    )


async def test_simple_product_has_one_variant(api: Api) -> None:
    bad = product("A", variants=2)
    bad["is_simple"] = True
    resp = await api.call("POST", "/catalog/product/", [bad])
    assert resp.status_code == 400 and "item 0: variants:" in resp.json()[1]["message"]


async def test_update_products_and_variants(api: Api) -> None:
    await api.call("POST", "/catalog/product/", [product("A", variants=2)])
    api.clock.advance(5)
    resp = await api.call(
        "PATCH", "/catalog/product/", {"products": [{"sku": "A", "title": "New", "images": ["u"]}]}
    )
    assert resp.status_code == 200 and resp.json() == {"updated": 1}
    resp = await api.call(
        "PATCH",
        "/catalog/product/variant/",
        {
            "variants": [
                {"sku": "A-v1", "price": 99.5, "quantity": 7},
                {"sku": "A-v0", "barcode": "1"},
            ]
        },
    )
    assert resp.status_code == 200 and resp.json() == {"updated": 2}
    got = (await api.call("GET", "/catalog/product/", params={"sku": "A"})).json()
    assert got["title"] == "New" and got["images"] == ["u"]
    assert got["variants"][1]["price"] == 99.5 and got["variants"][1]["quantity"] == 7
    assert got["variants"][0]["barcode"] == "1" and got["variants"][0]["price"] == 10.0
    assert got["quantity"] == 5 + 7
    assert got["update_date"] == "2027-01-15T08:00:05Z"


@pytest.mark.parametrize(
    ("path", "body", "method"),
    [
        ("/catalog/product/", {"products": [{"sku": "A", "title": "t"}, {"sku": "nope"}]}, "PATCH"),
        ("/catalog/product/variant/", {"variants": [{"sku": "A-v0"}, {"sku": "nope"}]}, "PATCH"),
        ("/catalog/product/", [{"sku": "A"}, {"sku": "nope"}], "DELETE"),
    ],
)
async def test_unknown_sku_is_404_naming_it(api: Api, path: str, body: Any, method: str) -> None:
    await api.call("POST", "/catalog/product/", [product("A")])
    resp = await api.call(method, path, body)
    assert resp.status_code == 404
    errors = resp.json()
    assert errors[1]["data"] == {"index": 1, "field": "sku", "sku": "nope"}
    assert errors[1]["code"] == "not_found"
    # Whole batch rejected: A is untouched.
    assert (await api.call("GET", "/catalog/product/", params={"sku": "A"})).json()[
        "title"
    ] == "Product A"


async def test_update_validation(api: Api) -> None:
    await api.call("POST", "/catalog/product/", [product("A")])
    resp = await api.call(
        "PATCH", "/catalog/product/variant/", {"variants": [{"sku": "A-v0", "quantity": -1}]}
    )
    assert resp.status_code == 400 and resp.json()[1]["message"].startswith("item 0: quantity:")
    resp = await api.call("PATCH", "/catalog/product/", {"items": []})
    assert resp.status_code == 400 and resp.json()[0]["message"] == "products: Field required"
    resp = await api.call(
        "PATCH", "/catalog/product/", {"products": [{"sku": "A", "currency": "eu"}]}
    )
    assert resp.status_code == 400 and "item 0: currency:" in resp.json()[1]["message"]


async def test_delete_then_get_is_404_and_sku_is_free_again(api: Api) -> None:
    await api.call("POST", "/catalog/product/", [product("A"), product("B")])
    resp = await api.call("DELETE", "/catalog/product/", [{"sku": "A"}])
    assert resp.status_code == 200 and resp.json() == {"deleted": 1}
    got = await api.call("GET", "/catalog/product/", params={"sku": "A"})
    assert got.status_code == 404 and got.json()[0]["message"] == "Entity is not found."
    assert (await api.call("POST", "/catalog/product/", [product("A")])).status_code == 200


async def test_get_needs_sku(api: Api) -> None:
    resp = await api.call("GET", "/catalog/product/")
    assert resp.status_code == 400 and resp.json()[0]["data"] == {"field": "sku"}


async def test_find_filters_sort_and_pages(api: Api) -> None:
    await api.call("POST", "/catalog/product/", [product(f"S{i:03d}") for i in range(250)])
    resp = await api.call(
        "POST", "/catalog/product/find/", {"filters": {"sku": ["S010", "S005", "nope"]}}
    )
    assert [p["sku"] for p in resp.json()["list"]] == ["S005", "S010"]
    assert resp.json()["total"] == 2
    page = await api.call(
        "POST",
        "/catalog/product/find/",
        {"sort": {"field": "sku", "direction": "desc"}, "_result": {"offset": 10, "limit": 5}},
    )
    assert [p["sku"] for p in page.json()["list"]] == ["S239", "S238", "S237", "S236", "S235"]
    assert page.json()["total"] == 250
    default = await api.call("POST", "/catalog/product/find/")
    assert len(default.json()["list"]) == 100
    bad = await api.call("POST", "/catalog/product/find/", {"_result": {"limit": 501}})
    assert bad.status_code == 400 and "_result.limit" in bad.json()[0]["message"]


async def test_catalogs_are_per_user(api: Api) -> None:
    await api.call("POST", "/catalog/product/", [product("A")])
    other = await api.call(
        "GET", "/catalog/product/", params={"sku": "A"}, token="demo-access-token-0002"
    )
    assert other.status_code == 404


async def test_unknown_path_and_method_answer_with_an_error_list(api: Api) -> None:
    resp = await api.call("GET", "/catalog/nothing/")
    assert resp.status_code == 404 and resp.json()[0]["message"]
    resp = await api.call("PUT", "/catalog/product/", [])
    assert resp.status_code == 405
