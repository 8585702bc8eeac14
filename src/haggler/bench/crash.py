"""Crash-safety benchmark: acknowledged moves lost when a real `haggler serve` is killed with
SIGKILL under load, and started again on the same store.

Client threads play external-seller negotiations flat out, as sellers do: each move goes with a
fresh `Idempotency-Key` and `expected_turns`, and every 2xx answer is *acknowledged*: the
client remembers the transcript it was given. The driver kills the server, with its learner
process (the whole process group, as an out-of-memory kill or a power cut takes both), at
random moments and starts it again. A client whose request got no answer waits for the server,
reads the negotiation to learn whether its move was stored, and sends the very same move with
the very same key: if the move was stored, the answer must be the first one, from the key.

At the end the load stops, the server starts once more, and every negotiation's stored
transcript must begin with the last transcript its client was given: the service answers a
move only after its commit (README, "The service"), so a kill may lose an unanswered move,
never an answered one. The learner, killed as often, must have counted each finished
negotiation at most once.

Plain `http.client` (the standard library), as in `bench.abuse`: the benchmark runs without the
test dependencies.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from haggler.bench.service import _free_port

HOST = "127.0.0.1"
ASK = "320.00"
START = {
    "product_id": 1,
    "max_unit_price": "270.00",
    "seller": {"kind": "external", "asking_price": ASK},
}
RETRY_STATUSES = frozenset({429, 503})
"""Answers that say nothing was done and to try again (rate limit, store unreachable)."""
Backend = Literal["sqlite", "postgresql"]
Transcript = tuple[tuple[str, str, str | None, int], ...]


class ConnectionLost(Exception):
    """No answer: the server was killed, or is not up yet."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.sent = not isinstance(error, ConnectionRefusedError)
        """Whether the request may have reached the server (a refused connection did not)."""


@dataclass(frozen=True)
class CrashConfig:
    """What `run_crash` does to the service, and how hard."""

    backend: Backend = "sqlite"
    """The store: a fresh SQLite file, or the PostgreSQL database at `postgres_url`."""
    model_path: Path = Path("models/buyer_agent.pth")
    """The model the server starts from (copied into the run's temporary folder)."""
    postgres_url: str | None = None
    """The PostgreSQL database of a `postgresql` run; its `public` schema is dropped first."""
    kills: int = 10
    """SIGKILLs of the server (and its learner) during the load."""
    clients: int = 4
    """Client threads, each playing one negotiation after another, flat out."""
    seed: int = 0
    """Seeds the moments of the kills and the sellers' moves."""
    load_seconds: tuple[float, float] = (0.5, 3.0)
    """Seconds of load before each kill, drawn uniformly from this range."""
    learner_wait_seconds: float = 60.0
    """How long the last start waits for the learner to take every finished negotiation."""
    replay_anchor_negotiations: int = 20
    """The learner's simulated negotiations at each start (1,000 by default: seconds each)."""


@dataclass
class ClientTally:
    """What client threads were answered."""

    acknowledged: dict[int, list[Transcript]] = field(default_factory=dict)
    """Per negotiation, every transcript an answer gave: the opening's, then each move's."""
    moves: int = 0
    """Seller moves acknowledged (a 2xx answer)."""
    from_key: int = 0
    """Retried moves the store already held, answered with the first answer (from the key)."""
    kept_answer_differs: int = 0
    """Of those, answers that were not what the store holds."""
    applied_on_retry: int = 0
    """Retried moves the store did not hold yet, applied by the retry."""
    unanswered_opens: int = 0
    """Openings that got no answer (no seller token: the client cannot tell if it exists)."""
    refused: Counter[int] = field(default_factory=Counter)
    """Answers other than 2xx, by status (the negotiation is then left as it is)."""

    @classmethod
    def total(cls, tallies: list[ClientTally]) -> ClientTally:
        total = cls()
        for tally in tallies:
            total.acknowledged |= tally.acknowledged
            total.moves += tally.moves
            total.from_key += tally.from_key
            total.kept_answer_differs += tally.kept_answer_differs
            total.applied_on_retry += tally.applied_on_retry
            total.unanswered_opens += tally.unanswered_opens
            total.refused.update(tally.refused)
        return total


@dataclass(frozen=True)
class CrashResult:
    backend: Backend
    clients: ClientTally
    """What all the clients were answered."""
    moves_lost: int
    """Acknowledged moves whose answer's transcript the store does not begin with."""
    negotiations_diverging: int
    """Negotiations whose stored transcript does not begin with every acknowledged one."""
    kills: int
    kills_learning: int
    """Kills after the learner had learned from a negotiation since the previous kill."""
    restart_seconds: float
    """Median seconds from a kill to the API answering again."""
    finished: int
    """Finished negotiations in the store."""
    trained: int
    """The learner's count of negotiations learned from (at most `finished`)."""
    seconds: float
    server_log_tail: str


def run_crash(config: CrashConfig) -> CrashResult:
    """Start a server on a fresh store, load it and kill it `config.kills` times, start it once
    more and compare what it stores with what it acknowledged."""
    started = time.monotonic()
    seeds = np.random.SeedSequence(config.seed).spawn(config.clients + 1)
    operator = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="haggler-crash-") as folder:
        work = Path(folder)
        if config.backend == "postgresql":
            if config.postgres_url is None:
                raise ValueError("a postgresql run needs postgres_url")
            wipe_postgres(config.postgres_url)
            database_url = config.postgres_url
        else:
            database_url = f"sqlite:///{work / 'haggler.db'}"
        server = ServeProcess(_environment(config, work, database_url, operator), work)
        stop = threading.Event()
        tallies = [ClientTally() for _ in range(config.clients)]
        threads = [
            threading.Thread(
                target=_play,
                args=(server.port, operator, np.random.default_rng(seed), stop, tally),
                daemon=True,
            )
            for seed, tally in zip(seeds[1:], tallies, strict=True)
        ]
        try:
            server.start()
            server.wait_until_ready(operator, learner=True)
            for thread in threads:
                thread.start()
            restarts, learned = _kill_repeatedly(
                server, config, np.random.default_rng(seeds[0]), stop, operator
            )
            for thread in threads:
                thread.join()
            server.start()
            server.wait_until_ready(operator, learner=True)
            clients = ClientTally.total(tallies)
            lost, diverging = _compare(clients, _stored_transcripts(server.port, operator, clients))
            finished, trained = _learner_counts(server.port, operator, config)
            server.stop()
        finally:
            stop.set()
            server.kill()
            tail = "\n".join(server.log.read_text().splitlines()[-15:])
    return CrashResult(
        backend=config.backend,
        clients=clients,
        moves_lost=lost,
        negotiations_diverging=diverging,
        kills=config.kills,
        kills_learning=int(np.count_nonzero(np.diff(learned) > 0)),
        restart_seconds=float(np.median(restarts)) if restarts else 0.0,
        finished=finished,
        trained=trained,
        seconds=time.monotonic() - started,
        server_log_tail=tail,
    )


def _kill_repeatedly(
    server: ServeProcess,
    config: CrashConfig,
    rng: np.random.Generator,
    stop: threading.Event,
    operator: str,
) -> tuple[list[float], list[int]]:
    """Kill the server after a random spell of load, start it again, `config.kills` times (the
    last time it stays down and the load stops): the seconds it took to answer again after
    each kill, and the learner's count of negotiations learned from before each."""
    restarts: list[float] = []
    learned = [_learned(server.port, operator)]
    for kill in range(config.kills):
        time.sleep(rng.uniform(*config.load_seconds))
        learned.append(_learned(server.port, operator))
        if kill == config.kills - 1:
            stop.set()  # the last kill catches requests in flight; none follow it
        server.kill()
        killed = time.monotonic()
        if kill < config.kills - 1:
            server.start()
            server.wait_until_ready(operator, learner=False)
            restarts.append(time.monotonic() - killed)
    return restarts, learned


def wipe_postgres(url: str) -> None:
    """Drop and recreate the `public` schema of the database at `url`, as the test suite does,
    without ending other sessions: a database in use (a test run) fails the drop in 20 s."""
    from sqlalchemy import text

    from haggler.store.database import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("SET LOCAL lock_timeout = '20s'"))
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def _environment(
    config: CrashConfig, work: Path, database_url: str, operator: str
) -> dict[str, str]:
    model = work / "buyer_agent.pth"
    shutil.copyfile(config.model_path, model)
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "MODEL_PATH": str(model),
        "CHECKPOINT_DIR": str(work / "checkpoints"),
        "ENABLE_TRAINING": "true",
        "OPERATOR_TOKEN": operator,
        "REPLAY_ANCHOR_NEGOTIATIONS": str(config.replay_anchor_negotiations),
        "RATE_LIMIT_PER_SECOND": "0",
    }


class ServeProcess:
    """`haggler serve` in a process group of its own (with its learner), on one port and store
    across restarts; its output goes to `serve.log`, every start appended."""

    def __init__(self, env: dict[str, str], work: Path) -> None:
        self.env, self.work = env, work
        self.port = _free_port()
        self.log = work / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("a") as output:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).with_name("haggler")), "serve", "--port", str(self.port)],
                cwd=self.work,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_until_ready(self, operator: str, *, learner: bool, timeout: float = 180.0) -> None:
        """Until the API answers an operator (and, with `learner`, the learner holds the store's
        lease: a killed learner's lease runs out first)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with contextlib.closing(KeepAlive(self.port)) as connection:
                    status, answer = connection.request("GET", "/api/training", operator)
                if status == 200 and (answer["learner_ready"] or not learner):
                    return
            except ConnectionLost:
                pass
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the server stopped while starting:\n{self._tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready in {timeout:.0f} s:\n{self._tail()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL to the server and its learner at once."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):  # it died on its own
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self.process = None

    def stop(self) -> None:
        """Shut down as Ctrl-C does."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def _tail(self) -> str:
        return "\n".join(self.log.read_text().splitlines()[-30:])


class KeepAlive:
    """One keep-alive connection, opened again after any failure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        token: str,
        body: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        if self.connection is None:
            self.connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            self.connection.request(
                method, path, json.dumps(body) if body is not None else None, headers
            )
            answer = self.connection.getresponse()
            data = answer.read()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise ConnectionLost(error) from None
        if answer.getheader("connection", "").lower() == "close":
            self.close()
        return answer.status, json.loads(data) if data else None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def _play(
    port: int, operator: str, rng: np.random.Generator, stop: threading.Event, tally: ClientTally
) -> None:
    """One client: open a negotiation, move until it ends, again, until `stop`."""
    with contextlib.closing(KeepAlive(port)) as connection:
        while not stop.is_set():
            _negotiate(connection, operator, rng, stop, tally)


def _negotiate(
    connection: KeepAlive,
    operator: str,
    rng: np.random.Generator,
    stop: threading.Event,
    tally: ClientTally,
) -> None:
    """Open a negotiation and move until it ends (or the load stops, or a move is refused)."""
    try:
        status, answer = connection.request("POST", "/api/negotiations", operator, START)
    except ConnectionLost as lost:
        tally.unanswered_opens += lost.sent
        time.sleep(0.05)
        return
    if status != 201:
        if status not in RETRY_STATUSES:
            tally.refused[status] += 1
        time.sleep(0.05)
        return
    view = answer["negotiation"]
    negotiation_id, token = int(view["id"]), str(answer["seller_token"])
    tally.acknowledged[negotiation_id] = [_transcript(view)]
    while view["status"] == "open" and not stop.is_set():
        view = _move(connection, negotiation_id, token, view, rng, stop, tally)
        if view is None:
            break


def _move(
    connection: KeepAlive,
    negotiation_id: int,
    token: str,
    view: dict[str, Any],
    rng: np.random.Generator,
    stop: threading.Event,
    tally: ClientTally,
) -> dict[str, Any] | None:
    """Send one seller move until it is answered: the new view, or None if it was refused (or
    the load stopped before an answer)."""
    body: dict[str, Any] = {**_seller_move(view, rng), "expected_turns": len(view["transcript"])}
    key = secrets.token_hex(16)
    path = f"/api/negotiations/{negotiation_id}/moves"
    acknowledged = tally.acknowledged[negotiation_id]
    uncertain = False  # a request went out and no answer came back
    held: Transcript | None = None  # then, the stored transcript if the store holds the move
    while True:
        try:
            status, answer = connection.request("POST", path, token, body, key)
        except ConnectionLost as lost:
            status, answer = 0, None
            uncertain |= lost.sent
        if status != 0 and status not in RETRY_STATUSES:
            break
        if not uncertain:
            if stop.is_set():
                return None
            time.sleep(0.05)
            continue
        # Did the move reach the store before the answer was lost? Read it, then send again.
        stored = _read_when_up(connection, negotiation_id, token, stop)
        if stored is None:
            return None
        held = stored if len(stored) > len(acknowledged[-1]) else None
    if not 200 <= status < 300:
        tally.refused[status] += 1
        return None
    transcript = _transcript(answer)
    acknowledged.append(transcript)
    tally.moves += 1
    if uncertain and held is None:
        tally.applied_on_retry += 1
    elif uncertain:
        tally.from_key += 1
        tally.kept_answer_differs += transcript != held
    return dict(answer)


def _read_when_up(
    connection: KeepAlive, negotiation_id: int, token: str, stop: threading.Event
) -> Transcript | None:
    """The stored transcript, read as the seller once the server answers (None if the load
    stopped first)."""
    while not stop.is_set():
        try:
            status, answer = connection.request(
                "GET", f"/api/negotiations/{negotiation_id}/seller", token
            )
        except ConnectionLost:
            status, answer = 0, None
        if status == 200:
            return _transcript(answer)
        time.sleep(0.05)
    return None


def _seller_move(view: dict[str, Any], rng: np.random.Generator) -> dict[str, str]:
    """Concede 1-5% of the last ask; now and then accept or walk away."""
    ask, offer = float(ASK), None
    for turn in view["transcript"]:
        if turn["move"] == "counter":
            if turn["party"] == "seller":
                ask = float(turn["price"])
            else:
                offer = float(turn["price"])
    draw = rng.random()
    if draw < 0.03:
        return {"move": "walk_away"}
    price = round(ask * (1 - rng.uniform(0.01, 0.05)), 2)
    if offer is not None and (draw < 0.08 or offer >= ask * 0.92 or price <= offer):
        return {"move": "accept"}
    return {"move": "counter", "price": f"{price:.2f}"}


def _transcript(view: dict[str, Any]) -> Transcript:
    return tuple(
        (turn["party"], turn["move"], turn["price"], turn["round"]) for turn in view["transcript"]
    )


def _stored_transcripts(
    port: int, operator: str, clients: ClientTally
) -> dict[int, Transcript | None]:
    """Every acknowledged negotiation's stored transcript, read as the operator (None: the store
    does not have it). The purchaser's view: the seller's view refuses OPERATOR_TOKEN, which
    lacks the prefix of account tokens, as a wrong seller token (403)."""
    stored: dict[int, Transcript | None] = {}
    with contextlib.closing(KeepAlive(port)) as connection:
        for negotiation_id in clients.acknowledged:
            status, answer = connection.request(
                "GET", f"/api/negotiations/{negotiation_id}", operator
            )
            if status not in (200, 404):
                raise RuntimeError(f"reading negotiation {negotiation_id}: {status} {answer}")
            stored[negotiation_id] = _transcript(answer) if status == 200 else None
    return stored


def _get(port: int, path: str, operator: str) -> Any:
    """One GET as the operator, which must answer 200."""
    with contextlib.closing(KeepAlive(port)) as connection:
        status, answer = connection.request("GET", path, operator)
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {answer}")
    return answer


def _learned(port: int, operator: str) -> int:
    """The learner's count of negotiations learned from."""
    return int(_get(port, "/api/training", operator)["negotiations_trained"])


def _learner_counts(port: int, operator: str, config: CrashConfig) -> tuple[int, int]:
    """(finished negotiations in the store, negotiations the learner counts as learned), once
    the learner has taken them all or `learner_wait_seconds` passed."""
    finished = int(_get(port, "/api/negotiations?status=finished&limit=1", operator)["total"])
    deadline = time.monotonic() + config.learner_wait_seconds
    while True:
        trained = _learned(port, operator)
        if trained >= finished or time.monotonic() > deadline:
            return finished, trained
        time.sleep(0.5)


def _compare(clients: ClientTally, stored: dict[int, Transcript | None]) -> tuple[int, int]:
    """(acknowledged moves the store lost, negotiations whose stored transcript does not begin
    with every acknowledged one)."""
    lost = diverging = 0
    for negotiation_id, answers in clients.acknowledged.items():
        transcript = stored[negotiation_id] or ()
        kept = [transcript[: len(answer)] == answer for answer in answers]
        lost += kept[1:].count(False)  # the first answer is the opening's, not a move's
        diverging += not all(kept)
    return lost, diverging
