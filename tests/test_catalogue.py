"""The product catalogue a fresh install is seeded with, and the catalogue in the store: edited,
archived and read page by page."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from haggler.core.catalogue import SEED_CATALOGUE, Product, find_product
from haggler.core.negotiation import money
from haggler.store import base as store
from haggler.store import catalogue as catalogue_store

MOMENT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_the_seed_catalogue_is_small_realistic_and_valid() -> None:
    assert 5 <= len(SEED_CATALOGUE) <= 50
    names = [product.name.casefold() for product in SEED_CATALOGUE]
    assert len(set(names)) == len(names), "product names must be unique, ignoring case"
    assert len({product.category for product in SEED_CATALOGUE}) >= 3
    for product in SEED_CATALOGUE:
        assert money(product.list_price) == product.list_price
    prices = [product.list_price for product in SEED_CATALOGUE]
    assert min(prices) < 50 < 1000 < max(prices)


def test_find_product_ignores_case() -> None:
    product = SEED_CATALOGUE[0]
    assert find_product(product.name.upper()) is product
    assert find_product(product.name.lower()) is product


def test_an_unknown_product_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown product") as error:
        find_product("Flux capacitor")
    for product in SEED_CATALOGUE:
        assert product.name in str(error.value)


def test_find_product_searches_the_catalogue_it_is_given() -> None:
    catalogue = (Product("Widget", "parts", 2.5),)
    assert find_product("widget", catalogue).list_price == 2.5
    with pytest.raises(ValueError, match="Widget"):
        find_product(SEED_CATALOGUE[0].name, catalogue)


@pytest.mark.parametrize(
    ("name", "category", "price"),
    [("", "parts", 1.0), ("  ", "parts", 1.0), ("Widget", " ", 1.0), ("Widget", "parts", 0.0)],
)
def test_a_product_needs_a_name_a_category_and_a_price(
    name: str, category: str, price: float
) -> None:
    with pytest.raises(ValueError):
        Product(name, category, price)


@pytest.fixture
def seeded(session: Session) -> Session:
    catalogue_store.seed_catalogue(session=session)
    session.commit()
    return session


def test_an_edit_changes_what_is_given_and_keeps_the_rest(seeded: Session) -> None:
    edited = catalogue_store.edit_product(1, session=seeded, list_price=250.0)
    assert edited.product == Product(SEED_CATALOGUE[0].name, SEED_CATALOGUE[0].category, 250.0)
    seeded.commit()
    renamed = catalogue_store.edit_product(1, session=seeded, name="Chair", category="seating")
    seeded.commit()
    assert catalogue_store.get_product(1, session=seeded).product == Product(
        "Chair", "seating", 250.0
    )
    assert renamed.archived is False


def test_an_edit_refuses_a_taken_name_and_an_unknown_product(seeded: Session) -> None:
    with pytest.raises(store.Conflict, match="exists already"):
        catalogue_store.edit_product(1, session=seeded, name=SEED_CATALOGUE[1].name)
    seeded.rollback()
    with pytest.raises(store.NotFound):
        catalogue_store.edit_product(999, session=seeded, name="Anything")
    with pytest.raises(ValueError):  # the core's own rules hold too
        catalogue_store.edit_product(1, session=seeded, name=" ")
    seeded.rollback()
    assert catalogue_store.get_product(1, session=seeded).product == SEED_CATALOGUE[0]


def test_an_archived_product_is_kept_but_not_offered(seeded: Session) -> None:
    assert catalogue_store.offered_product(2, session=seeded).id == 2
    archived = catalogue_store.archive_product(2, session=seeded, now=MOMENT)
    seeded.commit()
    assert (archived.archived, archived.archived_at) == (True, MOMENT)
    assert catalogue_store.is_archived(2, session=seeded)
    assert not catalogue_store.is_archived(1, session=seeded)
    stored = catalogue_store.get_product(2, session=seeded)
    assert (stored.product, stored.archived_at) == (SEED_CATALOGUE[1], MOMENT)
    with pytest.raises(catalogue_store.Archived, match="is archived"):
        catalogue_store.offered_product(2, session=seeded)
    with pytest.raises(store.Conflict):  # Archived is a Conflict (a 409)
        catalogue_store.offered_product(2, session=seeded)
    with pytest.raises(store.NotFound):
        catalogue_store.offered_product(999, session=seeded)
    # Archived once: the first time stays.
    later = datetime(2027, 1, 1, tzinfo=UTC)
    assert catalogue_store.archive_product(2, session=seeded, now=later).archived_at == MOMENT
    # Listing everything (what the negotiations' product names are read from) keeps it.
    assert len(catalogue_store.list_products(session=seeded)) == len(SEED_CATALOGUE)
    offered = catalogue_store.list_products(session=seeded, include_archived=False)
    assert 2 not in [p.id for p in offered]


def test_pages_follow_the_ids_whatever_changes_in_between(seeded: Session) -> None:
    first = catalogue_store.page_products(session=seeded, limit=3)
    assert ([p.id for p in first.items], first.next_after) == ([1, 2, 3], 3)
    catalogue_store.archive_product(2, session=seeded)  # behind the cursor: no shift
    catalogue_store.archive_product(4, session=seeded)
    second = catalogue_store.page_products(session=seeded, after=3, limit=3)
    assert ([p.id for p in second.items], second.next_after) == ([5, 6, 7], 7)
    with_archived = catalogue_store.page_products(
        session=seeded, after=3, limit=3, include_archived=True
    )
    assert [p.id for p in with_archived.items] == [4, 5, 6]
    last = catalogue_store.page_products(session=seeded, after=11, limit=3)
    assert ([p.id for p in last.items], last.next_after) == ([12, 13, 14], None)
    assert catalogue_store.page_products(session=seeded, after=14, limit=3).items == []
