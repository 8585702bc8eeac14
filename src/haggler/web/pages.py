"""The pages of the web app and the files they load; everything is served by the app itself.

The pages are plain HTML with small ES modules that call the JSON API; charts are drawn by
plotly.js, which the `plotly` Python package ships, so the app works with no internet access.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from haggler.api.deps import Runtime, session_principal
from haggler.api.schemas import MAX_ID
from haggler.core.sellers import ALL_STRATEGIES
from haggler.store.accounts import Principal, Role

HERE = Path(__file__).parent
PLOTLY_JS = Path(str(files("plotly") / "package_data" / "plotly.min.js"))

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
    return {
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
    request: Request, status_code: int, title: str, message: str, principal: Principal | None
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "error.html",
        {**_context(request, principal), "title": title, "message": message},
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
async def negotiation(
    request: Request, negotiation_id: Annotated[int, PathParam(ge=1, le=MAX_ID)]
) -> Response:
    return _page(
        request,
        "negotiation.html",
        BUYING,
        title=f"Negotiation {negotiation_id}",
        negotiation_id=negotiation_id,
    )


@router.get("/sell", response_class=HTMLResponse)
async def sell(request: Request) -> Response:
    return _page(request, "sell.html", (Role.SELLER, Role.OPERATOR), title="Sell to the agent")


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(request: Request) -> Response:
    return _page(request, "dashboard.html", (Role.OPERATOR,), title="Dashboard")


@router.get("/accounts", response_class=HTMLResponse)
async def accounts_page(request: Request) -> Response:
    return _page(request, "accounts.html", (Role.OPERATOR,), title="Accounts")


@router.get("/vendor/plotly.min.js")
async def plotly_js() -> FileResponse:
    return FileResponse(
        PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"}
    )


def install(app: FastAPI) -> None:
    """Serve the pages at `/` and their files under `/static`."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
