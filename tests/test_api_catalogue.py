"""The product catalogue over HTTP."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from haggler.core.catalogue import SEED_CATALOGUE


def test_a_fresh_store_is_seeded_with_the_catalogue(client: TestClient) -> None:
    products = client.get("/api/products").json()
    assert [p["name"] for p in products] == [p.name for p in SEED_CATALOGUE]
    assert products[0]["list_price"] == "289.00"


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
