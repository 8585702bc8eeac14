"""Security headers on every answer, and the Host header checked against TRUSTED_HOSTS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.responses import PlainTextResponse, StreamingResponse
from fastapi.testclient import TestClient
from starlette.middleware.base import BaseHTTPMiddleware

from api_fixtures import OPERATOR
from haggler.api import security
from haggler.api.app import create_app
from haggler.config import Settings

POLICY = security.content_security_policy()


def small_app(trusted_hosts: tuple[str, ...] = ("testserver",)) -> FastAPI:
    app = FastAPI()

    @app.get("/json")
    async def json_answer() -> dict[str, int]:
        return {"answer": 42}

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(404, "no such thing")

    @app.get("/number/{n}")
    async def number(n: int) -> int:
        return n

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"chunk {i}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/own-policy")
    async def own_policy() -> PlainTextResponse:
        return PlainTextResponse("x", headers={"Content-Security-Policy": "default-src 'none'"})

    security.install(app, Settings(trusted_hosts=trusted_hosts))
    return app


def assert_secured(headers: Mapping[str, str]) -> None:
    assert headers.get("content-security-policy") == POLICY
    assert headers.get("x-content-type-options") == "nosniff"
    assert headers.get("referrer-policy") == "same-origin"
    assert headers.get("x-frame-options") == "DENY"


def test_the_policy_allows_the_app_itself_only() -> None:
    directives = dict(d.split(" ", 1) for d in POLICY.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no inline script, no eval
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "http" not in POLICY and "*" not in POLICY
    hashed = security.content_security_policy(script_src=["'sha256-abc='"])
    assert "script-src 'self' 'sha256-abc='" in hashed


@pytest.mark.parametrize(
    ("path", "status"),
    [("/json", 200), ("/missing", 404), ("/number/x", 422), ("/nowhere", 404), ("/stream", 200)],
)
def test_every_answer_carries_the_headers(path: str, status: int) -> None:
    with TestClient(small_app()) as client:
        response = client.get(path)
    assert response.status_code == status
    assert_secured(response.headers)
    # Each header once, whatever the route set.
    assert len(response.headers.get_list("content-security-policy")) == 1
    if path == "/stream":
        assert response.text == "chunk 0\nchunk 1\nchunk 2\n"


def test_a_route_may_set_its_own_policy() -> None:
    with TestClient(small_app()) as client:
        response = client.get("/own-policy")
    assert response.headers.get_list("content-security-policy") == ["default-src 'none'"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_middleware_is_plain_asgi() -> None:
    # BaseHTTPMiddleware runs each request in a task of its own and buffers what it cannot
    # stream; the move route's latency and the event stream must not pay for either.
    assert not issubclass(security.SecurityHeaders, BaseHTTPMiddleware)


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("localhost", 200),
        ("LOCALHOST:8000", 200),
        ("127.0.0.1:8000", 200),
        ("[::1]:8000", 200),
        ("evil.example", 400),
        ("localhost.evil.example", 400),
        ("127.0.0.2", 400),
        ("", 400),
    ],
)
def test_only_the_trusted_hosts_are_answered(host: str, status: int) -> None:
    with TestClient(small_app(Settings().trusted_hosts)) as client:  # the defaults
        response = client.get("/json", headers={"Host": host})
    assert response.status_code == status, host
    assert_secured(response.headers)  # the refusal too
    if status == 400:
        assert "Invalid host header" in response.text


def test_trusted_hosts_may_name_a_domain_or_turn_the_check_off() -> None:
    with TestClient(small_app(("*.example.com",))) as client:
        assert client.get("/json", headers={"Host": "api.example.com"}).status_code == 200
        assert client.get("/json", headers={"Host": "example.org"}).status_code == 400
    with TestClient(small_app(("*",))) as client:
        assert client.get("/json", headers={"Host": "anything.example"}).status_code == 200


def test_the_service_sends_the_headers_on_pages_files_and_events(settings: Settings) -> None:
    app = create_app(settings)
    if not any(m.cls is security.SecurityHeaders for m in app.user_middleware):
        security.install(app, settings)  # until create_app installs them itself
    with TestClient(app, headers=OPERATOR) as client:
        plotly = app.url_path_for("plotly_js")
        for path in ("/login", "/static/app.css", plotly, "/api/products"):
            response = client.get(path)
            assert response.status_code == 200, path
            assert_secured(response.headers)
        assert client.get("/api/products", headers={"Host": "evil.example"}).status_code == 400
        with client.stream("GET", "/api/events") as events:
            assert events.status_code == 200
            assert_secured(events.headers)
            assert next(events.iter_lines()).startswith("event: update")
