"""Named counters: the serving version, the training switch, negotiations learned."""

from __future__ import annotations

from typing import cast

from sqlalchemy import (
    Table,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from haggler.store.base import run_statement
from haggler.store.tables import (
    CounterRow,
)

# -- model snapshots: what serves, and the log of model changes ----------------------------------

SERVING_VERSION = "serving_version"
"""Counter naming the model version every serving process acts with."""
TRAINING_ENABLED = "training_enabled"
"""Counter: 1 while online training is on (switched at run time by the operator)."""
NEGOTIATIONS_LEARNED = "negotiations_learned"
"""Counter: negotiations the learner has trained on (checkpoint names count with it)."""
MODEL_VERSIONS = "versions:"
"""Prefix of the counters of model versions by source and status (`versions:training:promoted`):
the dashboard and /metrics read these few rows, not one row per version published."""
PROMOTIONS = "promotions"
"""Counter: trained versions that ever went on to serve."""
NEGOTIATIONS_MERGED = "negotiations_merged"
"""Counter: negotiations a learner that had fallen behind merged into larger updates."""


COUNTERS = cast(Table, CounterRow.__table__)
SET_COUNTER = (
    update(COUNTERS)
    .where(COUNTERS.c.name == bindparam("counter"))
    .values(value=bindparam("counter_value"))
)
SWAP_COUNTER = SET_COUNTER.where(COUNTERS.c.value == bindparam("expected_value"))
ADD_TO_COUNTER = (
    update(COUNTERS)
    .where(COUNTERS.c.name == bindparam("counter"))
    .values(value=COUNTERS.c.value + bindparam("counter_delta"))
    .returning(COUNTERS.c.value)
)
INSERT_COUNTER = insert(COUNTERS)


# -- counters ---------------------------------------------------------------------------------


def get_counter(name: str, *, session: Session) -> int:
    row = session.get(CounterRow, name)
    return row.value if row is not None else 0


def set_counter(name: str, value: int, *, session: Session) -> None:
    """Set counter `name` (on the driver's cursor: the learner sets one every step)."""
    if (
        run_statement(session, SET_COUNTER, [{"counter": name, "counter_value": value}]).rowcount
        == 0
    ):
        run_statement(session, INSERT_COUNTER, [{"name": name, "value": value}])
    forget_loaded_counter(name, session=session)


def add_to_counter(name: str, delta: int, *, session: Session) -> int:
    """Add `delta` to counter `name` in the store itself (not a value computed from a read, which
    a second writer or a retry would overwrite or repeat); return its new value."""
    ran = run_statement(session, ADD_TO_COUNTER, [{"counter": name, "counter_delta": delta}])
    if ran.returned is None:
        run_statement(session, INSERT_COUNTER, [{"name": name, "value": delta}])
        value = delta
    else:
        value = int(ran.returned[0])
    forget_loaded_counter(name, session=session)
    return value


def forget_loaded_counter(name: str, *, session: Session) -> None:
    """The driver's cursor bypasses the session: a counter it loaded before must be read again."""
    loaded = session.identity_map.get(session.identity_key(CounterRow, name))
    if loaded is not None:
        session.expire(loaded)


def count_model_version(source: str, status: str, delta: int, *, session: Session) -> None:
    """Count a model version of `source` into (+1) or out of (-1) `status`, in the caller's
    transaction with the write that stored or changed it."""
    add_to_counter(f"{MODEL_VERSIONS}{source}:{status}", delta, session=session)


def model_version_counts(*, session: Session) -> dict[tuple[str, str], int]:
    """How many model versions there are per (source, status)."""
    rows = session.execute(
        select(CounterRow.name, CounterRow.value).where(
            CounterRow.name.startswith(MODEL_VERSIONS, autoescape=True)
        )
    ).all()
    counts = {}
    for name, value in rows:
        source, status = name.removeprefix(MODEL_VERSIONS).split(":", 1)
        if value > 0:
            counts[(source, status)] = int(value)
    return counts
