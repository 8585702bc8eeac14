"""Accounts and roles over HTTP: every route refuses the signed-out (401) and the wrong role
(403), another's negotiation is as if there were none (404), refused requests change nothing, and
no seller can read the buyer's limit. Browser sessions need the page's CSRF token; seller moves
are idempotent by key and refused when they answer a transcript that moved on."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api_fixtures import NOBODY, OPERATOR
from haggler.api.deps import CSRF_HEADER, SESSION_COOKIE
from haggler.api.routes.events import current_state
from haggler.store import accounts
from haggler.store.accounts import Principal, Role

PASSWORD = "correct horse battery"


@dataclass
class World:
    """Accounts with a token each, and one external-seller negotiation of alice's with shop."""

    tokens: dict[str, dict[str, str]]
    negotiation: int
    seller_token: dict[str, str]
    limit: str = "263.17"


@pytest.fixture
def world(client: TestClient) -> World:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    tokens = {}
    with runtime.sessions() as session:
        for name, role, purchaser in (
            ("alice", Role.PURCHASER, None),
            ("bob", Role.PURCHASER, None),
            ("shop", Role.SELLER, "alice"),
            ("rival", Role.SELLER, "bob"),
        ):
            accounts.create_account(name, role, session=session, purchaser=purchaser)
            _, secret = accounts.issue_token(name, "test", session=session)
            tokens[name] = {"Authorization": f"Bearer {secret}"}
        session.commit()
    started = client.post(
        "/api/negotiations",
        headers=tokens["alice"],
        json={
            "product_id": 1,
            "max_unit_price": World.limit,
            "seller": {"kind": "external", "asking_price": "320.00", "account": "shop"},
        },
    )
    assert started.status_code == 201, started.text
    body = started.json()
    seller_token = {"Authorization": f"Bearer {body['seller_token']}"}
    return World(tokens, body["negotiation"]["id"], seller_token)


# Who may call each route. Every route of the API must be here: a new one fails
# test_every_route_is_in_the_matrix until someone decides who may call it.
PUBLIC = "public"
ANY = "any signed-in account"
BUYING = "purchasers and operators"
SELLING = "sellers and operators"
SELLER_PARTY = "the negotiation's seller (its token or account); its purchaser reads"
OPERATORS = "operators"
MATRIX: dict[tuple[str, str], str] = {
    ("POST", "/api/session"): PUBLIC,
    ("DELETE", "/api/session"): PUBLIC,
    ("GET", "/api/me"): ANY,
    ("GET", "/api/products"): ANY,
    ("POST", "/api/products"): OPERATORS,
    ("PATCH", "/api/products/{product_id}"): OPERATORS,
    ("POST", "/api/products/{product_id}/archive"): OPERATORS,
    ("GET", "/api/accounts"): OPERATORS,
    ("POST", "/api/accounts"): OPERATORS,
    ("PUT", "/api/accounts/{name}/disabled"): OPERATORS,
    ("GET", "/api/tokens"): OPERATORS,
    ("POST", "/api/accounts/{name}/tokens"): OPERATORS,
    ("DELETE", "/api/tokens/{token_id}"): OPERATORS,
    ("GET", "/api/negotiations"): BUYING,
    ("POST", "/api/negotiations"): BUYING,
    ("GET", "/api/negotiations/{negotiation_id}"): BUYING,
    ("POST", "/api/negotiations/{negotiation_id}/moves"): SELLER_PARTY,
    ("GET", "/api/negotiations/{negotiation_id}/seller"): SELLER_PARTY,
    ("POST", "/api/sell"): SELLING,
    ("GET", "/api/sell/negotiations"): SELLING,
    ("GET", "/api/summary"): OPERATORS,
    ("GET", "/api/training"): OPERATORS,
    ("PUT", "/api/training"): OPERATORS,
    ("GET", "/api/training/history"): OPERATORS,
    ("GET", "/api/models"): OPERATORS,
    ("GET", "/api/metrics/negotiations"): OPERATORS,
    ("GET", "/api/checkpoints"): OPERATORS,
    ("POST", "/api/checkpoints/restore"): OPERATORS,
    ("GET", "/api/safety"): OPERATORS,
    ("GET", "/api/safety/events"): OPERATORS,
    ("GET", "/api/ab-tests"): OPERATORS,
    ("POST", "/api/ab-tests"): OPERATORS,
    ("GET", "/api/ab-tests/{test_id}"): OPERATORS,
    ("POST", "/api/ab-tests/{test_id}/decision"): OPERATORS,
    ("POST", "/api/models/{version}/evaluate"): OPERATORS,
    ("GET", "/metrics"): OPERATORS,
}
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/products"): {"name": "Desk lamp", "category": "Office", "list_price": "40"},
    ("POST", "/api/accounts"): {"name": "mallory", "role": "operator", "password": PASSWORD},
    ("PUT", "/api/accounts/{name}/disabled"): {"disabled": True},
    ("PATCH", "/api/products/{product_id}"): {"list_price": "1.00"},
    ("POST", "/api/accounts/{name}/tokens"): {"label": "stolen"},
    ("POST", "/api/negotiations"): {
        "product_id": 1,
        "max_unit_price": "250",
        "seller": {"kind": "simulated", "seed": 3},
    },
    ("POST", "/api/negotiations/{negotiation_id}/moves"): {"move": "walk_away"},
    ("POST", "/api/sell"): {"product_id": 1, "asking_price": "330"},
    ("PUT", "/api/training"): {"enabled": True},
    ("POST", "/api/checkpoints/restore"): {"checkpoint": "x.pth"},
    ("POST", "/api/ab-tests"): {"challenger_version": 1, "split": 0.2},
    ("POST", "/api/ab-tests/{test_id}/decision"): {"decision": "promote", "reason": "x"},
}


def _routes(client: TestClient) -> list[tuple[str, str]]:
    schema = client.app.openapi()  # type: ignore[attr-defined]
    return [(method.upper(), path) for path, ops in schema["paths"].items() for method in ops]


def _call(
    client: TestClient, method: str, path: str, headers: dict[str, str], negotiation: int
) -> Any:
    url = (
        path.replace("{negotiation_id}", str(negotiation))
        .replace("{name}", "alice")
        .replace("{token_id}", "1")
        .replace("{product_id}", "1")
        .replace("{test_id}", "1")
        .replace("{version}", "1")
    )
    return client.request(method, url, headers=headers, json=BODIES.get((method, path)))


def _everything(client: TestClient) -> str:
    """What an operator sees of the store: any change a refused request made shows here."""
    parts = [
        client.get(url, headers=OPERATOR).text
        for url in (
            "/api/negotiations?limit=200",
            "/api/products",
            "/api/accounts",
            "/api/tokens",
            "/api/training",
            "/api/ab-tests",
        )
    ]
    return re.sub(r'"update_delay_median_s":[^,]*', "", "\n".join(parts))


def test_every_route_is_in_the_matrix(client: TestClient) -> None:
    assert sorted(_routes(client)) == sorted(MATRIX)


def test_every_route_refuses_the_signed_out_and_the_wrong_role_and_changes_nothing(
    client: TestClient, world: World
) -> None:
    before = _everything(client)
    refused_roles = {
        ANY: (),
        BUYING: ("shop",),
        SELLING: ("alice",),
        OPERATORS: ("alice", "shop"),
        SELLER_PARTY: (),
        PUBLIC: (),
    }
    for method, path in _routes(client):
        who = MATRIX[(method, path)]
        if who != PUBLIC:
            response = _call(client, method, path, NOBODY, world.negotiation)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            # An unknown token: on a seller's route it may be another negotiation's seller token.
            revoked = {"Authorization": "Bearer hgl_not-a-token"}
            response = _call(client, method, path, revoked, world.negotiation)
            expected = 403 if who == SELLER_PARTY else 401
            assert response.status_code == expected, (method, path, response.text)
        for name in refused_roles[who]:
            response = _call(client, method, path, world.tokens[name], world.negotiation)
            assert response.status_code == 403, (method, path, name, response.text)
            assert name in response.json()["detail"]
    assert _everything(client) == before


def test_another_purchasers_or_sellers_negotiation_is_as_if_there_were_none(
    client: TestClient, world: World
) -> None:
    before = _everything(client)
    n = world.negotiation
    bob, rival = world.tokens["bob"], world.tokens["rival"]
    for method, path, headers in (
        ("GET", f"/api/negotiations/{n}", bob),
        ("GET", f"/api/negotiations/{n}/seller", bob),
        ("GET", f"/api/negotiations/{n}/seller", rival),
        ("POST", f"/api/negotiations/{n}/moves", rival),
    ):
        body = {"move": "walk_away"} if method == "POST" else None
        response = client.request(method, path, headers=headers, json=body)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["detail"] == f"no negotiation {n}"
    assert client.get("/api/negotiations", headers=bob).json()["total"] == 0
    assert client.get("/api/sell/negotiations", headers=rival).json()["total"] == 0
    # The purchaser reads its own, but never moves for the seller.
    assert client.get(f"/api/negotiations/{n}", headers=world.tokens["alice"]).status_code == 200
    own = client.post(
        f"/api/negotiations/{n}/moves", headers=world.tokens["alice"], json={"move": "accept"}
    )
    assert own.status_code == 403
    assert _everything(client) == before


def test_the_seller_party_moves_by_its_account_or_by_the_negotiations_token(
    client: TestClient, world: World
) -> None:
    n = world.negotiation
    shop = world.tokens["shop"]
    listed = client.get("/api/sell/negotiations", headers=shop).json()
    assert [item["id"] for item in listed["items"]] == [n]
    view = client.get(f"/api/negotiations/{n}/seller", headers=world.seller_token).json()
    assert view == client.get(f"/api/negotiations/{n}/seller", headers=shop).json()
    assert view == client.get(f"/api/negotiations/{n}/seller", headers=OPERATOR).json()
    assert view["rounds_left"] == view["max_rounds"] - 1
    moved = client.post(
        f"/api/negotiations/{n}/moves", headers=shop, json={"move": "counter", "price": "310"}
    )
    assert moved.status_code == 200, moved.text
    assert len(moved.json()["transcript"]) == len(view["transcript"]) + 2


def _texts_a_seller_gets(client: TestClient, world: World) -> list[str]:
    n = world.negotiation
    texts = []
    for headers in (world.seller_token, world.tokens["shop"]):
        texts.append(client.get(f"/api/negotiations/{n}/seller", headers=headers).text)
        texts.append(client.get(f"/api/negotiations/{n}", headers=headers).text)
        texts.append(client.get("/api/negotiations", headers=headers).text)
        texts.append(client.get("/api/sell/negotiations", headers=headers).text)
        texts.append(client.get("/api/summary", headers=headers).text)
        texts.append(client.get("/metrics", headers=headers).text)
        # Errors too: a counter below the buyer's offer, far above, a bad price, out of turn.
        for body in (
            {"move": "counter", "price": "1.00"},
            {"move": "counter", "price": "0"},
            {"move": "counter", "price": "9999999"},
            {"move": "counter"},
        ):
            texts.append(
                client.post(f"/api/negotiations/{n}/moves", headers=headers, json=body).text
            )
    return texts


def test_no_seller_ever_reads_the_buyers_limit(client: TestClient, world: World) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    texts = _texts_a_seller_gets(client, world)
    moved = client.post(
        f"/api/negotiations/{world.negotiation}/moves",
        headers=world.seller_token,
        json={"move": "counter", "price": "300"},
    )
    texts.append(moved.text)
    with runtime.sessions() as session:
        shop = accounts.get_account("shop", session=session)
    seller = Principal(shop.id, "shop", Role.SELLER, shop.purchaser_id)
    texts.append(json.dumps(current_state(runtime, seller, world.negotiation)))
    for text in texts:
        assert world.limit not in text and "263.1" not in text, text
        for secret in ("max_unit_price", "model_version", "reward", "propensity", '"arm"'):
            assert secret not in text, (secret, text)
    # The purchaser does read it.
    mine = client.get(f"/api/negotiations/{world.negotiation}", headers=world.tokens["alice"])
    assert mine.json()["max_unit_price"] == world.limit


def test_a_browser_session_needs_the_pages_csrf_token_for_changes(client: TestClient) -> None:
    created = client.post(
        "/api/accounts", json={"name": "carol", "role": "purchaser", "password": PASSWORD}
    )
    assert created.status_code == 201, created.text
    assert "password" not in created.text
    with TestClient(client.app, headers=NOBODY) as browser:
        wrong = browser.post("/api/session", json={"name": "carol", "password": "wrong-password"})
        assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong name or password"
        unknown = browser.post("/api/session", json={"name": "nobody", "password": PASSWORD})
        assert unknown.status_code == 401 and unknown.json() == wrong.json()
        signed_in = browser.post("/api/session", json={"name": "carol", "password": PASSWORD})
        assert signed_in.status_code == 200, signed_in.text
        cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        csrf = signed_in.json()["csrf_token"]
        assert browser.get("/api/me").json()["name"] == "carol"
        body = {"product_id": 1, "max_unit_price": "250", "seller": {"kind": "simulated"}}
        forged = browser.post("/api/negotiations", json=body)
        assert forged.status_code == 403 and CSRF_HEADER in forged.json()["detail"]
        assert browser.get("/api/negotiations").json()["total"] == 0
        made = browser.post("/api/negotiations", json=body, headers={CSRF_HEADER: csrf})
        assert made.status_code == 201, made.text
        assert browser.delete("/api/session", headers={CSRF_HEADER: csrf}).status_code == 204
        browser.cookies.set(SESSION_COOKIE, signed_in.cookies[SESSION_COOKIE])
        assert browser.get("/api/me").status_code == 401


def test_a_revoked_token_or_a_disabled_account_is_refused_at_once(
    client: TestClient, world: World
) -> None:
    issued = client.post("/api/accounts/bob/tokens", json={"label": "laptop"})
    assert issued.status_code == 201
    token = {"Authorization": f"Bearer {issued.json()['token']}"}
    assert client.get("/api/negotiations", headers=token).status_code == 200
    listed = client.get("/api/tokens").json()
    assert issued.json()["token"] not in json.dumps(listed)
    assert client.delete(f"/api/tokens/{issued.json()['id']}").json()["revoked"] is True
    assert client.get("/api/negotiations", headers=token).status_code == 401
    assert client.get("/api/negotiations", headers=world.tokens["bob"]).status_code == 200
    client.put("/api/accounts/bob/disabled", json={"disabled": True})
    assert client.get("/api/negotiations", headers=world.tokens["bob"]).status_code == 401
    assert client.put("/api/accounts/operator/disabled", json={"disabled": True}).status_code == 409
    own = next(t for t in client.get("/api/tokens").json() if t["label"] == "OPERATOR_TOKEN")
    assert client.delete(f"/api/tokens/{own['id']}").status_code == 409  # no self-lockout


def test_a_seller_without_a_purchaser_cannot_open_negotiations(client: TestClient) -> None:
    client.post("/api/accounts", json={"name": "lone", "role": "seller"})
    secret = client.post("/api/accounts/lone/tokens", json={}).json()["token"]
    refused = client.post(
        "/api/sell",
        headers={"Authorization": f"Bearer {secret}"},
        json={"product_id": 1, "asking_price": "330"},
    )
    assert refused.status_code == 409 and "no purchaser" in refused.json()["detail"]
    bad = client.post("/api/accounts", json={"name": "x", "role": "purchaser", "purchaser": "y"})
    assert bad.status_code == 422


def test_a_seller_account_sells_to_its_purchaser_with_a_limit_it_never_sees(
    client: TestClient, world: World
) -> None:
    started = client.post(
        "/api/sell", headers=world.tokens["shop"], json={"product_id": 1, "asking_price": "330"}
    )
    assert started.status_code == 201, started.text
    assert "max_unit_price" not in started.text
    n = started.json()["negotiation"]["id"]
    alice = client.get(f"/api/negotiations/{n}", headers=world.tokens["alice"]).json()
    assert 0.70 * 289 <= float(alice["max_unit_price"]) <= 0.95 * 289  # list price 289.00
    assert client.get(f"/api/negotiations/{n}", headers=world.tokens["bob"]).status_code == 404


def test_a_retried_move_gets_the_first_answer_and_applies_once(
    client: TestClient, world: World
) -> None:
    url = f"/api/negotiations/{world.negotiation}/moves"
    headers = {**world.seller_token, "Idempotency-Key": "move-1"}
    first = client.post(url, headers=headers, json={"move": "counter", "price": "305"})
    again = client.post(url, headers=headers, json={"move": "counter", "price": "305"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    other = client.post(url, headers=headers, json={"move": "counter", "price": "299"})
    assert other.status_code == 422 and "another move" in other.json()["detail"]
    view = client.get(f"/api/negotiations/{world.negotiation}/seller", headers=world.seller_token)
    assert view.json() == first.json()
    too_long = client.post(
        url, headers={**world.seller_token, "Idempotency-Key": "k" * 201}, json={"move": "accept"}
    )
    assert too_long.status_code == 422


def test_of_two_moves_answering_the_same_transcript_exactly_one_applies(
    client: TestClient, world: World
) -> None:
    url = f"/api/negotiations/{world.negotiation}/moves"
    seen = client.get(f"/api/negotiations/{world.negotiation}/seller", headers=world.seller_token)
    turns = len(seen.json()["transcript"])
    one = client.post(
        url,
        headers=world.seller_token,
        json={"move": "counter", "price": "310", "expected_turns": turns},
    )
    two = client.post(
        url,
        headers=world.seller_token,
        json={"move": "counter", "price": "305", "expected_turns": turns},
    )
    assert one.status_code == 200 and two.status_code == 409
    assert "moved on" in two.json()["detail"]
    after = client.get(f"/api/negotiations/{world.negotiation}/seller", headers=world.seller_token)
    assert after.json() == one.json()


def test_pages_send_the_signed_out_to_sign_in_and_say_whose_page_it_is(
    client: TestClient,
) -> None:
    with TestClient(client.app, headers=NOBODY, follow_redirects=False) as browser:
        page = browser.get("/dashboard")
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fdashboard"
        assert browser.get("/login").status_code == 200
        client.post(
            "/api/accounts", json={"name": "dora", "role": "purchaser", "password": PASSWORD}
        )
        signed_in = browser.post("/api/session", json={"name": "dora", "password": PASSWORD})
        assert browser.get("/").status_code == 200
        assert signed_in.json()["csrf_token"] in browser.get("/").text  # the page's CSRF token
        refused = browser.get("/dashboard")
        assert refused.status_code == 403 and "text/html" in refused.headers["content-type"]
        assert "for operators" in refused.text and "dora (purchaser)" in refused.text


def test_a_signed_in_seller_never_sees_the_limit_on_a_page(
    client: TestClient, world: World
) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.sessions() as session:
        accounts.set_password("shop", PASSWORD, session=session)
        session.commit()
    with TestClient(client.app, headers=NOBODY, follow_redirects=False) as browser:
        browser.post("/api/session", json={"name": "shop", "password": PASSWORD})
        assert browser.get("/").headers["location"] == "/sell"  # a seller's home
        assert browser.get("/sell").status_code == 200
        for page in ("/negotiations", f"/negotiations/{world.negotiation}", "/dashboard"):
            refused = browser.get(page)
            assert refused.status_code == 403, page
            assert world.limit not in refused.text
        seller_view = browser.get(f"/api/negotiations/{world.negotiation}/seller")
        assert seller_view.status_code == 200 and world.limit not in seller_view.text
