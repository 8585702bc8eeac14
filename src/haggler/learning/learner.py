"""Online training: after each finished negotiation, gradient steps in the background.

One learner per agent. Negotiations hand their transitions to `submit`, which only enqueues them
and returns at once; a worker thread adds them to the replay buffer, runs
`min(len(experiences), train_steps)` gradient steps, publishes the new weights to the serving
snapshot, and every `save_interval` negotiations writes a checkpoint and the main model file.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from haggler.config import Settings
from haggler.core.transitions import Transitions
from haggler.learning.checkpoints import CheckpointError, save_checkpoint
from haggler.learning.dqn import BuyerAgent
from haggler.learning.pretraining import simulated_experience

log = logging.getLogger("haggler.training")

MERGED_BATCH_FACTOR = 4
"""A merged update's minibatches are this many times the usual. Measured on this 2-core
machine, one thread, the (128, 128) network: a step on 128 transitions takes 1.08 ms, on 512
2.09 ms, so a learner that has fallen behind samples twice the transitions per second."""
MERGED_CHUNK_STEPS = 8
"""Gradient steps between two looks at the clock in a merged update."""


def anchor_experience(agent: BuyerAgent, share: float, negotiations: int, *, seed: int) -> None:
    """Once per agent, when it first learns online: `negotiations` simulated negotiations against
    the training sellers, replayed as `share` of every minibatch (`BuyerAgent.anchor`;
    REPLAY_ANCHOR_SHARE and REPLAY_ANCHOR_NEGOTIATIONS in the service)."""
    if agent.anchor_buffer is not None or share <= 0:
        return
    started = time.perf_counter()
    experience = simulated_experience(agent, negotiations, seed=seed)
    agent.anchor(experience, share)
    log.info(
        "[Training] Replaying %d simulated transitions as %.0f%% of every batch (%.1f s)",
        len(experience.move),
        100 * share,
        time.perf_counter() - started,
    )


@dataclass(frozen=True)
class LearnerConfig:
    train_steps: int = 5
    """Gradient steps after each negotiation, at most one per new experience."""
    save_interval: int = 10
    """Negotiations between checkpoints."""
    keep_checkpoints: int = 10
    model_path: Path | None = Path("models/buyer_agent.pth")
    """The main model file written with every checkpoint (None: checkpoints only)."""
    checkpoint_dir: Path = Path("models/checkpoints")
    promotion_warmup: int = 0
    """Negotiations before the main model file follows the learner: until then it keeps the
    model that serves (a restart would otherwise serve the learner's weights early)."""

    @classmethod
    def from_settings(cls, settings: Settings, *, model_path: Path | None = None) -> LearnerConfig:
        """The online-training settings of the product (MODEL_PATH unless `model_path`)."""
        return cls(
            train_steps=settings.train_steps,
            save_interval=settings.save_interval,
            keep_checkpoints=settings.keep_checkpoints,
            model_path=model_path or settings.model_path,
            checkpoint_dir=settings.checkpoint_dir,
            promotion_warmup=settings.promotion_warmup,
        )


@dataclass
class LearnerStatus:
    negotiations: int = 0
    """Negotiations trained on since the counter started (it survives restarts via the store)."""
    last_loss: float | None = None
    last_checkpoint: Path | None = None
    checkpoint_error: str | None = None
    """The last failure to write a checkpoint; cleared by the next success."""
    update_delays: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    """Seconds from a negotiation's hand-over to the serving weights trained on it (recent)."""


@dataclass(frozen=True)
class MergedUpdate:
    """What one merged update of a learner that had fallen behind did."""

    negotiations: int
    experiences: int
    steps: int
    batch_size: int
    loss: float | None

    @property
    def samples(self) -> int:
        """Transitions the update's gradient steps sampled (with replacement)."""
        return self.steps * self.batch_size


class OnlineLearner:
    """Trains `agent` from finished negotiations on a background thread."""

    def __init__(
        self,
        agent: BuyerAgent,
        config: LearnerConfig,
        *,
        negotiations_done: int = 0,
        background: bool = True,
    ) -> None:
        self.agent = agent
        self.config = config
        self.status = LearnerStatus(negotiations=negotiations_done)
        self._jobs: queue.Queue[tuple[int, Transitions, float] | None] = queue.Queue()
        self._lock = threading.Lock()  # training and restoring never interleave
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._save_due = False
        self._thread = threading.Thread(target=self._run, name="haggler-learner", daemon=True)
        if background:  # else the owner calls `learn` and `save_if_due` itself
            self._thread.start()

    def submit(self, negotiation_id: int, experiences: Transitions) -> None:
        """Queue one finished negotiation's transitions for training; returns immediately."""
        with self._pending_lock:
            self._pending += 1
            self._idle.clear()
        self._jobs.put((negotiation_id, experiences, time.perf_counter()))

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted negotiation has been trained on (for tests and shutdown)."""
        return self._idle.wait(timeout)

    def restore(self, path: Path) -> None:
        """Load the checkpoint at `path` into the agent, between two training jobs."""
        with self._lock:
            self.agent.load_model(path)
        log.info("[Training] Restored model from %s", path)

    def close(self, timeout: float | None = 30.0) -> None:
        """Finish the queued work and stop the worker thread."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                with self._lock:
                    self._train_on(*job)
            except Exception:  # one bad batch must not stop learning for good
                log.exception("[Training] Failed to train on negotiation %d", job[0])
            finally:
                with self._pending_lock:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.set()

    def _train_on(self, negotiation_id: int, experiences: Transitions, submitted: float) -> None:
        self.learn(negotiation_id, experiences)
        self.status.update_delays.append(time.perf_counter() - submitted)
        self.save_if_due()

    def learn(self, negotiation_id: int, experiences: Transitions) -> float | None:
        """Take in one finished negotiation: add its experiences to the replay buffer and run
        `min(len(experiences), train_steps)` gradient steps; return the mean loss (None if no
        step ran). The caller holds the agent (no acting or restoring meanwhile)."""
        count = len(experiences.move)
        log.info("[Training] Starting online training from negotiation %d", negotiation_id)
        log.info("[Training] Processing %d experiences", count)
        self.agent.add_transitions(experiences)
        steps = min(count, self.config.train_steps)
        loss = None
        if steps > 0:
            loss = self.agent.train_steps(steps)  # publishes the new serving snapshot
            self.status.last_loss = loss
            log.info("[Training] Completed %d training steps, avg loss: %.4f", steps, loss)
        log.info("[Training] Replay buffer size: %d", self.agent.buffer_size)
        self.status.negotiations += 1
        self._save_due = self._save_due or self.status.negotiations % self.config.save_interval == 0
        return loss

    def learn_merged(
        self, negotiations: Sequence[tuple[int, Transitions]], *, seconds: float
    ) -> MergedUpdate:
        """Take in many waiting negotiations at once, for a learner that has fallen behind:
        add every experience to the replay buffer, then run gradient steps on minibatches
        MERGED_BATCH_FACTOR times the usual until they sampled as many transitions as one by
        one `learn` would have (`min(len(experiences), train_steps)` minibatches each) or
        `seconds` have passed, whichever comes first; at least one step. The caller holds the
        agent, as for `learn`."""
        experiences = sum(len(transitions.move) for _, transitions in negotiations)
        log.info(
            "[Training] Behind: merging %d negotiations (%d to %d) into one update",
            len(negotiations),
            negotiations[0][0],
            negotiations[-1][0],
        )
        log.info("[Training] Processing %d experiences", experiences)
        for _, transitions in negotiations:
            self.agent.add_transitions(transitions)
        usual = self.agent.config.batch_size
        wanted = usual * sum(
            min(len(transitions.move), self.config.train_steps) for _, transitions in negotiations
        )
        batch_size = usual * MERGED_BATCH_FACTOR
        deadline = time.perf_counter() + seconds
        steps, loss_sum = 0, 0.0
        while wanted > 0 and self.agent.buffer_size > 0:
            chunk = min(MERGED_CHUNK_STEPS, math.ceil((wanted - steps * batch_size) / batch_size))
            loss_sum += chunk * self.agent.train_steps(chunk, batch_size=batch_size)
            steps += chunk
            if steps * batch_size >= wanted or time.perf_counter() >= deadline:
                break
        loss = loss_sum / steps if steps else None
        if loss is not None:
            self.status.last_loss = loss
            log.info("[Training] Completed %d training steps, avg loss: %.4f", steps, loss)
        log.info("[Training] Replay buffer size: %d", self.agent.buffer_size)
        before = self.status.negotiations
        self.status.negotiations += len(negotiations)
        interval = self.config.save_interval
        self._save_due = (
            self._save_due or before // interval != self.status.negotiations // interval
        )
        return MergedUpdate(len(negotiations), experiences, steps, batch_size, loss)

    @property
    def save_due(self) -> bool:
        """Whether `save_interval` negotiations were reached since the last checkpoint."""
        return self._save_due

    def save_if_due(self) -> Path | None:
        """Write the checkpoint and main model if `save_interval` negotiations were reached."""
        if not self._save_due:
            return None
        self._save_due = False
        return self._save(self.status.negotiations)

    def _save(self, n: int) -> Path | None:
        try:
            path = save_checkpoint(
                self.agent,
                self.config.checkpoint_dir,
                negotiations=n,
                keep=self.config.keep_checkpoints,
                main_path=self.config.model_path if n >= self.config.promotion_warmup else None,
            )
        except CheckpointError as error:
            self.status.checkpoint_error = str(error)
            log.error("[Training] Checkpoint not saved after %d negotiations: %s", n, error)
            return None
        self.status.last_checkpoint = path
        self.status.checkpoint_error = None
        log.info("[Training] Model saved after %d negotiations", n)
        return path
