"""The API docs served with their own files: Swagger UI at /docs, Redoc at /redoc, the schema at
/openapi.json, nothing from elsewhere."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api_fixtures import NOBODY, OPERATOR
from haggler.api import docs, security
from haggler.api.app import create_app
from haggler.api.deps import require_principal
from haggler.config import Settings


def docs_app() -> FastAPI:
    app = FastAPI(title="haggler", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/api/answer", summary="The answer")
    async def answer() -> int:
        return 42

    docs.install(app)
    security.install(app, Settings(trusted_hosts=("testserver",)))
    # The docs are for signed-in accounts (test_the_docs_need_a_signed_in_account): here, anyone.
    app.dependency_overrides[require_principal] = lambda: None
    return app


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(docs_app()) as client:
        yield client


def test_the_docs_need_a_signed_in_account(settings: Settings) -> None:
    with TestClient(create_app(settings), headers=NOBODY) as client:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/assets/swagger-ui.css"):
            assert client.get(path).status_code == 401, path
        for who in (OPERATOR,):
            assert client.get("/openapi.json", headers=who).status_code == 200


def remote_urls(html: str) -> list[str]:
    """What a page would load from another site (links and script or style sources)."""
    return re.findall(r"""(?:src|href)=["'](https?://[^"']+)""", html)


def test_swagger_ui_is_served_with_its_own_files(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script src="/docs/assets/swagger-ui-bundle.js">' in page.text
    assert 'href="/docs/assets/swagger-ui.css"' in page.text
    assert "url: '/openapi.json'" in page.text
    assert '"validatorUrl": null' in page.text  # no badge from validator.swagger.io
    assert remote_urls(page.text) == []


def test_swagger_ui_may_run_its_own_start_up_script_and_no_other(client: TestClient) -> None:
    page = client.get("/docs")
    [script] = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert page.headers.get_list("content-security-policy") == [
        security.content_security_policy(script_src=[f"'sha256-{digest}'"])
    ]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_redoc_is_served_with_its_own_files(client: TestClient) -> None:
    page = client.get("/redoc")
    assert page.status_code == 200
    assert '<script src="/docs/assets/redoc.standalone.js">' in page.text
    assert 'spec-url="/openapi.json"' in page.text
    assert "fonts.googleapis.com" not in page.text
    assert remote_urls(page.text) == []
    # No inline script: the app's policy as it is.
    assert page.headers["content-security-policy"] == security.content_security_policy()


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
        ("redoc.standalone.js", "text/javascript"),
        ("favicon.png", "image/png"),
    ],
)
def test_the_files_come_from_the_package(client: TestClient, name: str, media_type: str) -> None:
    response = client.get(f"/docs/assets/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.headers["cache-control"] == "max-age=86400"
    assert len(response.content) > 1000


def test_redoc_fetches_nothing_from_the_internet(client: TestClient) -> None:
    bundle = client.get("/docs/assets/redoc.standalone.js").content
    original = (docs.ASSETS / "redoc.standalone.js").read_bytes()
    assert docs.REDOC_LOGO in original, "a new Redoc: look again for what it fetches"
    assert b"cdn.redoc.ly" not in bundle
    assert len(bundle) == len(original) - len(docs.REDOC_LOGO) + len(docs.EMPTY_IMAGE)


@pytest.mark.parametrize(
    "path", ["/docs/assets/core.py", "/docs/assets/..%2Fcore.py", "/docs/assets/../core.py"]
)
def test_nothing_else_is_served_from_the_package(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_the_schema_is_served_and_lists_no_docs_page(client: TestClient) -> None:
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    assert schema.json() == client.app.openapi()  # type: ignore[attr-defined]
    assert set(schema.json()["paths"]) == {"/api/answer"}


def test_fastapis_own_docs_routes_must_be_left_out() -> None:
    with pytest.raises(ValueError, match="docs_url=None, redoc_url=None, openapi_url=None"):
        docs.install(FastAPI())
