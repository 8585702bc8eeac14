"""Abuse benchmark: a normal client's turn latency on a real `haggler serve`, alone, beside
hundreds of open event streams, and beside a client flooding requests as fast as it can.

The normal client plays external-seller negotiations one after another, as the seller, at a
fixed pace (`requests_per_second`; one request at a time, the next sent at once after a late
answer): it starts each with the operator's token and sends each move with the negotiation's
seller token. The three conditions take turns (`rounds`). The abusers run in processes of their
own, so that their work does not stall the measuring client (on a 2-core machine they still take
CPU time from the server, which an abuser on another host would not):

- `streams`: opens `streams` event streams (`GET /api/events`) with the tokens of
  `stream_clients` purchaser accounts (each a client of its own) and holds the admitted ones
  open, reading what they send;
- `flood`: `flood_connections` keep-alive connections, each sending `flood_depth` pipelined
  requests and reading the answers, over and over (`flood_key`: with the token of a purchaser
  account of its own, without credentials from the normal client's address, or with a new
  made-up bearer token on each request).

The accounts are made through the API with the operator's token (OPERATOR_TOKEN), as an
operator would; that client, like any, waits out a 429's Retry-After.

The standard library's `http.client` for the normal client and raw sockets for the abusers
(`haggler.bench.abusers`): the benchmark runs without the test dependencies.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from haggler.bench.abusers import HOST, flood, hold_streams, raise_open_file_limit, running
from haggler.bench.service import _free_port

START = {
    "product_id": 1,
    "max_unit_price": "270.00",
    "seller": {"kind": "external", "asking_price": "320.00"},
}
FloodKey = Literal["token", "address", "rotating-tokens"]
ANSWER_SECONDS = 30.0
"""The normal client gives up on an answer after this long (status 0 in its refusals)."""


@dataclass(frozen=True)
class AbuseConfig:
    """What `run_abuse` measures and how hard the abusers push."""

    model_path: Path
    """The model the server serves (copied into the run's temporary folder)."""
    negotiations: int = 200
    """Negotiations the normal client plays in each condition (9 requests each, as it plays)."""
    rounds: int = 2
    """The conditions take turns this many times (a share of the negotiations each): drift on a
    shared machine hits them all alike."""
    requests_per_second: float = 100.0
    """The normal client's pace. Its starts share the operator token's rate bucket (a fifth of
    its requests); its moves each go under their negotiation's seller token."""
    streams: int = 800
    """Event streams the stream abuser asks for (MAX_STREAMS, 200 by default, are admitted)."""
    stream_clients: int = 40
    """Accounts the streams come from, each a client of its own (MAX_STREAMS_PER_CLIENT each)."""
    flood_connections: int = 4
    """Connections of the flooding client."""
    flood_depth: int = 16
    """Requests each flooding connection sends before reading their answers."""
    flood_path: str = "/api/negotiations?limit=20"
    """What the flood asks for (a read of the store)."""
    flood_key: FloodKey = "token"
    """The flood's credentials: an account's token, none (the normal client's address, which
    gets 401s), or a made-up token on each request (401s as well)."""
    settle_seconds: float = 1.0
    """Pause after the set-up and between conditions (rate buckets refill, streams close)."""
    server_env: dict[str, str] = field(default_factory=dict)
    """Settings of the server beyond the benchmark's (`{"RATE_LIMIT_PER_SECOND": "0"}`...)."""


@dataclass(frozen=True)
class Condition:
    """The normal client's figures in one condition, and what the abuser got."""

    name: str
    turns: int
    median_ms: float
    p99_ms: float
    refused: dict[int, int]
    """The normal client's answers other than 2xx, by status (0: none in ANSWER_SECONDS)."""
    abuser: dict[str, float]
    """What the abuser got, a round on average: answers by status, streams open, requests a
    second ({} alone)."""


@dataclass(frozen=True)
class AbuseResult:
    conditions: list[Condition]
    server_log_tail: str


def run_abuse(config: AbuseConfig, progress: Callable[[str], None] = print) -> AbuseResult:
    """Start a server on a fresh store, measure the three conditions, stop it; each step is
    told to `progress`."""
    began = time.perf_counter()

    def step(what: str) -> None:
        progress(f"{time.perf_counter() - began:6.1f} s  {what}")

    raise_open_file_limit()
    operator = secrets.token_urlsafe(24)
    with (
        tempfile.TemporaryDirectory(prefix="haggler-abuse-") as folder,
        _server(config, Path(folder), operator) as (port, log),
    ):
        step("server ready")
        stream_tokens = [
            _purchaser_token(port, operator, f"streams-{number}")
            for number in range(config.stream_clients)
        ]
        flood_token = _purchaser_token(port, operator, "flood")
        client = NormalClient(port, operator, config.requests_per_second)
        time.sleep(config.settle_seconds)  # the operator's bucket refills after the set-up
        client.play(20)  # warm-up: the first requests fill caches and pools
        names = ("alone", f"{config.streams} event streams", f"flood ({config.flood_key})")
        samples: dict[str, list[Sample]] = {name: [] for name in names}
        reports: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        share = -(-config.negotiations // config.rounds)
        for number in range(1, config.rounds + 1):
            step(f"round {number}: {names[0]}")
            samples[names[0]].append(client.play(share))
            for name, target, tokens in (
                (names[1], hold_streams, stream_tokens),
                (names[2], flood, [flood_token]),
            ):
                time.sleep(config.settle_seconds)
                with running(target, port, config, tokens) as report:
                    step(f"round {number}: {name}")
                    samples[name].append(client.play(share))
                reports[name].append(report)
            time.sleep(config.settle_seconds)
        step("done")
        client.close()
        tail = "\n".join(log.read_text().splitlines()[-15:])
    conditions = [_condition(name, samples[name], reports[name]) for name in names]
    return AbuseResult(conditions, tail)


@dataclass(frozen=True)
class Sample:
    latencies: list[float]
    """Seconds from sending each request to reading its answer."""
    refused: Counter[int]
    """Answers other than 2xx, by status."""


def _condition(name: str, samples: list[Sample], reports: list[dict[str, float]]) -> Condition:
    milliseconds = np.array([latency for sample in samples for latency in sample.latencies]) * 1000
    refused: Counter[int] = sum((sample.refused for sample in samples), Counter())
    keys = sorted({key for report in reports for key in report})
    return Condition(
        name=name,
        turns=len(milliseconds),
        median_ms=float(np.median(milliseconds)),
        p99_ms=float(np.percentile(milliseconds, 99)),
        refused=dict(refused),
        abuser={key: float(np.mean([report.get(key, 0.0) for report in reports])) for key in keys},
    )


def _call(
    port: int, method: str, path: str, token: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """One request on a connection of its own; a 429 is waited out (Retry-After) and retried."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    while True:
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            connection.request(
                method, path, json.dumps(body) if body is not None else None, headers
            )
            answer = connection.getresponse()
            data = answer.read()
        finally:
            connection.close()
        if answer.status != 429:
            return answer.status, json.loads(data) if data else None
        time.sleep(float(answer.getheader("Retry-After", "1")))


def _purchaser_token(port: int, operator: str, name: str) -> str:
    """A purchaser account made by the operator, and a bearer token of its."""
    status, answer = _call(
        port, "POST", "/api/accounts", operator, {"name": name, "role": "purchaser"}
    )
    if status != 201:
        raise RuntimeError(f"could not create the account {name}: {status} {answer}")
    status, answer = _call(port, "POST", f"/api/accounts/{name}/tokens", operator, {})
    if status != 201:
        raise RuntimeError(f"could not issue a token to {name}: {status} {answer}")
    return str(answer["token"])


class NormalClient:
    """One seller playing negotiations one after another at a fixed pace over one connection:
    it starts each with the operator's token and moves with the negotiation's seller token."""

    def __init__(self, port: int, operator: str, requests_per_second: float) -> None:
        self.operator = {"Authorization": f"Bearer {operator}", "Content-Type": "application/json"}
        self.interval = 1.0 / requests_per_second
        self.connection = http.client.HTTPConnection(HOST, port, timeout=ANSWER_SECONDS)
        self.latencies: list[float] = []
        self.refused: Counter[int] = Counter()
        self._next = time.perf_counter()

    def play(self, negotiations: int) -> Sample:
        """Play `negotiations` to their end; the latencies and refusals of their requests."""
        # A connection left idle (between conditions) is closed by the server's keep-alive
        # timeout: start on a fresh one.
        self.connection.close()
        self.latencies, self.refused = [], Counter()
        self._next = time.perf_counter()
        for _ in range(negotiations):
            status, answer = self._request("POST", "/api/negotiations", START, self.operator)
            if status != 201:
                continue
            headers = {
                "Authorization": f"Bearer {answer['seller_token']}",
                "Content-Type": "application/json",
            }
            view = answer["negotiation"]
            path = f"/api/negotiations/{view['id']}/moves"
            while view["status"] == "open":
                status, view = self._request("POST", path, _seller_move(view), headers)
                if status != 200:
                    break
        return Sample(self.latencies, self.refused)

    def _request(
        self, method: str, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, Any]:
        """Send at the next tick of the pace (at once if late, catching up by one tick at most)
        and time the answer."""
        delay = self._next - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + self.interval, time.perf_counter() - self.interval)
        for attempt in range(2):  # a connection the server closed meanwhile: once more
            start = time.perf_counter()
            try:
                self.connection.request(method, path, json.dumps(body), headers)
                answer = self.connection.getresponse()
                data = answer.read()
                break
            except (http.client.RemoteDisconnected, ConnectionError):
                self.connection.close()
                if attempt:
                    raise
            except TimeoutError:  # no answer in ANSWER_SECONDS: counted as status 0
                self.connection.close()
                self.latencies.append(time.perf_counter() - start)
                self.refused[0] += 1
                return 0, None
        self.latencies.append(time.perf_counter() - start)
        if answer.status >= 300:
            self.refused[answer.status] += 1
            if answer.getheader("connection", "").lower() == "close":
                self.connection.close()
        return answer.status, json.loads(data) if data else None

    def close(self) -> None:
        self.connection.close()


def _seller_move(view: dict[str, Any]) -> dict[str, str]:
    """Concede 4% of the last ask a round; accept an offer within 10% of it (as bench-service's
    wrk script does)."""
    ask, offer = 320.0, None
    for turn in view["transcript"]:
        if turn["move"] == "counter":
            if turn["party"] == "seller":
                ask = float(turn["price"])
            else:
                offer = float(turn["price"])
    if offer is not None and offer >= ask * 0.9:
        return {"move": "accept"}
    return {"move": "counter", "price": f"{max(ask * 0.96, (offer or 0.0) + 0.05):.2f}"}


@contextmanager
def _server(config: AbuseConfig, folder: Path, token: str) -> Iterator[tuple[int, Path]]:
    model = folder / "buyer_agent.pth"
    shutil.copyfile(config.model_path, model)
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{folder / 'haggler.db'}",
        "MODEL_PATH": str(model),
        "CHECKPOINT_DIR": str(folder / "checkpoints"),
        "ENABLE_TRAINING": "false",
        "OPERATOR_TOKEN": token,
        **config.server_env,
    }
    log = folder / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("haggler")), "serve", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_ready(port, token, server, log)
            yield port, log
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)


def _wait_until_ready(
    port: int, token: str, server: subprocess.Popen[bytes], log: Path, timeout: float = 180.0
) -> None:
    """Wait for the server to answer and its learner to hold the store's lease (loading torch
    takes the learner seconds of CPU that the figures must not include)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=5)
            connection.request("GET", "/api/training", headers={"Authorization": f"Bearer {token}"})
            answer = connection.getresponse()
            ready = answer.status == 200 and json.loads(answer.read()).get("learner_ready")
            connection.close()
            if ready:
                return
        except OSError:
            pass
        if server.poll() is not None:
            raise RuntimeError(f"the server stopped while starting:\n{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server was not ready in {timeout:.0f} s")
        time.sleep(0.2)
