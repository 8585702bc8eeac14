"""Request limits (`haggler.api.limits`) on a tiny app of their own: the body's size, each
client's rate, and the event streams' places."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask
from starlette.types import Message

from haggler.api.limits import (
    SESSION_COOKIE,
    ClientStreamLimit,
    RequestLimits,
    ServerStreamLimit,
    StreamLimit,
    StreamSlots,
    TokenBuckets,
    client_key,
    credentials_verified,
)
from haggler.config import Settings

MAX_BODY = 2048


class Body(BaseModel):
    text: str


def limited_app(
    *, rate: float = 0.0, burst: int = 100, per_client: int = 2, total: int = 3
) -> tuple[FastAPI, list[str]]:
    """A FastAPI app behind the middleware, and the list of what its endpoints were called with."""
    settings = Settings(
        max_body_bytes=MAX_BODY,
        rate_limit_per_second=rate,
        rate_limit_burst=burst,
        max_streams_per_client=per_client,
        max_streams=total,
    )
    handled: list[str] = []
    app = FastAPI()
    app.state.slots = StreamSlots(settings.max_streams_per_client, settings.max_streams)

    @app.post("/echo")
    async def echo(body: Body) -> dict[str, int]:
        handled.append(body.text)
        return {"length": len(body.text)}

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        body = await request.body()
        handled.append("raw")
        return {"length": len(body)}

    @app.get("/ping")
    async def ping(request: Request) -> dict[str, bool]:
        if request.headers.get("authorization", "").startswith("Bearer real-"):
            credentials_verified(request.scope)  # as the service's sign-in does
        handled.append("ping")
        return {"ok": True}

    @app.get("/static/app.js")
    async def static_file() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/private")
    async def private() -> None:
        raise HTTPException(401, "unknown token")

    @app.post("/moves")
    async def move() -> None:
        raise HTTPException(403, "this seller token is not for this negotiation")

    @app.get("/operators-only")
    async def operators_only(request: Request) -> None:
        credentials_verified(request.scope)  # a known account, of another role
        raise HTTPException(403, "this needs an operator account")

    @app.api_route("/events", methods=["GET", "HEAD"])
    async def events(request: Request) -> EventSourceResponse:
        # The wiring of the service's /api/events route; HEAD as well, which sse-starlette
        # answers without ever starting the stream (so only the background task releases).
        try:
            slot = request.app.state.slots.acquire(client_key(request.scope))
        except StreamLimit as refused:
            raise HTTPException(
                refused.status_code,
                str(refused),
                headers={"Retry-After": str(refused.retry_after)},
            ) from None

        async def stream() -> AsyncIterator[ServerSentEvent]:
            try:
                for number in range(2):
                    yield ServerSentEvent(data=str(number), event="update")
            finally:
                slot.release()

        return EventSourceResponse(stream(), background=BackgroundTask(slot.release))

    app.add_middleware(RequestLimits, settings=settings)
    return app, handled


def token(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}"}


def test_a_body_over_the_cap_by_content_length_gets_a_413_and_is_not_handled() -> None:
    app, handled = limited_app()
    with TestClient(app) as client:
        response = client.post("/echo", json={"text": "x" * MAX_BODY})
        assert response.status_code == 413
        assert "larger than 2048 bytes" in response.json()["detail"]
        assert response.headers["connection"] == "close"
        assert handled == []
        assert client.post("/echo", json={"text": "x" * 100}).status_code == 200
        assert handled == ["x" * 100]


def test_a_chunked_body_that_grows_past_the_cap_gets_a_413_and_is_not_handled() -> None:
    app, handled = limited_app()

    def chunks(count: int) -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(count):
            yield b"x" * 512
        yield b'"}'

    with TestClient(app) as client:
        for path in ("/echo", "/raw"):  # FastAPI's body parsing, and a handler reading it
            response = client.post(
                path, content=chunks(8), headers={"Content-Type": "application/json"}
            )
            assert response.request.headers["transfer-encoding"] == "chunked"
            assert response.status_code == 413, response.text
            assert "larger than" in response.json()["detail"]
        assert handled == []
        small = client.post(
            "/echo", content=chunks(2), headers={"Content-Type": "application/json"}
        )
        assert small.status_code == 200
        assert handled == ["x" * 1024]


def test_a_chunked_body_is_counted_as_read_and_cut_off_at_the_cap() -> None:
    """At the ASGI level, on a plain app: the app reads no more once the body passes the cap."""
    chunk = {"type": "http.request", "body": b"x" * 512, "more_body": True}
    incoming = [chunk] * 10 + [{"type": "http.request", "body": b"", "more_body": False}]
    read: list[int] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            read.append(len(message["body"]))
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read it all"})

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "path": "/upload",
        "headers": [(b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 5000),
    }
    asyncio.run(RequestLimits(app, Settings(max_body_bytes=MAX_BODY))(scope, receive, send))
    assert read == [512] * 4  # 2,048 bytes allowed; the fifth chunk was refused, not returned
    assert sent[0]["status"] == 413
    assert b"larger than 2048 bytes" in sent[1]["body"]
    assert len(sent) == 2


def test_a_client_past_its_burst_gets_429_with_retry_after_and_others_are_served() -> None:
    app, handled = limited_app(rate=0.5, burst=3)
    with TestClient(app) as client:
        for _ in range(3):
            assert client.get("/ping", headers=token("a")).status_code == 200
        refused = client.get("/ping", headers=token("a"))
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 2  # a token every 2 s
        assert "Retry-After" in refused.json()["detail"]
        assert len(handled) == 3  # the refused request never reached the endpoint
        # Other clients: another token, a session cookie, no credentials (the address).
        assert client.get("/ping", headers=token("b")).status_code == 200
        client.cookies.set(SESSION_COOKIE, "s1")
        assert client.get("/ping").status_code == 200
        client.cookies.clear()
        assert client.get("/ping").status_code == 200
        # Files a page loads are not counted.
        for _ in range(5):
            assert client.get("/static/app.js", headers=token("a")).status_code == 200
        assert client.get("/ping", headers=token("a")).status_code == 429


def test_made_up_tokens_the_app_refuses_run_out_their_address() -> None:
    app, _ = limited_app(rate=0.5, burst=3)
    with TestClient(app) as client:
        assert client.get("/ping", headers=token("real-before")).status_code == 200
        assert client.get("/nowhere", headers=token("guess-0")).status_code == 404
        for attempt in range(3):
            assert client.get("/private", headers=token(f"guess-{attempt}")).status_code == 401
        refused = client.get("/private", headers=token("guess-3"))
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        # While the address is struck out: credentials the app has not verified wait, whatever
        # answer they got before (a 404 proves nothing); verified ones pass, and so do requests
        # without credentials (their own bucket).
        assert client.get("/ping", headers=token("guess-0")).status_code == 429
        assert client.get("/ping", headers=token("real-new")).status_code == 429
        assert client.get("/ping", headers=token("real-before")).status_code == 200
        assert client.get("/ping").status_code == 200


def test_refusals_of_known_accounts_do_not_charge_their_address() -> None:
    app, _ = limited_app(rate=0.5, burst=3)
    with TestClient(app) as client:
        for account in range(6):  # a 403 is a known account's: its own bucket limits it
            assert client.get("/operators-only", headers=token(f"a{account}")).status_code == 403
        assert client.get("/ping", headers=token("b")).status_code == 200


def test_unknown_seller_tokens_refused_with_403_strike_too() -> None:
    app, _ = limited_app(rate=0.5, burst=3)
    with TestClient(app) as client:
        for attempt in range(3):
            assert client.post("/moves", headers=token(f"seller-{attempt}")).status_code == 403
        assert client.post("/moves", headers=token("seller-3")).status_code == 429


def test_the_session_cookie_is_the_one_the_service_signs_in_with() -> None:
    from haggler.api import deps

    assert SESSION_COOKIE == deps.SESSION_COOKIE


def test_no_rate_limit_at_zero() -> None:
    app, _ = limited_app(rate=0.0, burst=1)
    with TestClient(app) as client:
        assert all(client.get("/ping").status_code == 200 for _ in range(20))


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=2, clients=2, clock=lambda: now[0])
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.wait("a") == pytest.approx(0.5)
    now[0] = 0.5
    assert buckets.take("a") == 0.0
    now[0] = 100.0  # long idle: back to the burst, not more
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]
    # Bounded: a third client pushes out the least recently seen, who starts full again.
    buckets.take("b")
    buckets.take("c")
    assert buckets.take("a") == 0.0


def test_stream_slots_per_client_and_in_total_and_released_on_exit() -> None:
    slots = StreamSlots(per_client=2, total=3)
    first = slots.acquire("a")
    with slots.acquire("a"):
        with pytest.raises(ClientStreamLimit) as too_many:
            slots.acquire("a")
        assert too_many.value.status_code == 429
        third = slots.acquire("b")
        with pytest.raises(ServerStreamLimit) as full:
            slots.acquire("c")
        assert full.value.status_code == 503
        assert full.value.retry_after >= 1
    assert slots.held_by("a") == 1
    with slots.acquire("c"):
        assert slots.open == 3
    first.release()
    first.release()  # once only
    third.release()
    assert slots.open == 0
    assert slots.held_by("a") == 0


def test_stream_route_gives_its_slot_back_when_the_stream_ends_or_is_a_head() -> None:
    app, _ = limited_app(per_client=1, total=1)
    slots: StreamSlots = app.state.slots
    with TestClient(app) as client:
        for method in ("GET", "HEAD", "GET"):
            response = client.request(method, "/events")
            assert response.status_code == 200
            assert slots.open == 0
        held = slots.acquire("address:other")
        refused = client.get("/events")
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "5"
        held.release()
        mine = slots.acquire(client_key({"headers": [], "client": ("testclient", 50000)}))
        assert client.get("/events").status_code == 429
        mine.release()


def measure_overhead(calls: int = 20_000) -> dict[str, float]:
    """Microseconds a request spends in the middleware (for the module's docstring)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def sink(message: Any) -> None:
        return None

    settings = Settings(rate_limit_per_second=1e9, rate_limit_burst=10**9)
    limited = RequestLimits(app, settings)
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"content-length", b"40"),
        (b"authorization", b"Bearer " + b"t" * 43),
    ]
    scope: dict[str, Any] = {
        "type": "http",
        "path": "/api/negotiations/1/moves",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
    }

    async def run(target: Any) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            await target(scope, None, sink)
        return (time.perf_counter() - start) / calls * 1e6

    bare = asyncio.run(run(app))
    return {"bare_us": bare, "limited_us": asyncio.run(run(limited))}


def test_the_middleware_costs_microseconds() -> None:
    costs = measure_overhead(5_000)
    assert costs["limited_us"] - costs["bare_us"] < 50  # 3-4 µs measured; generous for CI
