"""How far behind the store's learner is: its pace, when it merges what waits, and what each of
its steps records (the training history's `pending`, `merged`, `samples_per_negotiation` and
`delay_s`)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from haggler.store.experiences import QueuedNegotiation


@dataclasses.dataclass
class StepLag:
    """How far behind the learner is, as one step saw it (a point of the training history)."""

    pending: int = 0
    """Finished negotiations still waiting after the step."""
    merged: int = 0
    """Negotiations the step merged into one update (0: it trained on each one by one)."""
    samples: int = 0
    """Transitions the step's gradient steps sampled."""
    delay_s: float | None = None
    """Median seconds from the end of the step's negotiations to the version it published."""


@dataclasses.dataclass
class Pace:
    """The learner's recent pace: seconds per gradient step of one-by-one training, with what
    goes with it (an exponential mean: the machine's load changes)."""

    seconds_per_step: float | None = None
    """None until the first step measures it."""

    def measure(self, seconds_per_step: float) -> None:
        if self.seconds_per_step is None:
            self.seconds_per_step = seconds_per_step
        else:
            self.seconds_per_step = 0.8 * self.seconds_per_step + 0.2 * seconds_per_step

    def falls_behind(
        self, queue: list[QueuedNegotiation], *, batch: int, train_steps: int, budget: float
    ) -> bool:
        """Whether the waiting `queue` is more than one step trains one negotiation at a time:
        more than `batch` negotiations, or more gradient steps than this pace runs in `budget`
        seconds (half of LEARNER_MAX_DELAY). Then the step merges it."""
        if self.seconds_per_step is None or not queue:
            return False  # the first step trains one by one, and measures the pace
        steps = sum(
            min(len(n.experiences.move), train_steps) for n in queue if n.experiences is not None
        )
        return len(queue) > batch or steps * self.seconds_per_step > budget


def waited(negotiation: QueuedNegotiation) -> float:
    """Seconds since `negotiation` finished."""
    finished = negotiation.finished_at
    if finished is None:
        return 0.0
    if finished.tzinfo is None:  # SQLite hands back naive datetimes (stored as UTC)
        finished = finished.replace(tzinfo=UTC)
    return (datetime.now(UTC) - finished).total_seconds()


def median_wait(queue: list[QueuedNegotiation]) -> float | None:
    waits = sorted(waited(n) for n in queue)
    return waits[len(waits) // 2] if waits else None
