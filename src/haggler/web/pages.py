"""The pages of the web app and the files they load; everything is served by the app itself.

The pages are plain HTML with small ES modules that call the JSON API; charts are drawn by
plotly.js, which the `plotly` Python package ships, so the app works with no internet access.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from haggler.api.schemas import MAX_ID
from haggler.core.sellers import ALL_STRATEGIES

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


def _page(request: Request, template: str, **context: object) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        template,
        {"strategies": ALL_STRATEGIES, "outcomes": OUTCOMES, "path": request.url.path, **context},
    )


@router.get("/", response_class=HTMLResponse)
async def negotiate(request: Request) -> HTMLResponse:
    return _page(request, "negotiate.html", title="Negotiate")


@router.get("/negotiations", response_class=HTMLResponse)
async def negotiations(request: Request) -> HTMLResponse:
    return _page(request, "negotiations.html", title="Negotiations")


@router.get("/negotiations/{negotiation_id}", response_class=HTMLResponse)
async def negotiation(
    request: Request, negotiation_id: Annotated[int, PathParam(ge=1, le=MAX_ID)]
) -> HTMLResponse:
    return _page(
        request,
        "negotiation.html",
        title=f"Negotiation {negotiation_id}",
        negotiation_id=negotiation_id,
    )


@router.get("/sell", response_class=HTMLResponse)
async def sell(request: Request) -> HTMLResponse:
    return _page(request, "sell.html", title="Sell to the agent")


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(request: Request) -> HTMLResponse:
    return _page(request, "dashboard.html", title="Dashboard")


@router.get("/vendor/plotly.min.js")
async def plotly_js() -> FileResponse:
    return FileResponse(
        PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"}
    )


def install(app: FastAPI) -> None:
    """Serve the pages at `/` and their files under `/static`."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
