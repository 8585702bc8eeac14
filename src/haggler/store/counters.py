"""Named counters: the serving version, the training switch, negotiations learned."""

from __future__ import annotations

from typing import cast

from sqlalchemy import (
    Table,
    bindparam,
    insert,
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
