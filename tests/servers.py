"""A real `haggler serve` process on a free port, for the end-to-end tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

HAGGLER = Path(sys.executable).with_name("haggler")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = cwd / f"serve-{self.port}.log"
        self.log = self.log_path.open("w")
        # The tests check what the learner does, not how it shares a busy machine: at the
        # service's priority a loaded machine slows it no more than the server (at nice 10,
        # beside two CPU-bound processes, the learner missed these tests' waits).
        # And the learner trains on each negotiation as the spec says, however slow a busy
        # machine makes it (merging when it falls behind has its own tests).
        env = {"LEARNER_NICE": "0", "LEARNER_MAX_DELAY": "60", **env}
        self.process = subprocess.Popen(
            [str(HAGGLER), "serve", "--port", str(self.port)],
            cwd=cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_until_ready()
        except BaseException:
            self.kill()
            raise

    def _wait_until_ready(self) -> None:
        """Poll until the app answers: uvicorn accepts connections only once the lifespan has
        started (torch, migrations: a few seconds). Any answer counts, a 401 included: which
        routes need an account is not this helper's business."""
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                httpx.get(f"{self.url}/api/products", timeout=1)
                return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (
                f"the server did not come up:\n{self.log_path.read_text()}"
            )
            time.sleep(0.1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.log.close()

    def stop(self) -> None:
        """Shut down as Ctrl-C does; killed if that takes more than 10 seconds (a failure that
        shows the server's log: where its shutdown stopped)."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                "`haggler serve` did not stop within 10 s of Ctrl-C; its log:\n"
                + self.log_path.read_text()
            ) from None
        self.log.close()
