"""The serving process's learner supervisor stops its learner promptly, however busy the machine:
Ctrl-C on `haggler serve` waits for it."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import pytest

from haggler.config import Settings
from haggler.serving.learner_supervisor import LearnerProcess

# A stand-in for `haggler learn --low-priority`: at nice +10; on SIGTERM it prints its nice value
# and leaves, or (`stubborn`) ignores SIGTERM.
LEARNER = """
import os, signal, sys, time
os.nice(10)
def leave(*_):
    print(os.getpriority(os.PRIO_PROCESS, 0), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if sys.argv[1] == "stubborn" else leave)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


class StandIn(LearnerProcess):
    def __init__(self, mode: str) -> None:
        self.mode = mode
        super().__init__(Settings())

    def start(self) -> None:
        self._started = time.monotonic()
        self._process = subprocess.Popen(
            [sys.executable, "-c", LEARNER, self.mode], stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        assert self._process.stdout.readline() == "ready\n"


def may_raise_priority() -> bool:
    """Whether this process may take a child's CPU priority back up to its own."""
    own = os.getpriority(os.PRIO_PROCESS, 0)
    return os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_NICE)[0] >= 20 - own


@pytest.mark.skipif(not may_raise_priority(), reason="needs root, CAP_SYS_NICE or RLIMIT_NICE")
def test_the_learner_is_asked_to_stop_at_the_services_priority() -> None:
    learner = StandIn("polite")
    process = learner._process
    assert process is not None and process.stdout is not None
    with process.stdout:
        learner.stop()
        assert process.returncode == 0
        assert int(process.stdout.read()) == os.getpriority(os.PRIO_PROCESS, 0)
    assert not learner.alive()


def test_a_learner_that_does_not_stop_is_killed_soon() -> None:
    learner = StandIn("stubborn")
    process = learner._process
    assert process is not None and process.stdout is not None
    started = time.monotonic()
    with process.stdout:
        learner.stop()
    assert time.monotonic() - started < LearnerProcess.STOP_SECONDS + 2
    assert process.returncode == -9
