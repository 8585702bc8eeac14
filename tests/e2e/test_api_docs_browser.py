"""The API docs in Chromium, under the app's Content-Security-Policy and with nothing to fetch from
the internet: Swagger UI lists and opens the operations, Redoc renders and searches, no page logs
an error (a file, script, style or worker the policy blocked would log one) and no request leaves
the server.

The docs are served by an app of their own (`haggler.api.docs` and `haggler.api.security`
installed on a small FastAPI app, run by uvicorn in a thread): what is tested is the docs' files
and the policy, not the service's routes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import test_web
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, expect
from pydantic import BaseModel

from haggler.api import docs, security
from haggler.api.deps import require_principal
from haggler.config import Settings
from servers import free_port

browser = test_web.browser  # Debian's Chromium, skipped with the reason where it is missing


class Crate(BaseModel):
    name: str
    price: float


@pytest.fixture(scope="module")
def docs_url() -> Iterator[str]:
    app = FastAPI(title="haggler", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/api/crates", summary="Add a crate", tags=["crates"])
    async def add(crate: Crate) -> Crate:
        return crate

    docs.install(app)
    security.install(app, Settings(trusted_hosts=("127.0.0.1",)))
    # The docs need a signed-in account in the service (tests/test_api_docs.py); here, anyone.
    app.dependency_overrides[require_principal] = lambda: None
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the docs app did not start"
        time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(10)


def open_docs(browser: Browser, url: str) -> tuple[Page, list[str], list[str]]:
    """A page at `url`, the errors it logs and the requests it makes elsewhere."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    elsewhere: list[str] = []
    origin = url.split("/docs")[0].split("/redoc")[0]
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "request",
        lambda r: None if r.url.startswith((origin, "data:", "blob:")) else elsewhere.append(r.url),
    )
    page.goto(url)
    return page, errors, elsewhere


def test_swagger_ui_works_offline_under_the_policy(browser: Browser, docs_url: str) -> None:
    page, errors, elsewhere = open_docs(browser, f"{docs_url}/docs")
    operation = page.locator(".opblock-summary", has_text="/api/crates")
    expect(operation).to_be_visible(timeout=20_000)
    operation.click()
    expect(page.get_by_role("button", name="Try it out")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert errors == []
    assert elsewhere == []
    page.close()


def test_redoc_works_offline_under_the_policy(browser: Browser, docs_url: str) -> None:
    page, errors, elsewhere = open_docs(browser, f"{docs_url}/redoc")
    expect(page.get_by_role("heading", name="Add a crate")).to_be_visible(timeout=20_000)
    # The search runs in a worker made from a blob (`worker-src blob:`).
    page.get_by_placeholder("Search...").fill("crate")
    results = page.locator("[data-role='search:results'] [role=menuitem]")
    expect(results.filter(has_text="Add a crate")).to_be_visible()
    expect(page.get_by_text("API docs by Redocly")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert errors == []
    assert elsewhere == []
    page.close()
