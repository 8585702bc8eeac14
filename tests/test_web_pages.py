"""The web app's pages and files are served (no browser): pages, scripts, styles, the charting
library, the seller's start that keeps the buyer's limit on the server, the live-update state."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from api_fixtures import NOBODY
from haggler.api.routes.events import current_state
from haggler.store.accounts import Principal, Role

PAGES = ["/", "/negotiations", "/negotiations/1", "/sell", "/dashboard", "/accounts"]
SCRIPTS = ["common", "negotiate", "negotiations", "negotiation", "sell", "dashboard"]


PASSWORD = "operator password"


@pytest.fixture
def browser(client: TestClient) -> Iterator[TestClient]:
    """A browser signed in as an operator (who may open every page)."""
    created = client.post(
        "/api/accounts", json={"name": "olive", "role": "operator", "password": PASSWORD}
    )
    assert created.status_code == 201, created.text
    with TestClient(client.app, headers=NOBODY) as browser:
        signed_in = browser.post("/api/session", json={"name": "olive", "password": PASSWORD})
        assert signed_in.status_code == 200
        yield browser


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_served_with_the_navigation(
    client: TestClient, browser: TestClient, path: str
) -> None:
    played = client.post(
        "/api/negotiations",
        json={"product_id": 1, "max_unit_price": "250", "seller": {"kind": "simulated"}},
    )
    assert played.json()["id"] == 1  # the page /negotiations/1 shows
    response = browser.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    for link in ('href="/"', 'href="/negotiations"', 'href="/sell"', 'href="/dashboard"'):
        assert link in response.text
    assert '<script type="module" src="/static/' in response.text


def test_the_chart_library_scripts_and_styles_are_served_locally(client: TestClient) -> None:
    plotly = client.get(client.app.url_path_for("plotly_js"))  # type: ignore[attr-defined]
    assert plotly.status_code == 200
    assert plotly.headers["content-type"].startswith("text/javascript")
    assert "plotly.js (basic - minified) v" in plotly.text[:200]
    for script in SCRIPTS:
        response = client.get(f"/static/{script}.js")
        assert response.status_code == 200, script
        assert response.headers["content-type"].startswith("text/javascript"), script
    css = client.get("/static/app.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
"""What a browser asks for when it opens a page."""


def test_a_page_that_is_not_there_is_an_html_404_with_the_navigation(browser: TestClient) -> None:
    response = browser.get("/no-such-page", headers=HTML)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Page not found</h1>" in response.text
    assert "There is no page at /no-such-page." in response.text
    assert 'href="/negotiations"' in response.text  # the navigation of the signed-in account


def test_a_404_outside_the_pages_stays_json(browser: TestClient) -> None:
    for path in ("/api/nothing", "/api/negotiations/999", "/static/nothing.js", "/vendor/x.js"):
        response = browser.get(path, headers=HTML)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/json"), path
        assert "detail" in response.json(), path
    # A program that does not ask for HTML gets JSON for any address.
    plain = browser.get("/no-such-page", headers={"Accept": "application/json"})
    assert plain.status_code == 404
    assert plain.json() == {"detail": "Not Found"}


def test_a_signed_out_visitor_gets_the_404_page_with_a_way_to_sign_in(client: TestClient) -> None:
    response = client.get("/no-such-page", headers={**NOBODY, **HTML})
    assert response.status_code == 404
    assert 'href="/login"' in response.text
    assert 'href="/accounts"' not in response.text


@pytest.mark.parametrize("negotiation_id", ["999", "0", "abc", "99999999999999999999"])
def test_a_negotiation_page_for_no_negotiation_is_an_html_404(
    browser: TestClient, negotiation_id: str
) -> None:
    response = browser.get(f"/negotiations/{negotiation_id}", headers=HTML)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Negotiation not found</h1>" in response.text
    assert f"There is no negotiation {negotiation_id} among yours" in response.text
    assert 'href="/negotiations"' in response.text


def test_another_purchasers_negotiation_page_is_not_found(client: TestClient) -> None:
    for name in ("pia", "paul"):
        created = client.post(
            "/api/accounts", json={"name": name, "role": "purchaser", "password": PASSWORD}
        )
        assert created.status_code == 201, created.text
    with (
        TestClient(client.app, headers=NOBODY) as pia,
        TestClient(client.app, headers=NOBODY) as paul,
    ):
        csrf = {}
        for purchaser, name in ((pia, "pia"), (paul, "paul")):
            signed_in = purchaser.post("/api/session", json={"name": name, "password": PASSWORD})
            assert signed_in.status_code == 200
            csrf[name] = signed_in.json()["csrf_token"]
        started = pia.post(
            "/api/negotiations",
            json={"product_id": 1, "max_unit_price": "250", "seller": {"kind": "simulated"}},
            headers={"X-CSRF-Token": csrf["pia"]},
        )
        assert started.status_code == 201, started.text
        negotiation_id = started.json()["id"]
        assert pia.get(f"/negotiations/{negotiation_id}", headers=HTML).status_code == 200
        theirs = paul.get(f"/negotiations/{negotiation_id}", headers=HTML)
        assert theirs.status_code == 404
        assert "Negotiation not found" in theirs.text


def test_a_page_carries_the_currency_its_prices_are_in(browser: TestClient) -> None:
    assert '<meta name="currency" content="EUR">' in browser.get("/").text


def test_the_pages_are_not_in_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/sell" in paths
    assert not {"/", "/sell", "/dashboard", "/api/events"} & set(paths)


def test_a_seller_in_the_browser_never_gets_the_buyers_limit(client: TestClient) -> None:
    product = client.get("/api/products").json()[0]
    response = client.post(
        "/api/sell", json={"product_id": product["id"], "quantity": 3, "asking_price": "330.50"}
    )
    assert response.status_code == 201, response.text
    started = response.json()
    assert "max_unit_price" not in response.text
    assert started["negotiation"]["transcript"][0]["price"] == "330.50"
    negotiation_id = started["negotiation"]["id"]
    purchaser = client.get(f"/api/negotiations/{negotiation_id}").json()
    share = Decimal(purchaser["max_unit_price"]) / Decimal(product["list_price"])
    assert Decimal("0.69") <= share <= Decimal("0.96")
    assert started["negotiation"]["status"] == "open", started
    moved = client.post(
        f"/api/negotiations/{negotiation_id}/moves",
        json={"move": "walk_away"},
        headers={"Authorization": f"Bearer {started['seller_token']}"},
    )
    assert moved.json()["outcome"] == "seller_walked", moved.text


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"product_id": 1, "asking_price": "0"}, 422),
        ({"product_id": 1, "asking_price": "12.345"}, 422),
        ({"product_id": 1, "quantity": 0, "asking_price": "100"}, 422),
        ({"product_id": 1, "asking_price": "100", "max_unit_price": "90"}, 422),
        ({"product_id": 9999, "asking_price": "100"}, 404),
    ],
)
def test_bad_input_to_sell_creates_nothing(
    client: TestClient, body: dict[str, object], status: int
) -> None:
    assert client.post("/api/sell", json=body).status_code == status
    assert client.get("/api/negotiations").json()["total"] == 0


OPERATOR_PRINCIPAL = Principal(1, "operator", Role.OPERATOR)


def test_the_live_state_changes_when_a_negotiation_finishes(client: TestClient) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    before = current_state(runtime, OPERATOR_PRINCIPAL)
    assert before["negotiations"] == 0
    assert before["newest_id"] is None
    client.post(
        "/api/negotiations",
        json={"product_id": 1, "max_unit_price": "250", "seller": {"kind": "simulated"}},
    )
    after = current_state(runtime, OPERATOR_PRINCIPAL)
    assert after["negotiations"] == after["finished"] == 1
    assert after["newest_id"] == 1
    assert after["model_version"] == before["model_version"]


def test_the_live_state_follows_one_negotiations_moves(client: TestClient) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    assert current_state(runtime, OPERATOR_PRINCIPAL, 1)["negotiation"] == {
        "turns": None,
        "finished": None,
    }
    started = client.post("/api/sell", json={"product_id": 1, "asking_price": "330"}).json()
    opened = current_state(runtime, OPERATOR_PRINCIPAL, 1)["negotiation"]
    assert opened == {"turns": len(started["negotiation"]["transcript"]), "finished": False}
    client.post(
        "/api/negotiations/1/moves",
        json={"move": "walk_away"},
        headers={"Authorization": f"Bearer {started['seller_token']}"},
    )
    assert current_state(runtime, OPERATOR_PRINCIPAL, 1)["negotiation"] == {
        "turns": opened["turns"] + 1,
        "finished": True,
    }
    assert "negotiation" not in current_state(runtime, OPERATOR_PRINCIPAL)
