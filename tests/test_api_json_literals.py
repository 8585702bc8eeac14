"""JSON's NaN and Infinity literals and control characters: a 422 that says what is wrong, never
a 500, and nothing stored."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api_fixtures import OPERATOR

JSON = {"Content-Type": "application/json"}

BODIES = [
    (
        "/api/negotiations",
        '{"product_id": 1, "quantity": 1, "max_unit_price": NaN, "seller": {"kind": "simulated"}}',
    ),
    (
        "/api/negotiations",
        '{"product_id": 1, "quantity": 1, "max_unit_price": "100",'
        ' "seller": {"kind": "simulated", "seed": Infinity}}',
    ),
    (
        "/api/negotiations",
        '{"product_id": 1, "quantity": 1, "max_unit_price": "100",'
        ' "seller": {"kind": "external", "asking_price": -Infinity}}',
    ),
    ("/api/sell", '{"product_id": 1, "asking_price": NaN}'),
    ("/api/products", '{"name": "Gloves", "category": "safety", "list_price": Infinity}'),
]


@pytest.mark.parametrize(("path", "body"), BODIES)
def test_a_non_finite_json_literal_is_a_422_and_stores_nothing(
    client: TestClient, path: str, body: str
) -> None:
    negotiations = client.get("/api/negotiations").json()
    products = client.get("/api/products").json()
    response = client.post(path, content=body, headers={**JSON, **OPERATOR})
    assert response.status_code == 422, response.text
    assert "finite" in response.text
    assert client.get("/api/negotiations").json() == negotiations
    assert client.get("/api/products").json() == products


def test_a_nul_byte_in_a_checkpoint_name_is_a_422(client: TestClient) -> None:
    before = client.get("/api/training").json()
    response = client.post(
        "/api/checkpoints/restore", json={"checkpoint": "a\u0000b.pth"}, headers=OPERATOR
    )
    assert response.status_code == 422
    assert "control characters" in response.json()["detail"][0]["msg"]
    assert client.get("/api/training").json()["model_version"] == before["model_version"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/api/negotiations",
            b'{"product_id": 1, "product_id": 2, "max_unit_price": "200", '
            b'"seller": {"kind": "simulated"}}',
        ),
        (
            "/api/negotiations",
            b'{"product_id": 1, "max_unit_price": "200", '
            b'"seller": {"kind": "simulated", "kind": "external"}}',
        ),
        ("/api/products", b'{"name": "Desk", "name": "Chair", "category": "x", "list_price": "9"}'),
    ],
)
def test_a_key_given_twice_is_refused_and_changes_nothing(
    client: TestClient, path: str, body: bytes
) -> None:
    before = (client.get("/api/negotiations").json()["total"], client.get("/api/products").text)
    refused = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert refused.status_code == 422
    assert "given twice" in refused.json()["detail"][0]["msg"]
    after = (client.get("/api/negotiations").json()["total"], client.get("/api/products").text)
    assert after == before


def test_a_seller_move_with_a_key_given_twice_is_refused(
    client: TestClient, start_external: Any
) -> None:
    negotiation_id, seller, started = start_external()
    refused = client.post(
        f"/api/negotiations/{negotiation_id}/moves",
        content=b'{"move": "counter", "price": "300", "move": "accept"}',
        headers={**seller, "Content-Type": "application/json"},
    )
    assert refused.status_code == 422 and "'move'" in refused.json()["detail"][0]["msg"]
    view = client.get(f"/api/negotiations/{negotiation_id}/seller", headers=seller).json()
    assert view["transcript"] == started["negotiation"]["transcript"]


@pytest.mark.parametrize("name", ["a\x00b", "tab\there", " ", "x" * 201])
def test_control_characters_and_over_long_names_get_a_422(client: TestClient, name: str) -> None:
    body = {"name": name, "category": "office", "list_price": "10"}
    assert client.post("/api/products", json=body).status_code == 422
    signin = client.post("/api/session", json={"name": name[:50], "password": "whatever-x"})
    assert signin.status_code in (401, 422)
