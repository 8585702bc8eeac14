"""The learner process of a serving process: started with it, restarted if it dies, stopped with
it. The learner itself (`learning.store_learner`, and torch with it) lives in that child process
only."""

from __future__ import annotations

import contextlib
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
    2-core machine made no update at all: see `haggler.config.LEARNER_NICE`."""

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

    STOP_SECONDS = 3.0
    """How long a learner asked to stop may take before it is killed. Killing it loses nothing
    (the store is its queue; its lease runs out within LEASE_SECONDS), and Ctrl-C on the
    service must not wait long for it."""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        # At its low priority the learner gets little CPU while the cores are busy, even to act
        # on SIGTERM and exit: `haggler serve` took 29-35 s to stop on a busy 2-core machine (this
        # wait ran out at 30 s), 0.4 s on a quiet one. Given the service's priority back (where
        # the system allows it: root, CAP_SYS_NICE or RLIMIT_NICE) it stops within a second.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, process.pid, os.getpriority(os.PRIO_PROCESS, 0))
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning(
                "[Training] The learner did not stop within %.0f s; killed", self.STOP_SECONDS
            )
            process.kill()
            process.wait()
