"""Negotiations over HTTP: simulated personas, external sellers, reading and listing."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api_fixtures import NOBODY
from haggler.config import Settings


def test_a_simulated_negotiation_runs_to_its_end_in_one_call(
    client: TestClient, start_external: Any
) -> None:
    response = client.post(
        "/api/negotiations",
        json={
            "product_id": 1,
            "quantity": 5,
            "max_unit_price": "270.00",
            "max_rounds": 8,
            "seller": {"kind": "simulated", "strategy": "tit_for_tat", "seed": 3},
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "finished"
    assert body["transcript"][0]["party"] == "seller"
    assert body["result"]["rounds"] <= 8
    if body["result"]["outcome"] == "deal":
        assert Decimal(body["result"]["deal_price"]) <= Decimal("270.00")
        saving = Decimal("289.00") - Decimal(body["result"]["deal_price"])
        assert Decimal(body["result"]["savings_total"]) == saving * 5
    assert client.get(f"/api/negotiations/{body['id']}").json() == body


def test_the_same_persona_seed_gives_the_same_opening(
    client: TestClient, start_external: Any
) -> None:
    request = {
        "product_id": 2,
        "max_unit_price": "400.00",
        "seller": {"kind": "simulated", "strategy": "boulware", "seed": 11},
    }
    first = client.post("/api/negotiations", json=request).json()
    second = client.post("/api/negotiations", json=request).json()
    assert first["transcript"][0] == second["transcript"][0]


def test_an_external_seller_plays_a_whole_negotiation(
    client: TestClient, start_external: Any
) -> None:
    negotiation_id, seller, body = start_external()
    view = body["negotiation"]
    assert view["to_move"] == "seller"
    assert [t["party"] for t in view["transcript"]] == ["seller", "buyer"]
    assert "max_unit_price" not in view and "270" not in str(view)
    offer = Decimal(view["transcript"][-1]["price"])
    assert offer <= Decimal("270.00")

    moved = client.post(
        f"/api/negotiations/{negotiation_id}/moves",
        json={"move": "counter", "price": "300.00"},
        headers=seller,
    )
    assert moved.status_code == 200, moved.text
    transcript = moved.json()["transcript"]
    assert transcript[-2] == {"party": "seller", "move": "counter", "price": "300.00", "round": 1}
    if moved.json()["status"] == "open":
        accepted = client.post(
            f"/api/negotiations/{negotiation_id}/moves", json={"move": "accept"}, headers=seller
        )
        assert accepted.status_code == 200
        assert accepted.json()["outcome"] == "deal"
        assert Decimal(accepted.json()["deal_price"]) <= Decimal("270.00")
    purchaser = client.get(f"/api/negotiations/{negotiation_id}").json()
    assert purchaser["status"] == "finished"
    assert purchaser["max_unit_price"] == "270.00"


def test_a_seller_can_walk_away(client: TestClient, start_external: Any) -> None:
    negotiation_id, seller, _ = start_external()
    response = client.post(
        f"/api/negotiations/{negotiation_id}/moves", json={"move": "walk_away"}, headers=seller
    )
    assert response.json()["outcome"] == "seller_walked"
    assert (
        client.get(f"/api/negotiations/{negotiation_id}").json()["result"]["outcome"]
        == "seller_walked"
    )


@pytest.mark.parametrize(
    "price",
    [
        "0",
        "-5",
        "0.00",
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "99999999999999",
        "ten",
        "",
        None,
        "1.234",
    ],
)
def test_a_bad_price_is_a_4xx_and_changes_nothing(
    client: TestClient, start_external: Any, price: object
) -> None:
    negotiation_id, seller, _ = start_external()
    before = client.get(f"/api/negotiations/{negotiation_id}").json()
    response = client.post(
        f"/api/negotiations/{negotiation_id}/moves",
        json={"move": "counter", "price": price},
        headers=seller,
    )
    assert 400 <= response.status_code < 500
    assert response.json()["detail"]
    assert client.get(f"/api/negotiations/{negotiation_id}").json() == before


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{not json", None),
        (b"", None),
        (b'{"price": "300.00"}', "move"),
        (b'{"move": "haggle"}', "move"),
        (b'{"move": "accept", "note": "hi"}', "note"),
        (b'["accept"]', None),
    ],
)
def test_a_malformed_move_is_a_422_naming_the_field_and_changes_nothing(
    client: TestClient, start_external: Any, raw: bytes, field: str | None
) -> None:
    negotiation_id, seller, _ = start_external()
    before = client.get(f"/api/negotiations/{negotiation_id}").json()
    response = client.post(
        f"/api/negotiations/{negotiation_id}/moves",
        content=raw,
        headers={**seller, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    problems = response.json()["detail"]
    assert problems and all(problem["loc"][0] == "body" for problem in problems)
    if field is not None:
        assert any(field in problem["loc"] for problem in problems)
    assert client.get(f"/api/negotiations/{negotiation_id}").json() == before


def test_moves_out_of_turn_after_the_end_or_with_the_wrong_token_are_refused(
    client: TestClient, start_external: Any
) -> None:
    first, seller, _ = start_external()
    second, other_seller, _ = start_external()
    url = f"/api/negotiations/{first}/moves"
    assert client.post(url, json={"move": "accept"}, headers=NOBODY).status_code == 401
    # Its purchaser (here an operator) reads the negotiation but never moves for the seller.
    assert client.post(url, json={"move": "accept"}).status_code == 403
    assert (
        client.post(
            url, json={"move": "accept"}, headers={"Authorization": "Bearer nope"}
        ).status_code
        == 403
    )
    assert client.post(url, json={"move": "accept"}, headers=other_seller).status_code == 403
    assert (
        client.post(
            "/api/negotiations/9999/moves", json={"move": "accept"}, headers=seller
        ).status_code
        == 404
    )
    client.post(url, json={"move": "walk_away"}, headers=seller)
    finished = client.get(f"/api/negotiations/{first}").json()
    again = client.post(url, json={"move": "accept"}, headers=seller)
    assert again.status_code == 409
    assert "over" in again.json()["detail"]
    assert client.get(f"/api/negotiations/{first}").json() == finished
    # A counter at or below the buyer's offer is refused: accept it instead.
    view = client.get(f"/api/negotiations/{second}").json()
    low = view["transcript"][-1]["price"]
    refused = client.post(
        f"/api/negotiations/{second}/moves",
        json={"move": "counter", "price": low},
        headers=other_seller,
    )
    assert refused.status_code == 409
    assert client.get(f"/api/negotiations/{second}").json() == view


@pytest.mark.parametrize(
    "body",
    [
        {"product_id": 999, "max_unit_price": "10", "seller": {"kind": "simulated"}},
        {"product_id": 1, "max_unit_price": "0", "seller": {"kind": "simulated"}},
        {"product_id": 1, "max_unit_price": "10", "max_rounds": 0, "seller": {"kind": "simulated"}},
        {
            "product_id": 1,
            "max_unit_price": "10",
            "seller": {"kind": "simulated", "strategy": "nobody"},
        },
        {"product_id": 1, "max_unit_price": "10", "seller": {"kind": "external"}},
        {
            "product_id": 1,
            "max_unit_price": "10",
            "seller": {"kind": "external", "asking_price": "NaN"},
        },
        {"product_id": 1, "max_unit_price": "10", "quantity": 0, "seller": {"kind": "simulated"}},
        {"product_id": 1, "max_unit_price": "10"},
    ],
)
def test_a_bad_start_is_a_4xx_and_creates_nothing(
    client: TestClient, start_external: Any, body: dict[str, Any]
) -> None:
    response = client.post("/api/negotiations", json=body)
    assert 400 <= response.status_code < 500
    assert client.get("/api/negotiations").json()["total"] == 0


def test_listing_filters_and_pages(client: TestClient, start_external: Any) -> None:
    for seed in range(3):
        client.post(
            "/api/negotiations",
            json={
                "product_id": 1,
                "max_unit_price": "280",
                "seller": {"kind": "simulated", "strategy": "linear", "seed": seed},
            },
        )
    start_external()
    page = client.get("/api/negotiations", params={"limit": 2}).json()
    assert page["total"] == 4 and len(page["items"]) == 2
    assert page["items"][0]["id"] > page["items"][1]["id"]
    assert client.get("/api/negotiations", params={"status": "open"}).json()["total"] == 1
    assert client.get("/api/negotiations", params={"seller": "linear"}).json()["total"] == 3
    assert client.get("/api/negotiations", params={"limit": 0}).status_code == 422
    assert client.get("/api/negotiations/424242").status_code == 404


def test_the_purchasers_views_say_the_currency_of_their_prices(
    client: TestClient, settings: Settings
) -> None:
    played = client.post(
        "/api/negotiations",
        json={"product_id": 1, "max_unit_price": "280", "seller": {"kind": "simulated"}},
    ).json()
    assert played["currency"] == settings.currency == "EUR"
    assert client.get(f"/api/negotiations/{played['id']}").json()["currency"] == "EUR"
    page = client.get("/api/negotiations").json()
    assert page["currency"] == "EUR"
    assert [item["currency"] for item in page["items"]] == ["EUR"]


def test_a_seller_who_disconnects_mid_body_gets_a_400_and_nothing_is_stored(
    client: TestClient, start_external: Any
) -> None:
    negotiation_id, seller, _ = start_external()
    before = client.get(f"/api/negotiations/{negotiation_id}").json()
    path = f"/api/negotiations/{negotiation_id}/moves"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"authorization", seller["Authorization"].encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(client.app(scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 400
    assert client.get(f"/api/negotiations/{negotiation_id}").json() == before


@pytest.mark.parametrize("raw_id", ["abc", "0", "-1", "99999999999", "1.5"])
def test_a_move_to_a_malformed_negotiation_id_is_a_422_naming_the_path(
    client: TestClient, raw_id: str
) -> None:
    response = client.post(f"/api/negotiations/{raw_id}/moves", json={"move": "accept"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "negotiation_id"]
