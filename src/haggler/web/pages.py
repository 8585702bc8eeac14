"""The pages of the web app and the files they load; everything is served by the app itself.

The pages are plain HTML with small ES modules that call the JSON API; charts are drawn by
plotly.js, vendored in the package (`make vendor`), so the app works with no internet access.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException

from haggler.api.deps import Runtime, session_principal
from haggler.api.routes.negotiations import visible_to
from haggler.api.schemas import MAX_ID
from haggler.core.sellers import ALL_STRATEGIES
from haggler.store import base as store
from haggler.store import negotiations as negotiation_store
from haggler.store.accounts import Principal, Role

HERE = Path(__file__).parent
# plotly.js's basic bundle (scatter, bar and pie: what the pages draw), 1.2 MB against 4.8 MB for
# the whole library, and its gzip copy (0.4 MB); `make vendor` fetches both at a pinned version.
PLOTLY_JS = Path(str(files("haggler.web") / "vendor" / "plotly-basic.min.js"))
PLOTLY_JS_GZIP = PLOTLY_JS.with_name(PLOTLY_JS.name + ".gz")
PLOTLY_VERSION = PLOTLY_JS.read_text(encoding="utf-8")[:200].split(") v", 1)[1].split()[0]
"""From the file's banner ("plotly.js (basic - minified) v4.1.1"): its address names it."""

templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)

OUTCOMES = {
    "deal": "Deal",
    "buyer_walked": "Agent walked away",
    "seller_walked": "Seller walked away",
    "deadline": "No deal by the deadline",
}


NAV = (
    ("/", "Negotiate", (Role.PURCHASER, Role.OPERATOR)),
    ("/negotiations", "Negotiations", (Role.PURCHASER, Role.OPERATOR)),
    ("/sell", "Sell to the agent", (Role.SELLER, Role.OPERATOR)),
    ("/dashboard", "Dashboard", (Role.OPERATOR,)),
    ("/accounts", "Accounts", (Role.OPERATOR,)),
)
BUYING = (Role.PURCHASER, Role.OPERATOR)


def _page(request: Request, template: str, roles: tuple[Role, ...], **context: object) -> Response:
    """The page for a signed-in account of one of `roles`; else the sign-in page (signed out)
    or a page that says whose page it is (another role)."""
    runtime: Runtime = request.app.state.runtime
    principal = session_principal(runtime, request)
    if principal is None:
        return RedirectResponse(f"/login?{urlencode({'next': request.url.path})}", 303)
    if principal.role not in roles:
        return error_page(
            request,
            403,
            "Not your page",
            f"This page is for {' and '.join(role.value + 's' for role in roles)}; you are "
            f"signed in as {principal.name} ({principal.role.value}).",
            principal,
        )
    return templates.TemplateResponse(
        request,
        template,
        {**_context(request, principal), **context},
    )


def _context(request: Request, principal: Principal | None) -> dict[str, object]:
    runtime: Runtime = request.app.state.runtime
    return {
        "currency": runtime.settings.currency,
        "strategies": ALL_STRATEGIES,
        "outcomes": OUTCOMES,
        "path": request.url.path,
        "principal": principal,
        "nav": [
            (href, label)
            for href, label, roles in NAV
            if principal is not None and principal.role in roles
        ],
    }


def error_page(
    request: Request,
    status_code: int,
    title: str,
    message: str,
    principal: Principal | None,
    links: tuple[tuple[str, str], ...] = (),
) -> HTMLResponse:
    """A page that says what went wrong (status `status_code`), with the navigation and `links`
    (address, text) to go on from there."""
    return templates.TemplateResponse(
        request,
        "error.html",
        {**_context(request, principal), "title": title, "message": message, "links": links},
        status_code=status_code,
    )


@router.get("/login", response_class=HTMLResponse)
async def login(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "login.html", {**_context(request, None), "title": "Sign in"}
    )


@router.get("/", response_class=HTMLResponse)
async def negotiate(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    principal = session_principal(runtime, request)
    if principal is not None and principal.role is Role.SELLER:
        return RedirectResponse("/sell", 303)  # a seller's home
    return _page(request, "negotiate.html", BUYING, title="Negotiate")


@router.get("/negotiations", response_class=HTMLResponse)
async def negotiations(request: Request) -> Response:
    return _page(request, "negotiations.html", BUYING, title="Negotiations")


@router.get("/negotiations/{negotiation_id}", response_class=HTMLResponse)
async def negotiation(request: Request, negotiation_id: str) -> Response:
    # Any text after /negotiations/ is a page address: one that names no negotiation of yours
    # is a page that does not exist (404), not a malformed request (a 422 in JSON).
    digits = negotiation_id.isascii() and negotiation_id.isdigit() and len(negotiation_id) <= 10
    number = int(negotiation_id) if digits else 0
    runtime: Runtime = request.app.state.runtime
    principal = session_principal(runtime, request)
    missing = (
        principal is not None
        and principal.role in BUYING
        and not _visible(runtime, principal, number)
    )
    if missing:
        return error_page(
            request,
            404,
            "Negotiation not found",
            f"There is no negotiation {negotiation_id[:20]} among yours: it may never have "
            "existed, or it belongs to another purchaser.",
            principal,
            links=(("/negotiations", "See your negotiations"),),
        )
    return _page(
        request,
        "negotiation.html",
        BUYING,
        title=f"Negotiation {number}",
        negotiation_id=number,
    )


def _visible(runtime: Runtime, principal: Principal, negotiation_id: int) -> bool:
    """Whether negotiation `negotiation_id` exists and `principal` sees it as its purchaser."""
    if not 1 <= negotiation_id <= MAX_ID:
        return False
    with runtime.sessions() as session:
        try:
            stored = negotiation_store.get_negotiation(
                negotiation_id, session=session, with_decisions=False
            )
        except store.NotFound:
            return False
    return visible_to(principal, stored)


@router.get("/sell", response_class=HTMLResponse)
async def sell(request: Request) -> Response:
    return _page(request, "sell.html", (Role.SELLER, Role.OPERATOR), title="Sell to the agent")


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(request: Request) -> Response:
    return _page(request, "dashboard.html", (Role.OPERATOR,), title="Dashboard")


@router.get("/accounts", response_class=HTMLResponse)
async def accounts_page(request: Request) -> Response:
    return _page(request, "accounts.html", (Role.OPERATOR,), title="Accounts")


@router.get(f"/vendor/plotly-basic-{PLOTLY_VERSION}.min.js")
async def plotly_js(request: Request) -> FileResponse:
    """The charting library, gzip-compressed for a browser that accepts it (the copy made once,
    by `make vendor`: no CPU spent per request). Its address changes with its version, so a
    browser keeps it for a year without asking again (pages name it by `url_path_for`)."""
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return FileResponse(PLOTLY_JS_GZIP, media_type="text/javascript", headers=headers)
    return FileResponse(PLOTLY_JS, media_type="text/javascript", headers=headers)


NOT_PAGES = ("/api/", "/static/", "/vendor/")
"""Addresses that are not pages: what they do not find is answered in JSON, as ever."""


async def not_found(request: Request, error: Exception) -> Response:
    """A 404 for a person in a browser (a page address, asking for HTML) is a page that says so,
    with the navigation; the API's and every other 404 stays FastAPI's JSON."""
    assert isinstance(error, HTTPException)
    wants_html = "text/html" in request.headers.get("accept", "")
    if not wants_html or request.url.path.startswith(NOT_PAGES):
        return await http_exception_handler(request, error)
    runtime: Runtime = request.app.state.runtime
    return error_page(
        request,
        404,
        "Page not found",
        f"There is no page at {request.url.path[:200]}.",
        session_principal(runtime, request),
    )


def install(app: FastAPI) -> None:
    """Serve the pages at `/` and their files under `/static`; a page that is not there is an
    HTML 404."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(404, not_found)
