"""JSON bodies with a key given twice are refused (422), before any route reads them.

Python's parser, and pydantic's, keep the last of two equal keys: `{"move": "counter", "move":
"accept"}` would be an accept, and which one a client meant is anyone's guess. RFC 8259 leaves
duplicate names undefined; this service answers them with a 422 that names the key. Bodies are
small here (MAX_BODY_BYTES), and the extra parse costs a few microseconds of a move's ~670.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKey(key)
        seen[key] = value
    return seen


def duplicate_key(body: bytes) -> str | None:
    """The first key given twice in one object of the JSON `body` (None: none, or not JSON:
    what is not JSON is left to the route's own validation)."""
    try:
        json.loads(body, object_pairs_hook=_no_duplicates)
    except DuplicateKey as duplicate:
        return str(duplicate)
    except ValueError:
        return None
    return None


class RefuseDuplicateKeys:
    """A pure ASGI middleware: reads a JSON body whole, refuses it if a key repeats, else hands
    the same bytes on to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        if b"json" not in content_type:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                await self.app(scope, _replay(message, receive), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        key = duplicate_key(body)
        if key is not None:
            answer = json.dumps(
                {"detail": [{"loc": ["body", key], "msg": f"the key {key!r} is given twice"}]}
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 422,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(answer)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": answer})
            return
        await self.app(scope, _replay({"type": "http.request", "body": body}, receive), send)


def _replay(first: Message, receive: Receive) -> Receive:
    """A `receive` that gives `first` (the body read already), then what `receive` gives."""
    pending = [first]

    async def replaying() -> Message:
        return pending.pop() if pending else await receive()

    return replaying
