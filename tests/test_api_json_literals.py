"""JSON's NaN and Infinity literals and control characters: a 422 that says what is wrong, never
a 500, and nothing stored."""

from __future__ import annotations

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
