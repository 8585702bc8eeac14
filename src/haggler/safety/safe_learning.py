"""Safe online learning in the service: the gate, A/B tests and automatic rollback, over the store.

The learner (one per store) calls `SafeLearning.judge_candidate` at every checkpoint when
PROMOTION=gated, and `SafeLearning.watch` every few seconds: it closes A/B tests when the
stopping rule has enough evidence and rolls back to the last known good version when live results
degrade. The statistics live in the core modules (`promotion`, `ab_testing`, `rollback`); this
module reads their inputs from the store and writes their decisions back, each as one
transaction that a serving process picks up within its next poll.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from haggler.config import Settings
from haggler.policy.snapshot import ModelFileError, PolicySnapshot
from haggler.safety import ab_testing, candidates, promotion, rollback
from haggler.safety.ab_decisions import arm_outcome, decide_ab_test, write_main_model
from haggler.store import base as store
from haggler.store import counters, experiments, versions
from haggler.store import snapshots as snapshot_store

log = logging.getLogger("haggler.safety")

WATCH_SECONDS = 5.0
"""How often the learner looks at the running A/B test and at live results (a rollback comes
within this of the monitor's alarm: well inside the minute the product promises)."""
REFERENCE_WINDOWS = 5
"""The reference is the known good version's last 5 windows of negotiations: measured by
`rollback.detection_simulation`, a 10-point fall in deal rate was caught in 88% of runs against
a reference of 1,000 negotiations and in 38% against one of 200, at the same false-alarm rate."""


@dataclasses.dataclass
class SafeLearning:
    """The learner's side of safe online learning."""

    settings: Settings
    sessions: sessionmaker[Session]
    seed: int = 0
    write_priority: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
    """Entered around every write: the learner runs at a low CPU priority (nice 10) and must not
    hold the store's write lock there (serving processes would wait for a free core)."""
    gate: promotion.GateConfig = dataclasses.field(init=False)
    stopping_rule: ab_testing.StoppingRule = dataclasses.field(init=False)
    monitor: rollback.MonitorConfig = dataclasses.field(init=False)
    _rng: np.random.Generator = dataclasses.field(init=False)
    _last_watch: float = 0.0

    def __post_init__(self) -> None:
        self.gate = candidates.gate_config(self.settings)
        self.stopping_rule = ab_testing.StoppingRule()
        window = self.settings.rollback_window
        self.monitor = rollback.MonitorConfig(
            window=window, min_negotiations=min(rollback.MonitorConfig.min_negotiations, window)
        )
        self._rng = np.random.default_rng(self.seed)

    # -- the gate ---------------------------------------------------------------------------

    def judge_candidate(
        self,
        candidate: PolicySnapshot,
        *,
        negotiations: int,
        checkpoint: str | None,
        trained_from: datetime | None,
    ) -> str:
        """Judge a checkpoint as a candidate against the serving model; store the verdict, and
        promote it or start an A/B test if it passes. Returns the candidate's status."""
        with self.sessions() as session:
            running = experiments.running_ab_test(session=session)
        if running is not None:
            log.info(
                "[Safety] A/B test %d is running: checkpoint after %d negotiations not judged",
                running.id,
                negotiations,
            )
            return "skipped"
        started = time.perf_counter()
        judged: candidates.Judgement | None = None
        figures: dict[str, Any] | None = None  # none when the evaluation failed
        try:
            judged = candidates.judge_against_serving(
                self.sessions, candidate, self.gate, rng=self._rng
            )
            decision = judged.decision
            passed, reason, figures = decision.passed, decision.reason, decision.figures
        except candidates.NoChampion:
            return "rejected"
        except (ValueError, ModelFileError) as error:  # bad logged data must not stop learning
            passed, reason, figures = False, f"evaluation failed: {error}", None
        log.info(
            "[Safety] Candidate version %d %s in %.1f s: %s",
            candidate.version,
            "passed the gate" if passed else "rejected",
            time.perf_counter() - started,
            reason,
        )
        with self.write_priority(), self.sessions() as session:
            try:  # the verdict is kept whatever happens next
                experiments.add_candidate(
                    candidate.to_bytes(),
                    session=session,
                    version=candidate.version,
                    negotiations=negotiations,
                    status="candidate" if passed else "rejected",
                    reason=reason,
                    evaluation=figures,
                    checkpoint=checkpoint,
                    trained_from=trained_from,
                )
                session.commit()
            except store.Conflict as error:  # its number was taken meanwhile (a restore)
                session.rollback()
                log.info("[Safety] Candidate version %d dropped: %s", candidate.version, error)
                return "dropped"
        if judged is None or not passed:
            return "rejected"
        champion = judged.champion
        with self.write_priority(), self.sessions() as session:
            try:
                if snapshot_store.serving_version(session=session) != champion.version:
                    raise store.Conflict("the serving model changed while the candidate was judged")
                if self.settings.ab_split > 0.0:
                    test = experiments.start_ab_test(
                        champion.version, candidate.version, self.settings.ab_split, session=session
                    )
                    status = "candidate"
                else:
                    experiments.promote(
                        candidate.version,
                        expected_serving=champion.version,
                        reason=f"passed the gate: {reason}",
                        session=session,
                    )
                    status = "promoted"
                versions.forget_old_weights(session)
                session.commit()
            except store.Conflict as error:  # a restore, a rollback or an operator's test came
                session.rollback()
                with self.write_priority(), self.sessions() as session:
                    experiments.set_status(
                        candidate.version,
                        "rejected",
                        f"passed the gate, but {error}",
                        session=session,
                    )
                    session.commit()
                log.info("[Safety] Candidate version %d not served: %s", candidate.version, error)
                return "rejected"
        if status == "candidate":
            log.info(
                "[Safety] A/B test %d: version %d against %d on %.0f%% of negotiations",
                test.id,
                candidate.version,
                champion.version,
                100 * self.settings.ab_split,
            )
        else:
            write_main_model(self.settings, checkpoint)
        return status

    # -- A/B tests and the rollback monitor ---------------------------------------------------

    def watch(self, *, force: bool = False) -> None:
        """Every WATCH_SECONDS: look at the running A/B test, then at live results."""
        now = time.monotonic()
        if not force and now - self._last_watch < WATCH_SECONDS:
            return
        self._last_watch = now
        self.look_at_ab_test()
        if self.settings.auto_rollback:
            self.look_at_live_results()

    def look_at_ab_test(self) -> ab_testing.Verdict | None:
        with self.sessions() as session:
            test = experiments.running_ab_test(session=session)
            if test is None:
                return None
            serving = snapshot_store.serving_version(session=session)
            if serving != test.champion_version:
                # A restore or a rollback replaced the champion: the test compares nothing now.
                with self.write_priority():
                    try:
                        experiments.end_ab_test(
                            test.id,
                            session=session,
                            status="stopped",
                            decided_by="rule",
                            reason=f"version {serving} replaced the champion "
                            f"{test.champion_version} during the test",
                        )
                        experiments.set_status(
                            test.challenger_version,
                            "rejected",
                            f"A/B test {test.id} stopped: the champion was replaced",
                            session=session,
                        )
                        session.commit()
                    except store.Conflict:
                        session.rollback()
                return None
            arms = {
                arm: [
                    arm_outcome(o)
                    for o in experiments.finished_outcomes(
                        session=session,
                        limit=10 * self.stopping_rule.max_per_arm,
                        ab_test_id=test.id,
                        arm=arm,
                    )
                ]
                for arm in ("champion", "challenger")
            }
        verdict = ab_testing.judge(arms["champion"], arms["challenger"], self.stopping_rule)
        figures = verdict.as_dict()
        try:
            if verdict.decision == "continue":
                with self.write_priority(), self.sessions() as session:
                    experiments.record_verdict(test.id, figures, session=session)
                    session.commit()
            else:
                decide_ab_test(
                    self.sessions,
                    test.id,
                    verdict.decision,
                    settings=self.settings,
                    decided_by="rule",
                    reason=verdict.reason,
                    verdict=figures,
                )
        except store.Conflict as error:  # an operator decided first, or a rollback came
            log.info("[Safety] A/B test %d not closed by the rule: %s", test.id, error)
        return verdict

    def look_at_live_results(self) -> rollback.Alarm | None:
        """Compare the live results since the mark with the reference window before it; roll
        back to the known good version on an alarm, or move the mark on after a clean window."""
        window = self.monitor.window
        with self.sessions() as session:
            mark = experiments.monitor_mark(session=session)
            serving = snapshot_store.serving_version(session=session)
            latest = experiments.latest_finished_id(session=session)
            reference = experiments.finished_outcomes(
                session=session,
                limit=REFERENCE_WINDOWS * window,
                up_to_id=mark.reference_up_to,
                champion_only=True,
            )
            current = experiments.finished_outcomes(
                session=session, limit=window, after_id=mark.watch_from, champion_only=True
            )
        if serving is None:
            return None
        if mark.known_good is None or len(reference) < self.monitor.min_negotiations:
            # Nothing to compare with yet: what serves now is the reference from here on.
            if current and len(reference) + len(current) >= self.monitor.min_negotiations:
                self._move_mark(experiments.MonitorMark(serving, latest, latest))
            elif mark.known_good is None:
                self._move_mark(
                    experiments.MonitorMark(serving, mark.reference_up_to, mark.watch_from)
                )
            return None
        alarm = rollback.check(
            [arm_outcome(o) for o in current], [arm_outcome(o) for o in reference], self.monitor
        )
        if alarm is None:
            if len(current) >= window:  # a clean full window
                self._move_mark(
                    experiments.MonitorMark(
                        self._proven_version(current) or mark.known_good,
                        current[-1].id,
                        current[-1].id,
                    )
                )
            return None
        self._roll_back(alarm, mark, serving, latest)
        return alarm

    def _proven_version(self, window: list[experiments.FinishedOutcome]) -> int | None:
        """The newest version that played enough of a clean window to be judged by it, and whose
        weights the store still has (a rollback must be able to serve them)."""
        played = Counter(o.model_version for o in window)
        with self.sessions() as session:
            for version in sorted(played, reverse=True):
                if played[version] < self.monitor.min_negotiations:
                    continue
                try:
                    if snapshot_store.get_snapshot(version, session=session).weights is not None:
                        return version
                except store.NotFound:
                    continue
        return None

    def _move_mark(self, mark: experiments.MonitorMark) -> None:
        with self.write_priority(), self.sessions() as session:
            experiments.set_monitor_mark(mark, session=session)
            session.commit()

    def _roll_back(
        self, alarm: rollback.Alarm, mark: experiments.MonitorMark, serving: int, latest: int
    ) -> None:
        assert mark.known_good is not None
        with self.write_priority(), self.sessions() as session:
            stored = snapshot_store.get_snapshot(serving, session=session)
            good = snapshot_store.get_snapshot(mark.known_good, session=session)
            if mark.known_good in (serving, stored.copy_of):
                # The known good weights serve already: the sellers changed, not the model.
                log.warning(
                    "[Safety] Live results fell (%s), but the known good version %d serves: "
                    "nothing to roll back; they are the reference from now on",
                    alarm.reason,
                    mark.known_good,
                )
                experiments.set_monitor_mark(
                    experiments.MonitorMark(mark.known_good, latest, latest), session=session
                )
                session.commit()
                return
            if good.weights is None:
                log.error(
                    "[Safety] Live results fell (%s), but version %d has no weights left",
                    alarm.reason,
                    mark.known_good,
                )
                return
            version = snapshot_store.highest_version(session=session) + 1
            snapshot = PolicySnapshot.from_bytes(good.weights, version)
            running = experiments.running_ab_test(session=session)
            try:
                if running is not None:
                    experiments.end_ab_test(
                        running.id,
                        session=session,
                        status="stopped",
                        decided_by="rollback",
                        reason=f"stopped by a rollback: {alarm.reason}",
                    )
                    experiments.set_status(
                        running.challenger_version,
                        "rejected",
                        f"A/B test {running.id} stopped by a rollback",
                        session=session,
                    )
                versions.publish(
                    session,
                    snapshot,
                    expected_serving=serving,
                    source="rollback",
                    negotiations=counters.get_counter(
                        counters.NEGOTIATIONS_LEARNED, session=session
                    ),
                    reason=f"rolled back from version {serving} to {mark.known_good}: "
                    f"{alarm.reason}",
                    copy_of=mark.known_good,
                )
                # The reference stays the good window; watching starts again after the rollback,
                # past the negotiations the replaced model may still be finishing.
                experiments.set_monitor_mark(
                    experiments.MonitorMark(
                        mark.known_good,
                        mark.reference_up_to,
                        experiments.latest_negotiation_id(session=session),
                    ),
                    session=session,
                )
                session.commit()
            except store.Conflict:  # the serving model changed meanwhile: look again next time
                session.rollback()
                return
        log.warning(
            "[Safety] Rolled back from version %d to version %d (as version %d): %s",
            serving,
            mark.known_good,
            version,
            alarm.reason,
        )
