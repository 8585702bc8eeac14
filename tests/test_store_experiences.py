"""The learner's queue in the store: taking negotiations off it and counting them is one write,
and writing it again (a retry, a second learner) changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from haggler.core.catalogue import Product
from haggler.core.negotiation import Action, Party, Terms, apply_move, open_negotiation
from haggler.store import catalogue as catalogue_store
from haggler.store import counters
from haggler.store import experiences as experience_store
from haggler.store import negotiations as negotiation_store
from test_store import _decision


def finished_negotiations(session: Session, count: int) -> list[int]:
    """`count` negotiations of one buyer counter accepted by the seller, stored as served."""
    product = catalogue_store.add_product(
        Product("Pallet wrap", "warehouse", 100.0), session=session
    )
    ids = []
    for _ in range(count):
        opened = open_negotiation(Terms(100.0, 95.0, max_rounds=5), 120.0)
        negotiation_id = negotiation_store.create_negotiation(
            opened,
            session=session,
            product_id=product.id,
            seller=negotiation_store.SellerInfo("simulated", "linear", 1),
            model_version=7,
        )
        session.commit()
        state = apply_move(opened, Party.BUYER, Action.counter(90.0))
        state = apply_move(state, Party.SELLER, Action.accept())
        negotiation_store.record_progress(
            negotiation_id,
            opened,
            state,
            session=session,
            model_version=7,
            decisions=[_decision(1, 0.05)],
        )
        session.commit()
        ids.append(negotiation_id)
    return ids


def learned(session: Session) -> int:
    return counters.get_counter(counters.NEGOTIATIONS_LEARNED, session=session)


def test_marking_counts_the_negotiations_trained_on_in_the_same_write(session: Session) -> None:
    first, second, third = finished_negotiations(session, 3)
    value = experience_store.mark_learned([first, second], session=session, trained_on=[first])
    assert value == 1
    session.rollback()  # the write failed: neither taken off the queue nor counted
    assert learned(session) == 0
    assert len(experience_store.negotiations_to_learn(session=session, limit=10)) == 3
    assert experience_store.mark_learned([first, second], session=session, trained_on=[first]) == 1
    session.commit()
    assert learned(session) == 1
    assert [n.id for n in experience_store.negotiations_to_learn(session=session, limit=10)] == [
        third
    ]


def test_marking_again_neither_takes_off_nor_counts_twice(session: Session) -> None:
    first, second = finished_negotiations(session, 2)
    assert experience_store.mark_learned([first], session=session, trained_on=[first]) == 1
    session.commit()
    # A retry of a write that did commit, or a second learner that took the same one in.
    assert experience_store.mark_learned([first], session=session, trained_on=[first]) is None
    assert (
        experience_store.mark_learned([first, second], session=session, trained_on=[first, second])
        == 2
    )
    session.commit()
    assert learned(session) == 2
    assert experience_store.negotiations_to_learn(session=session, limit=10) == []


@pytest.mark.parametrize("start", [None, 40])
def test_a_counter_is_added_to_in_the_store(session: Session, start: int | None) -> None:
    if start is not None:
        counters.set_counter("some_counter", start, session=session)
    assert counters.add_to_counter("some_counter", 2, session=session) == (start or 0) + 2
    assert counters.add_to_counter("some_counter", 3, session=session) == (start or 0) + 5
    session.commit()
    assert counters.get_counter("some_counter", session=session) == (start or 0) + 5
