"""Lists page by key: a cursor walks every negotiation once, newest first, at any depth."""

from __future__ import annotations

from fastapi.testclient import TestClient

from test_api_operations import play


def test_a_cursor_walks_every_negotiation_once_newest_first(client: TestClient) -> None:
    ids = sorted((p["id"] for p in play(client, 5)), reverse=True)
    seen: list[int] = []
    before = None
    while True:
        query = {"limit": 2, **({"before": before} if before is not None else {})}
        page = client.get("/api/negotiations", params=query).json()
        assert (page["total"], page["total_exact"]) == (5, True)
        seen += [item["id"] for item in page["items"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == ids


def test_a_page_that_ends_the_list_has_no_next_cursor_even_when_full(client: TestClient) -> None:
    play(client, 4)
    first = client.get("/api/negotiations", params={"limit": 2}).json()
    assert first["next_before"] == first["items"][-1]["id"]
    last = client.get(
        "/api/negotiations", params={"limit": 2, "before": first["next_before"]}
    ).json()
    assert len(last["items"]) == 2
    assert last["next_before"] is None  # nothing older: no empty page to click through to


def test_a_filtered_list_counts_what_matches(client: TestClient) -> None:
    played = play(client, 4)
    deals = [p["id"] for p in played if p["result"]["outcome"] == "deal"]
    page = client.get("/api/negotiations", params={"outcome": "deal"}).json()
    assert (page["total"], page["total_exact"]) == (len(deals), True)
    assert [item["id"] for item in page["items"]] == sorted(deals, reverse=True)
    assert page["next_before"] is None


def test_a_bad_cursor_is_refused_with_a_message(client: TestClient) -> None:
    for bad in ("0", "-3", "x", "1.5"):
        response = client.get("/api/negotiations", params={"before": bad})
        assert response.status_code == 422, bad
        assert "before" in response.text
