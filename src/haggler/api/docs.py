"""The API docs, served by the app itself so that they work with no internet access: Swagger UI at
`/docs`, Redoc at `/redoc`, and the OpenAPI schema they read at `/openapi.json`.

FastAPI's own docs pages load Swagger UI and Redoc from a CDN (and Redoc its fonts from Google).
Here the pages are FastAPI's (`get_swagger_ui_html`, `get_redoc_html`) pointed at the files that
the `fastapi-offline` package ships (its `static/` folder: Swagger UI's bundle and styles, Redoc's
standalone bundle, an icon), installed from PyPI like every other dependency.

Nothing is fetched from elsewhere, which the Content-Security-Policy would block anyway (each
block logged as an error): Swagger UI's online validator badge is turned off, and Redoc's bundle
is served with its one remote file, the Redocly logo in its sidebar, replaced by an empty image.

The three pages are ordinary routes of one router, so its access dependency (any signed-in
account: a seller's programmer reads them too) covers the schema and the pages' files. For that the
app is created with `docs_url=None, redoc_url=None, openapi_url=None`: FastAPI's own routes for
them take no dependencies.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from haggler.api.deps import require_principal
from haggler.api.security import content_security_policy

ASSETS = Path(str(files("fastapi_offline") / "static"))
ASSETS_URL = "/docs/assets"
OPENAPI_URL = "/openapi.json"

MEDIA_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
"""The files the pages load, by name, and their types."""

REDOC_LOGO = b'"https://cdn.redoc.ly/redoc/logo-mini.svg"'
EMPTY_IMAGE = b'"data:image/svg+xml,%3Csvg%20xmlns=%22http://www.w3.org/2000/svg%22/%3E"'
CACHED = {"Cache-Control": "max-age=86400"}

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_principal)])
"""The docs' routes, for any signed-in account (a seller writes its program from them)."""

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@router.get(OPENAPI_URL)
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title=f"{request.app.title}: API docs",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        oauth2_redirect_url=None,
        # Swagger UI shows a badge from validator.swagger.io for a schema on a non-local host.
        swagger_ui_parameters={"validatorUrl": None},
    )
    return _allowing_its_inline_scripts(page)


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=OPENAPI_URL,
        title=f"{request.app.title}: API reference",
        redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )


@router.get(f"{ASSETS_URL}/{{name}}")
async def asset(name: str) -> Response:
    if name not in MEDIA_TYPES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no file {name!r} in the docs' files")
    if name == "redoc.standalone.js":
        return Response(_redoc_bundle(), media_type=MEDIA_TYPES[name], headers=CACHED)
    return FileResponse(ASSETS / name, media_type=MEDIA_TYPES[name], headers=CACHED)


@functools.cache
def _redoc_bundle() -> bytes:
    """Redoc's bundle with its logo, the one file it would fetch from the internet (always, in
    its sidebar's "API docs by Redocly"; no option turns it off), replaced by an empty image."""
    return (ASSETS / "redoc.standalone.js").read_bytes().replace(REDOC_LOGO, EMPTY_IMAGE)


def _allowing_its_inline_scripts(page: HTMLResponse) -> HTMLResponse:
    """`page` with the app's Content-Security-Policy plus the hashes of its own inline scripts
    (Swagger UI's page starts it from one): those run, and no other inline script would."""
    hashes = [
        "'sha256-{}'".format(
            base64.b64encode(hashlib.sha256(script.encode()).digest()).decode("ascii")
        )
        for script in _INLINE_SCRIPT.findall(bytes(page.body).decode())
    ]
    page.headers["Content-Security-Policy"] = content_security_policy(script_src=hashes)
    return page


def install(app: FastAPI) -> None:
    """Serve the docs, the schema and the docs' files; `app` must leave those routes to this
    module (created with `docs_url=None, redoc_url=None, openapi_url=None`)."""
    if app.docs_url or app.redoc_url or app.openapi_url:
        raise ValueError(
            "create the app with docs_url=None, redoc_url=None, openapi_url=None: "
            "haggler.api.docs serves them"
        )
    app.include_router(router)
