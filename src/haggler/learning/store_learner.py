"""The service's learner: learns from the store and publishes model versions to it.

Serving processes never train (measured: gradient steps inside the serving process doubled the
p99 turn latency). They store every decision; this learner, one per store, takes each finished
negotiation from the store, runs the spec's online training on it (`OnlineLearner.learn`: the
log lines, `min(len(experiences), TRAIN_STEPS)` steps, checkpoints every `SAVE_INTERVAL`), and
publishes the new weights as a model version that every serving process picks up within a poll.
It runs as its own process (`haggler learn`, which `serving.learner_supervisor` starts and
restarts for `haggler serve`), or as a thread of the serving process (`LEARNER=thread`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

import torch
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from haggler.config import Settings
from haggler.learning.dqn import BuyerAgent
from haggler.learning.lag import Pace, StepLag, median_wait
from haggler.learning.learner import LearnerConfig, OnlineLearner, anchor_experience
from haggler.policy.snapshot import ModelFileError, PolicySnapshot
from haggler.safety.safe_learning import SafeLearning
from haggler.store import base as store
from haggler.store import counters, maintenance, versions
from haggler.store import experiences as experience_store
from haggler.store import metrics as metric_store
from haggler.store import snapshots as snapshot_store
from haggler.store.experiences import QueuedNegotiation

log = logging.getLogger("haggler.training")

MERGE_LIMIT = 4096
"""The most waiting negotiations one step takes in (a longer queue takes several steps)."""
LEASE_SECONDS = 6.0
"""How long a learner's claim on the store lasts without renewal (it renews at half of it): a
learner that died is replaced by one standing by within this time."""


@dataclasses.dataclass
class _Unwritten:
    """What steps took in whose write has not committed (it failed, or a restore won the race):
    the next step writes it without taking the negotiations in again."""

    taken_in: dict[int, bool] = dataclasses.field(default_factory=dict)
    """Negotiations in the replay buffer: True for those also trained on and counted."""
    losses: list[float] = dataclasses.field(default_factory=list)
    """The losses of the gradient steps not yet published."""
    checkpoint: Path | None = None
    """A checkpoint written that the training history does not name yet."""


class StoreLearner:
    """Online training fed by the store: one `step` takes in what finished since the last."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        poll_seconds: float = 0.05,
        batch: int = 64,
        write_priority: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.write_priority = write_priority
        """Entered around every write. `haggler learn --low-priority` passes one that takes the
        service's CPU priority back, where the process may, while the learner holds the store's
        write lock (on SQLite every serving process waits for it)."""
        torch.set_num_threads(1)  # measured: a second thread only added latency spikes
        self.agent = BuyerAgent.from_file(settings.model_path)
        config = LearnerConfig.from_settings(settings)
        if settings.promotion == "gated":  # the main model file follows what serves
            config = dataclasses.replace(config, model_path=None)
        self.learner = OnlineLearner(self.agent, config, background=False)
        self.version: int | None = None
        """The serving version this learner last published or followed."""
        self._last_tidy = 0.0
        self.behind = False
        """Whether the last step left negotiations in the queue (the next one starts at once)."""
        self.learner_id = secrets.randbelow(2**31 - 1) + 1
        self._lease_until = 0.0
        self._standing_by = False
        self.safety = SafeLearning(
            settings, sessions, seed=self.learner_id, write_priority=write_priority
        )
        self.gated = settings.promotion == "gated"
        self._last_candidate_at = 0
        """Negotiations learned from when the last candidate was judged."""
        self._unwritten = _Unwritten()
        self.pace = Pace()

    def start(self) -> None:
        """Catch up with the store: the serving weights, the counters, the replay buffer."""
        started = time.perf_counter()
        self.agent.serve(versions.ensure_serving(self.sessions, lambda: self.agent.snapshot))
        with self.sessions() as session:
            self.learner.status.negotiations = counters.get_counter(
                counters.NEGOTIATIONS_LEARNED, session=session
            )
            self._follow(session, snapshot_store.serving_version(session=session))
            experiences = experience_store.learned_experiences(
                session=session, limit=self.agent.config.buffer_size
            )
        if experiences is not None:
            self.agent.add_transitions(experiences)
        self.agent.set_learning_rate(self.settings.online_learning_rate)
        if self.holds_lease():
            with self.sessions() as session:  # the restart shows in the history
                self._record(session, enabled=False, losses=[], checkpoint=None, lag=StepLag())
                session.commit()
        log.info(
            "[Training] Learner ready in %.1f s: model version %s, replay buffer %d, "
            "%d negotiations trained on",
            time.perf_counter() - started,
            self.version,
            self.agent.buffer_size,
            self.learner.status.negotiations,
        )

    def _follow(self, session: Session, serving: int | None) -> None:
        """Learn on from the version that serves now (a restore, or another learner's)."""
        if serving is None or serving == self.version:
            return
        stored = snapshot_store.get_snapshot(serving, session=session)
        if self.gated and stored.source == "training" and self.version is not None:
            # One of this learner's own candidates was promoted: it has learned on past it.
            self.version = serving
            return
        loaded = False
        if stored.source == "restore" and stored.checkpoint is not None:
            path = self.settings.checkpoint_dir / stored.checkpoint
            try:  # the whole training state: target network and optimiser too
                self.agent.load_model(path)
                loaded = True
            except ModelFileError as error:
                log.warning("[Training] %s; learning on from the restored weights only", error)
        if loaded:
            self.agent.serve(dataclasses.replace(self.agent.snapshot, version=serving))
        elif stored.weights is not None:
            self.agent.adopt(PolicySnapshot.from_bytes(stored.weights, serving))
        self.agent.set_learning_rate(self.settings.online_learning_rate)
        if self.version is not None:
            log.info("[Training] Learning on from model version %d (%s)", serving, stored.source)
        self.version = serving

    def holds_lease(self) -> bool:
        """Whether this is the store's one learner: claim or renew the lease when it runs low."""
        now = time.time()
        if self._lease_until - now > LEASE_SECONDS / 2:
            return True
        with self.write_priority(), self.sessions() as session:  # a write, however small
            held = maintenance.claim_learner_lease(
                self.learner_id, session=session, now=now, seconds=LEASE_SECONDS
            )
            session.commit()
        if held:
            self._lease_until = now + LEASE_SECONDS
            if self._standing_by:
                log.info("[Training] Took over as the store's learner")
        elif not self._standing_by:
            log.info("[Training] Another learner holds the store; standing by")
        self._standing_by = not held
        return held

    def release(self) -> None:
        """Give up the lease (a clean stop): a learner standing by takes over at once."""
        with self.write_priority(), self.sessions() as session:
            maintenance.release_learner_lease(self.learner_id, session=session)
            session.commit()
        self._lease_until = 0.0

    def step(self) -> int:
        """Take in the negotiations that finished since the last step; return how many.

        Each negotiation is taken in once, whatever fails: the replay buffer, the count and the
        gradient steps happen here, in memory, before the one write that takes it off the
        store's queue and counts it there. A write that fails (or loses the race to a restore)
        leaves the negotiations on the queue and in `_unwritten`, and the next step writes them
        without taking them in again; a learner killed before the write learns them once after
        its restart, whose replay buffer holds only what the store says was learned."""
        if not self.holds_lease():
            return 0
        with self.sessions() as session:
            enabled = counters.get_counter(counters.TRAINING_ENABLED, session=session) == 1
            self._follow(session, snapshot_store.serving_version(session=session))
            queue = experience_store.negotiations_to_learn(session=session, limit=MERGE_LIMIT)
            waiting = len(queue)
            if waiting == MERGE_LIMIT:
                waiting = experience_store.count_to_learn(session=session)
            next_version = snapshot_store.highest_version(session=session) + 1
        unwritten = self._unwritten
        if not queue:
            # What a failed write left, if anything, is off the queue already: its commit went
            # through after all, or another learner took it in.
            self._unwritten = _Unwritten()
            return 0
        if enabled:
            anchor_experience(
                self.agent,
                self.settings.replay_anchor_share,
                self.settings.replay_anchor_negotiations,
                seed=self.learner_id,
            )
            if not self.holds_lease():  # building it took long enough for another to take over
                return 0
        fresh = [n for n in queue if n.experiences is not None and n.id not in unwritten.taken_in]
        merge = enabled and self.pace.falls_behind(
            fresh,
            batch=self.batch,
            train_steps=self.learner.config.train_steps,
            budget=self.settings.learner_max_delay / 2,
        )
        lag = StepLag()
        if merge:
            lag.merged, lag.samples = len(fresh), self._take_in_merged(fresh, unwritten)
        else:
            queue, lag.samples = self._take_in_one_by_one(queue[: self.batch], unwritten, enabled)
        lag.pending = waiting - len(queue)
        self.behind = lag.pending > 0  # more are waiting: step again at once
        published = None
        warm = self.learner.status.negotiations >= self.settings.promotion_warmup
        # The checkpoint (if due) carries the version it is published as.
        if unwritten.losses and warm:
            published = dataclasses.replace(self.agent.snapshot, version=next_version)
            self.agent.serve(published)
        if enabled and (saved := self.learner.save_if_due()) is not None:
            unwritten.checkpoint = saved
        checkpoint = unwritten.checkpoint
        candidate = None
        if self.gated:  # the updates wait for the gate: only checkpoints become candidates
            since = self.learner.status.negotiations - self._last_candidate_at
            if (
                checkpoint is not None
                and published is not None
                and since >= self.settings.gate_interval
            ):
                candidate = (published, checkpoint.name)
            published = None
        queued = {n.id for n in queue}
        to_mark = [*queued, *(i for i in unwritten.taken_in if i not in queued)]
        trained_from = min(n.finished_at or datetime.now(UTC) for n in queue)
        # One short write transaction per step: on SQLite every serving process waits for it.
        with self.write_priority(), self.sessions() as session:
            try:
                learned = experience_store.mark_learned(
                    to_mark,
                    session=session,
                    trained_on=[i for i, trained in unwritten.taken_in.items() if trained],
                )
                if published is not None:
                    versions.publish(
                        session,
                        published,
                        expected_serving=self.version,
                        source="training",
                        negotiations=self.learner.status.negotiations,
                        trained_from=trained_from,
                        # On SQLite every serving process waits while this transaction writes:
                        # dropping old weights (3 of its 8-10 ms measured under load) waits
                        # for `_tidy_store`.
                        forget_old=False,
                    )
                if published is not None:
                    lag.delay_s = median_wait(queue)
                if lag.merged:
                    counters.add_to_counter(
                        counters.NEGOTIATIONS_MERGED, lag.merged, session=session
                    )
                self._record(
                    session,
                    enabled=enabled,
                    losses=unwritten.losses,
                    checkpoint=checkpoint,
                    lag=lag,
                    trained=sum(unwritten.taken_in.values()),
                )
                session.commit()
            except store.Conflict:  # a restore won the race: learn on from it
                session.rollback()
                # The negotiations stay taken in (replay buffer, count), to be written by the
                # next step; what was learned from them is replaced by the restored weights.
                unwritten.losses.clear()
                unwritten.checkpoint = None
                return 0
        self._unwritten = _Unwritten()
        if learned is not None and learned != self.learner.status.negotiations:
            log.warning(
                "[Training] The store counts %d negotiations learned, this learner %d "
                "(another learner took some in); counting on from the store's",
                learned,
                self.learner.status.negotiations,
            )
            self.learner.status.negotiations = learned
        if published is not None:
            self.version = published.version
        if candidate is not None:  # judged once the negotiations are safely marked learned
            self._last_candidate_at = self.learner.status.negotiations
            self.safety.judge_candidate(
                candidate[0],
                negotiations=self.learner.status.negotiations,
                checkpoint=candidate[1],
                trained_from=trained_from,
            )
        return len(queue)

    def _take_in_merged(self, fresh: list[QueuedNegotiation], unwritten: _Unwritten) -> int:
        """Fallen behind: every waiting negotiation in one update; return the samples drawn."""
        taken_in = [(n.id, n.experiences) for n in fresh if n.experiences is not None]
        # Noted before they are taken in: a failure half-way does not take them in again.
        unwritten.taken_in.update(dict.fromkeys((i for i, _ in taken_in), False))
        update = self.learner.learn_merged(taken_in, seconds=self.settings.learner_max_delay / 2)
        unwritten.taken_in.update(dict.fromkeys((i for i, _ in taken_in), True))
        if update.loss is not None:
            unwritten.losses.append(update.loss)
        return update.samples

    def _take_in_one_by_one(
        self, queue: list[QueuedNegotiation], unwritten: _Unwritten, enabled: bool
    ) -> tuple[list[QueuedNegotiation], int]:
        """The spec's online training, one negotiation at a time (or, training off, into the
        replay buffer only); return the negotiations taken in (a step stops at a checkpoint)
        and the samples drawn."""
        started, steps = time.perf_counter(), 0
        for taken, negotiation in enumerate(queue, start=1):
            experiences = negotiation.experiences
            if experiences is None or negotiation.id in unwritten.taken_in:
                continue
            # Noted before it is taken in: one that fails half-way is not taken in again.
            unwritten.taken_in[negotiation.id] = False
            if enabled:
                loss = self.learner.learn(negotiation.id, experiences)
                unwritten.taken_in[negotiation.id] = True
                steps += min(len(experiences.move), self.learner.config.train_steps)
                if loss is not None:
                    unwritten.losses.append(loss)
                if self.learner.save_due:  # the checkpoint holds exactly SAVE_INTERVAL more
                    queue = queue[:taken]
                    break
            else:  # every experience is kept; training resumes with it when switched on
                self.agent.add_transitions(experiences)
        if steps:
            self.pace.measure((time.perf_counter() - started) / steps)
        return queue, steps * self.agent.config.batch_size

    def _record(
        self,
        session: Session,
        *,
        enabled: bool,
        losses: list[float],
        checkpoint: Path | None,
        lag: StepLag,
        trained: int = 0,
    ) -> None:
        """One point of the training history (the dashboard's charts, `/api/training`)."""
        status = self.learner.status
        metric_store.add_training_point(
            metric_store.TrainingPoint(
                at=datetime.now(UTC),
                negotiations=status.negotiations,
                loss=sum(losses) / len(losses) if losses else None,
                replay_buffer_size=self.agent.buffer_size,
                epsilon=self.settings.epsilon if enabled else 0.0,
                model_version=self.agent.model_version,
                checkpoint=checkpoint.name if checkpoint is not None else None,
                checkpoint_error=status.checkpoint_error if checkpoint is None else None,
                pending=lag.pending,
                merged=lag.merged,
                samples_per_negotiation=lag.samples / trained if trained else None,
                delay_s=lag.delay_s,
            ),
            session=session,
        )

    def run(self, stop: threading.Event, *, parent_pid: int | None = None) -> None:
        """Step until `stop` is set (or, in a process of its own, until the parent is gone).

        Steps start at most every `poll_seconds`: under load each one takes in everything that
        finished meanwhile, so the writes to the store stay few whatever the traffic. Every 50
        ms by default: the wait for the next look is most of a negotiation's delay to the
        weights that learn from it while the learner keeps up (an idle look is four reads). A step
        that left some behind (a full batch, or a checkpoint reached) is followed at once."""
        self.start()
        try:
            while not stop.is_set():
                if parent_pid is not None and os.getppid() != parent_pid:
                    log.info("[Training] The service stopped; the learner stops too")
                    return
                started = time.monotonic()
                self.behind = False
                try:
                    self.step()
                    if self.holds_lease():
                        self.safety.watch()
                    self._tidy_store()
                except OperationalError as error:  # a busy or restarting database: try again
                    log.warning("[Training] Store unavailable (%s); retrying", error.orig)
                    stop.wait(1.0)
                except Exception:  # one bad negotiation must not stop learning for good
                    log.exception("[Training] Learner step failed")
                    stop.wait(1.0)
                if not self.behind:
                    stop.wait(max(0.0, self.poll_seconds - (time.monotonic() - started)))
        finally:
            with contextlib.suppress(OperationalError):
                self.release()

    def _tidy_store(self) -> None:
        """Once a second: drop the weights of old model versions, and on SQLite fold the
        write-ahead log into the database. Serving processes fold it too, off their event loop,
        but only when this has not let it start over for a while (`WriteAheadLogFold`)."""
        now = time.monotonic()
        if now - self._last_tidy < 1.0:
            return
        self._last_tidy = now
        with self.write_priority(), self.sessions() as session:
            versions.forget_old_weights(session)
            session.commit()
        # At the writes' priority too: the RESTART pass holds the store's writers back while it
        # runs, and a PASSIVE pass slowed by a low priority would leave it more to copy.
        with self.write_priority(), self.sessions() as session:
            maintenance.checkpoint_write_ahead_log(session=session)
