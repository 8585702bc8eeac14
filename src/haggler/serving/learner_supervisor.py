"""The learner process of a serving process: started with it, restarted if it dies, stopped with
it. The learner itself (`learning.store_learner`, and torch with it) lives in that child process
only."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from haggler.config import Settings, settings_environment

log = logging.getLogger("haggler.training")


class LearnerProcess:
    """`haggler learn` as a child of the serving process, restarted if it dies. It runs at a
    lower CPU priority than serving, nice +10 (`--low-priority`): when the cores are busy,
    serving wins, and the learner still gets about a tenth of a core it shares, so it falls
    behind but never stops (a learner that falls behind catches up later; a slow answer is lost
    for good). It used to run at SCHED_IDLE, which with two other CPU-bound processes on this
    2-core machine made no update at all: see `haggler.cli.service.LEARNER_NICE`."""

    RESTART_AFTER = 5.0
    """Seconds between restarts of a learner that keeps dying (its error is in the log)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._process: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self.restarts = 0
        self.start()

    def start(self) -> None:
        self._started = time.monotonic()
        self._process = subprocess.Popen(
            [
                *(sys.executable, "-m", "haggler", "learn"),
                *("--parent", str(os.getpid()), "--low-priority"),
            ],
            env={**os.environ, **settings_environment(self.settings)},
        )

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def keep_alive(self) -> None:
        """Start the learner again if it died (not more often than every RESTART_AFTER s)."""
        if self.alive() or time.monotonic() - self._started < self.RESTART_AFTER:
            return
        code = self._process.returncode if self._process is not None else None
        log.error("[Training] The learner process stopped (exit code %s); starting it again", code)
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
