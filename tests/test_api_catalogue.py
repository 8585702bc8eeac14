"""The product catalogue over HTTP: listed (whole or by pages), added, edited and archived."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api_fixtures import StartExternal
from haggler.core.catalogue import SEED_CATALOGUE

SIGNED_OUT = {"Authorization": ""}
"""No credentials (the `client` fixture signs its requests in as an operator)."""


def names(products: list[dict[str, Any]]) -> list[str]:
    return [p["name"] for p in products]


def test_a_fresh_store_is_seeded_with_the_catalogue(client: TestClient) -> None:
    products = client.get("/api/products").json()
    assert names(products) == [p.name for p in SEED_CATALOGUE]
    assert products[0]["list_price"] == "289.00"
    assert products[0]["archived_at"] is None


def test_a_product_can_be_added_once(client: TestClient) -> None:
    body = {"name": "Pallet jack", "category": "warehouse", "list_price": "399.00"}
    created = client.post("/api/products", json=body)
    assert created.status_code == 201
    assert created.json()["list_price"] == "399.00"
    again = client.post("/api/products", json=body)
    assert again.status_code == 409
    assert "exists already" in again.json()["detail"]
    assert len(client.get("/api/products").json()) == len(SEED_CATALOGUE) + 1


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "category": "x", "list_price": "1.00"},
        {"name": "   ", "category": "x", "list_price": "1.00"},
        {"name": "A", "category": "x", "list_price": "0"},
        {"name": "A", "category": "x", "list_price": "NaN"},
        {"name": "A", "category": "x", "list_price": "1.001"},
        {"name": "A", "category": "x"},
        {"name": "A", "category": "x", "list_price": "1.00", "extra": 1},
    ],
)
def test_a_bad_product_is_a_4xx_and_adds_nothing(client: TestClient, body: dict) -> None:  # type: ignore[type-arg]
    response = client.post("/api/products", json=body)
    assert response.status_code == 422
    assert len(client.get("/api/products").json()) == len(SEED_CATALOGUE)


def test_only_an_operator_changes_the_catalogue(client: TestClient) -> None:
    before = client.get("/api/products", params={"include_archived": True}).json()
    body = {"name": "Pallet jack", "category": "warehouse", "list_price": "399.00"}
    for method, path, json in [
        ("POST", "/api/products", body),
        ("PATCH", "/api/products/1", {"list_price": "1.00"}),
        ("POST", "/api/products/1/archive", None),
    ]:
        response = client.request(method, path, json=json, headers=SIGNED_OUT)
        assert response.status_code == 401, (method, path, response.text)
    assert client.get("/api/products", params={"include_archived": True}).json() == before


def test_an_operator_edits_a_product(client: TestClient) -> None:
    changed = client.patch("/api/products/1", json={"list_price": "279.50"})
    assert changed.status_code == 200, changed.text
    assert changed.json() == {
        "id": 1,
        "name": SEED_CATALOGUE[0].name,
        "category": SEED_CATALOGUE[0].category,
        "list_price": "279.50",
        "archived_at": None,
    }
    renamed = client.patch(
        "/api/products/1", json={"name": "  Office chair, mesh  ", "category": "seating"}
    ).json()
    assert (renamed["name"], renamed["category"], renamed["list_price"]) == (
        "Office chair, mesh",
        "seating",
        "279.50",
    )
    assert client.get("/api/products").json()[0] == renamed
    # Its own name again is no conflict.
    assert client.patch("/api/products/1", json={"name": "Office chair, mesh"}).status_code == 200


def test_a_name_another_product_has_is_a_409_and_changes_nothing(client: TestClient) -> None:
    before = client.get("/api/products").json()
    response = client.patch(
        "/api/products/1", json={"name": SEED_CATALOGUE[1].name, "list_price": "1.00"}
    )
    assert response.status_code == 409
    assert "exists already" in response.json()["detail"]
    assert client.get("/api/products").json() == before


def test_editing_an_unknown_product_is_a_404(client: TestClient) -> None:
    response = client.patch("/api/products/999", json={"list_price": "1.00"})
    assert response.status_code == 404
    assert response.json()["detail"] == "no product 999"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": None},
        {"list_price": None},
        {"name": ""},
        {"name": "   "},
        {"category": ""},
        {"list_price": "0"},
        {"list_price": "-5.00"},
        {"list_price": "1.001"},
        {"list_price": "NaN"},
        {"list_price": "Infinity"},
        {"list_price": "1000000000.01"},
        {"list_price": "1.00", "id": 7},
        {"name": "x" * 201},
    ],
)
def test_a_bad_change_is_a_422_and_changes_nothing(
    client: TestClient,
    body: dict,  # type: ignore[type-arg]
) -> None:
    before = client.get("/api/products").json()
    response = client.patch("/api/products/1", json=body)
    assert response.status_code == 422, response.text
    assert client.get("/api/products").json() == before


@pytest.mark.parametrize("product_id", ["0", "-1", "abc", str(2**31)])
def test_a_bad_product_id_is_a_422(client: TestClient, product_id: str) -> None:
    assert client.patch(f"/api/products/{product_id}", json={"name": "A"}).status_code == 422
    assert client.post(f"/api/products/{product_id}/archive").status_code == 422


def test_a_new_list_price_applies_to_new_negotiations_only(
    client: TestClient, start_external: StartExternal
) -> None:
    def deal(negotiation_id: int, seller: dict[str, str], opened: dict[str, Any]) -> Any:
        """Accept the agent's offer (if it has not accepted already): a deal."""
        if opened["negotiation"]["status"] == "open":
            moved = client.post(
                f"/api/negotiations/{negotiation_id}/moves", json={"move": "accept"}, headers=seller
            )
            assert moved.status_code == 200, moved.text
        result = client.get(f"/api/negotiations/{negotiation_id}").json()["result"]
        assert result["outcome"] == "deal"
        return result

    before_id, before_seller, before_opened = start_external()
    assert client.patch("/api/products/1", json={"list_price": "500.00"}).status_code == 200
    after_id, after_seller, after_opened = start_external()

    old = deal(before_id, before_seller, before_opened)
    assert Decimal(old["savings_per_unit"]) == Decimal("289.00") - Decimal(old["deal_price"])
    new = deal(after_id, after_seller, after_opened)
    assert Decimal(new["savings_per_unit"]) == Decimal("500.00") - Decimal(new["deal_price"])


def test_an_archived_product_is_listed_only_on_request(client: TestClient) -> None:
    archived = client.post("/api/products/2/archive")
    assert archived.status_code == 200, archived.text
    stamp = archived.json()["archived_at"]
    assert stamp is not None
    assert SEED_CATALOGUE[1].name not in names(client.get("/api/products").json())
    everything = client.get("/api/products", params={"include_archived": True}).json()
    assert names(everything) == [p.name for p in SEED_CATALOGUE]
    assert [p["id"] for p in everything if p["archived_at"] is not None] == [2]
    # Archiving again changes nothing; an archived product can still be edited.
    assert client.post("/api/products/2/archive").json()["archived_at"] == stamp
    edited = client.patch("/api/products/2", json={"list_price": "399.00"}).json()
    assert (edited["list_price"], edited["archived_at"]) == ("399.00", stamp)


def test_archiving_an_unknown_product_is_a_404(client: TestClient) -> None:
    assert client.post("/api/products/999/archive").status_code == 404


def test_the_catalogue_is_read_page_by_page(client: TestClient) -> None:
    client.post("/api/products/3/archive")
    seen: list[int] = []
    after: int | None = 0
    while after is not None:
        page = client.get("/api/products", params={"limit": 4, "after": after}).json()
        assert len(page["items"]) <= 4
        seen += [p["id"] for p in page["items"]]
        after = page["next"]
    assert seen == [p["id"] for p in client.get("/api/products").json()]
    assert 3 not in seen

    first = client.get("/api/products", params={"limit": 5}).json()
    assert [p["id"] for p in first["items"]] == [1, 2, 4, 5, 6]
    assert first["next"] == 6
    with_archived = client.get("/api/products", params={"limit": 3, "include_archived": True})
    assert [p["id"] for p in with_archived.json()["items"]] == [1, 2, 3]
    rest = client.get("/api/products", params={"after": 13}).json()
    assert ([p["id"] for p in rest["items"]], rest["next"]) == ([14], None)
    assert client.get("/api/products", params={"after": 99}).json() == {"items": [], "next": None}


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 201}, {"after": -1}, {"limit": "x"}, {"after": 2**31}]
)
def test_a_bad_page_is_a_422(client: TestClient, params: dict[str, Any]) -> None:
    assert client.get("/api/products", params=params).status_code == 422
