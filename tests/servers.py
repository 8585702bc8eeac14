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
        self.log = (cwd / f"serve-{self.port}.log").open("w")
        self.process = subprocess.Popen(
            [str(HAGGLER), "serve", "--port", str(self.port)],
            cwd=cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:  # poll for readiness: start-up (torch, migrations) takes a few seconds
            assert self.process.poll() is None, (cwd / self.log.name).read_text()
            try:
                if httpx.get(f"{self.url}/api/training", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.log.close()

    def stop(self) -> None:
        """Shut down as Ctrl-C does; killed if that takes more than 10 seconds."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.log.close()
