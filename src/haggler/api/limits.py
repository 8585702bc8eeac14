"""Bounds on every request, so that no client can stall the others: the size of a body, the rate
of each client's requests, and the number of event streams open.

`RequestLimits` is plain ASGI middleware: Starlette's `BaseHTTPMiddleware` runs each request in a
task group with memory streams between the layers, a cost paid on every turn of a service that
plays ~400 negotiations a second. Measured in process (`measure_overhead` in the tests): 3-4 µs
a request with a bearer token, of the ~670 µs of CPU a move takes.

The rate limit is a token bucket per client (rate `RATE_LIMIT_PER_SECOND`, capacity
`RATE_LIMIT_BURST`), written here rather than taken from the `limits` package (5.8): `limits` has
fixed and moving windows but no token bucket, its in-memory storage runs a timer thread every
10 ms while it holds entries (in the serving process, taking the GIL) and keeps a lock per key,
and one `hit` measured 4-7 µs against ~1 µs for the bucket below.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from types import TracebackType

from cachetools import LRUCache
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from haggler.config import Settings

SESSION_COOKIE = "haggler_session"
"""The cookie of a browser login: the client a signed-in page is."""

EXEMPT_PREFIXES = ("/static/", "/vendor/")
"""Files a page loads with it (cached by the browser): not counted against the rate limit."""

CLIENTS_REMEMBERED = 100_000
"""Clients kept (rate buckets, verified credentials); past it the least recently seen is
forgotten and starts again with a full bucket, as it would after RATE_LIMIT_BURST/RATE s idle."""

STREAM_RETRY_AFTER_SECONDS = 5
"""Retry-After of a refused event stream. A stream ends when its page closes, not on a schedule:
a few of the streams' 1 s polls, rather than at once."""

REFUSED = (401, 403)
"""Answers that, to credentials the app has not verified, are a strike against their address
(see `RequestLimits`): an unknown token is a 401, an unknown seller token on a move a 403."""

VERIFIED = "haggler.credentials_verified"
"""The scope key `credentials_verified` sets."""


def credentials_verified(scope: Scope) -> None:
    """Tell `RequestLimits` that the app has checked this request's credentials (a token or
    session cookie that signs in an account, a negotiation's seller token): from then on they
    pass while their address is struck out for guessing, and a 401 or 403 to them is no strike
    (a known account refused by its role is limited by its own bucket)."""
    scope[VERIFIED] = True


class TokenBuckets:
    """A token bucket per key: `rate` tokens a second, at most `burst` held, one per request.

    Bounded in memory: the `clients` most recently seen keys (an LRU cache).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clients: int = CLIENTS_REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        # key -> [tokens, when they were counted]; a list, updated in place.
        self._buckets: LRUCache[str, list[float]] = LRUCache(maxsize=clients)

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 if it had one, else the seconds until it will have."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = [self.burst - 1.0, now]
            return 0.0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def wait(self, key: str) -> float:
        """Seconds until `key` has a token (0.0: it has one now), taking none."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = bucket[0] + (self._clock() - bucket[1]) * self.rate
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate


def client_key(scope: Scope) -> str:
    """Who is asking: the bearer token's SHA-256, else the session cookie's, else the address.

    A key, not an identity: the middleware cannot tell a valid token from a made-up one (see the
    strikes in `RequestLimits`)."""
    authorization = cookie = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
        elif name == b"cookie":
            cookie = value
    return _client_key(authorization, cookie, scope)[0]


def _client_key(
    authorization: bytes | None, cookie: bytes | None, scope: Scope
) -> tuple[str, bool]:
    """The client key and whether it came from credentials (a token or a session cookie)."""
    if authorization is not None:
        scheme, _, token = authorization.partition(b" ")
        token = token.strip()
        if token and scheme.lower() == b"bearer":
            return "token:" + hashlib.sha256(token).hexdigest(), True
    if cookie is not None:
        for part in cookie.split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == _SESSION_COOKIE and value:
                return "session:" + hashlib.sha256(value).hexdigest(), True
    return "address:" + _address(scope), False


_SESSION_COOKIE = SESSION_COOKIE.encode()


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


class BodyTooLarge(Exception):
    """A body that grew past the cap while it was read (raised to the app by `receive`)."""


class RequestLimits:
    """ASGI middleware: 429 with Retry-After above a client's rate, 413 above the body size.

    A refused request never reaches the app. A body announced by Content-Length is judged before
    the app runs; one sent in chunks is counted as the app reads it and refused when it passes
    the cap (the app's own answer to the failed read is dropped; the client gets the 413).

    Strikes: a made-up bearer token is a new client key, so a client sending a fresh token with
    each request would never run out of tokens (and each would cost the app a store read). A 401
    or 403 to credentials the app has not verified therefore takes a token from their address's
    bucket of strikes, and while that bucket is empty the address's requests with credentials
    the app has not verified are refused (429). Credentials the app verified
    (`credentials_verified`) pass: a client guessing tokens does not lock out the clients behind
    its address (an office's NAT, a proxy that does not forward the client's address); a new
    one (a new negotiation's seller token) waits while the guessing goes on.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_body_bytes = settings.max_body_bytes
        rate, burst = settings.rate_limit_per_second, settings.rate_limit_burst
        self.buckets = TokenBuckets(rate, burst) if rate > 0 else None
        self.strikes = TokenBuckets(rate, burst) if rate > 0 else None
        self.verified: LRUCache[str, bool] = LRUCache(maxsize=CLIENTS_REMEMBERED)
        """Keys whose credentials the app has verified."""
        self._too_large = _json_body(
            f"the request body is larger than {self.max_body_bytes} bytes (MAX_BODY_BYTES)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = authorization = cookie = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"authorization":
                authorization = value
            elif name == b"cookie":
                cookie = value
            elif name == b"transfer-encoding":
                chunked = True

        if self.buckets is not None and not scope["path"].startswith(EXEMPT_PREFIXES):
            key, credentials = _client_key(authorization, cookie, scope)
            address = _address(scope)
            assert self.strikes is not None
            wait = 0.0
            if credentials and key not in self.verified:
                wait = self.strikes.wait(address)
            wait = wait or self.buckets.take(key)
            if wait:
                await _answer(send, 429, _TOO_MANY, [(b"retry-after", _seconds(wait))])
                return
            if credentials:
                send = self._judging(send, scope, key, address)

        declared = int(length) if length is not None and length.isdigit() else None
        if declared is not None and declared > self.max_body_bytes:
            await _answer(send, 413, self._too_large, [(b"connection", b"close")])
            return
        if chunked or (length is not None and declared is None):
            await self._capped(scope, receive, send)
            return
        # A Content-Length within the cap (the server holds the body to it), or no body at all.
        await self.app(scope, receive, send)

    def _judging(self, send: Send, scope: Scope, key: str, address: str) -> Send:
        """`send`, noting what the app made of the credentials of `key`."""
        strikes = self.strikes
        assert strikes is not None

        async def judging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                if scope.get(VERIFIED):
                    self.verified[key] = True
                elif message["status"] in REFUSED:
                    strikes.take(address)
                    self.verified.pop(key, None)  # revoked since
            await send(message)

        return judging_send

    async def _capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app on a body of unknown length, refusing it once it passes the cap."""
        received = 0
        refused = started = False

        async def capped_receive() -> Message:
            nonlocal received, refused
            if refused:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    refused = True
                    raise BodyTooLarge
            return message

        async def send_unless_refused(message: Message) -> None:
            nonlocal started
            if refused:  # the app's answer to the failed read (FastAPI: a 400)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped_receive, send_unless_refused)
        except Exception:
            if not refused:
                raise
        if refused and not started:
            await _answer(send, 413, self._too_large, [(b"connection", b"close")])


def _json_body(detail: str) -> bytes:
    return json.dumps({"detail": detail}).encode()


_TOO_MANY = _json_body("too many requests; try again after the seconds in Retry-After")


def _seconds(wait: float) -> bytes:
    """Retry-After: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait))).encode()


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class StreamLimit(Exception):
    """No event stream now: `status_code` (429 or 503) and `retry_after` seconds say why."""

    status_code: int = 503
    retry_after: int = STREAM_RETRY_AFTER_SECONDS


class ClientStreamLimit(StreamLimit):
    """This client has MAX_STREAMS_PER_CLIENT streams open already (429)."""

    status_code = 429


class ServerStreamLimit(StreamLimit):
    """The server has MAX_STREAMS streams open (503)."""

    status_code = 503


class StreamSlot:
    """One open stream's place: `release()` (or leaving a `with` block) gives it back, once."""

    def __init__(self, slots: StreamSlots, client_key: str) -> None:
        self.client_key = client_key
        self.held = True
        self._slots = slots

    def release(self) -> None:
        self._slots._release(self)

    def __enter__(self) -> StreamSlot:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class StreamSlots:
    """Places for event streams: at most `per_client` open for one client key, `total` in all.

    Memory: one count per client with a stream open, so at most `total` entries.
    """

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total
        self._open = 0
        self._by_client: dict[str, int] = {}
        self._lock = threading.Lock()  # a sync route would acquire from FastAPI's thread pool

    @property
    def open(self) -> int:
        """Streams open now."""
        return self._open

    def held_by(self, client_key: str) -> int:
        """Streams `client_key` has open now."""
        return self._by_client.get(client_key, 0)

    def acquire(self, client_key: str) -> StreamSlot:
        """A place for one more stream of `client_key`; raises `ClientStreamLimit` if it has
        `per_client` open already, `ServerStreamLimit` if `total` are open."""
        with self._lock:
            held = self._by_client.get(client_key, 0)
            if held >= self.per_client:
                raise ClientStreamLimit(
                    f"you have {held} event streams open, the most a client may (close one first)"
                )
            if self._open >= self.total:
                raise ServerStreamLimit(
                    f"the server has {self._open} event streams open, its most; try again later"
                )
            self._by_client[client_key] = held + 1
            self._open += 1
        return StreamSlot(self, client_key)

    def _release(self, slot: StreamSlot) -> None:
        with self._lock:
            if not slot.held:
                return
            slot.held = False
            held = self._by_client[slot.client_key] - 1
            if held:
                self._by_client[slot.client_key] = held
            else:
                del self._by_client[slot.client_key]
            self._open -= 1
