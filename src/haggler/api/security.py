"""Security headers on every answer, and only the host names the service answers to.

The pages load their scripts, styles and data from the app itself and nowhere else (plotly.js
and the API docs' scripts are served by the app too), so the Content-Security-Policy allows
nothing else: an injected script or a page framed by another site does not run. Two exceptions,
each for a library the pages use (checked in Chromium: no page logs a violation):
- `style-src 'unsafe-inline'`: plotly.js and Redoc write `<style>` elements and style
  attributes at run time; scripts stay `'self'` only, so an injection still cannot run code.
- `img-src data:` and `worker-src blob:`: the pages' empty icon (`data:,`) and Swagger UI's icons
  are data URLs; Redoc runs its search in a worker made from a blob.

A response that sets its own policy keeps it (the Swagger UI page allows its inline start-up
script by hash, `docs.py`).
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from haggler.config import Settings


def content_security_policy(*, script_src: Iterable[str] = ()) -> str:
    """The app's policy; `script_src`: sources allowed beside the app's own files (hashes)."""
    return "; ".join(
        (
            "default-src 'self'",
            " ".join(("script-src 'self'", *script_src)),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


CSP = b"content-security-policy"
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (CSP, content_security_policy().encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),  # frame-ancestors for browsers that predate it
)


class SecurityHeaders:
    """Adds HEADERS to every HTTP response (pure ASGI: streamed answers, the event stream
    included, pass through untouched, and no task is spawned per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(header for header in HEADERS if header[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI, settings: Settings) -> None:
    """Add the headers and the host check to `app`, outside every middleware added before (the
    last added runs first): a request for another host is refused before anything else runs,
    and its 400 carries the headers too."""
    if "*" not in settings.trusted_hosts:
        # No redirect to a `www.` host: an answer for a host not configured is a 400, nothing else.
        app.add_middleware(
            TrustedHostMiddleware, allowed_hosts=list(settings.trusted_hosts), www_redirect=False
        )
    app.add_middleware(SecurityHeaders)
