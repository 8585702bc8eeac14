"""The abusive clients of `haggler bench-abuse` (`haggler.bench.abuse`), each run in a process of
its own while the normal client measures: one holding event streams open, one flooding requests.

Raw sockets: a pipelined client costs a few microseconds a request, so the flood is limited by
the server rather than by the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import resource
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.synchronize import Event
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from haggler.bench.abuse import AbuseConfig

HOST = "127.0.0.1"
STREAM_ANSWER_SECONDS = 20.0
"""A stream the server has not answered by then is counted `unanswered` (and held open)."""


@contextmanager
def running(
    target: Any, port: int, config: AbuseConfig, tokens: list[str]
) -> Iterator[dict[str, float]]:
    """Run `target` (`hold_streams`, `flood`) in a process of its own while the block runs; the
    dict it yields is filled with the abuser's report when the block ends."""
    # Forked: a spawned child imports haggler again, seconds of CPU under load each round.
    context = multiprocessing.get_context("fork")
    stop: Event = context.Event()
    ready: Event = context.Event()
    results = context.Queue()
    process = context.Process(target=target, args=(port, config, tokens, ready, stop, results))
    process.start()
    report: dict[str, float] = {}
    try:
        if not ready.wait(120):
            raise RuntimeError("the abuser did not start in 120 s")
        yield report
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            report.update(results.get(timeout=60))
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()


def raise_open_file_limit() -> None:
    """Hundreds of streams need as many sockets (the server inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def hold_streams(
    port: int, config: AbuseConfig, tokens: list[str], ready: Event, stop: Event, results: Any
) -> None:
    """The stream abuser's process: open the streams, hold the admitted ones until `stop`."""
    raise_open_file_limit()
    results.put(asyncio.run(_streams(port, config, tokens, ready, stop)))


async def _streams(
    port: int, config: AbuseConfig, tokens: list[str], ready: Event, stop: Event
) -> dict[str, float]:
    statuses: Counter[str] = Counter()
    held: list[asyncio.StreamWriter] = []
    drains: list[asyncio.Task[None]] = []
    gate = asyncio.Semaphore(50)  # connections being opened at once

    async def open_one(number: int) -> None:
        request = (
            f"GET /api/events HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Authorization: Bearer {tokens[number % len(tokens)]}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        try:
            async with gate:
                reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(request)
            async with asyncio.timeout(STREAM_ANSWER_SECONDS):
                status = (await reader.readline()).split()[1].decode()
        except TimeoutError:  # a server too busy to answer: the request is held all the same
            status = "unanswered"
        except (OSError, IndexError):
            statuses["failed"] += 1
            return
        statuses[status] += 1
        if status in ("200", "unanswered"):
            held.append(writer)
            drains.append(asyncio.create_task(_drain(reader)))
        else:
            writer.close()

    await asyncio.gather(*(open_one(number) for number in range(config.streams)))
    ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.1)
    still_open = sum(not task.done() for task in drains)
    for writer in held:
        writer.close()
    for task in drains:
        task.cancel()
    await asyncio.gather(*drains, return_exceptions=True)
    return {
        **{f"streams {status}": count for status, count in statuses.items()},
        "streams open at the end": still_open,
    }


async def _drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


def flood(
    port: int, config: AbuseConfig, tokens: list[str], ready: Event, stop: Event, results: Any
) -> None:
    """The flooding client's process: pipelined requests as fast as the answers come."""
    results.put(asyncio.run(_flood_loop(port, config, tokens[0], ready, stop)))


async def _flood_loop(
    port: int, config: AbuseConfig, token: str, ready: Event, stop: Event
) -> dict[str, float]:
    statuses: Counter[str] = Counter()
    request = f"GET {config.flood_path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"

    def batch() -> bytes:
        if config.flood_key == "rotating-tokens":
            return b"".join(
                f"{request}Authorization: Bearer {secrets.token_urlsafe(16)}\r\n\r\n".encode()
                for _ in range(config.flood_depth)
            )
        credentials = f"Authorization: Bearer {token}\r\n" if config.flood_key == "token" else ""
        return f"{request}{credentials}\r\n".encode() * config.flood_depth

    async def connection() -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
                while not stop.is_set():
                    writer.write(batch())
                    for _ in range(config.flood_depth):
                        statuses[await _read_answer(reader)] += 1
                writer.close()
            except (OSError, asyncio.IncompleteReadError, ValueError):
                statuses["reconnects"] += 1

    start = time.perf_counter()
    tasks = [asyncio.create_task(connection()) for _ in range(config.flood_connections)]
    ready.set()
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - start
    answered = sum(count for status, count in statuses.items() if status.isdigit())
    return {
        **{f"flood {status}": count for status, count in statuses.items()},
        "flood requests/s": answered / seconds,
    }


async def _read_answer(reader: asyncio.StreamReader) -> str:
    """Read one answer off a keep-alive connection; its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1].decode()
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status
