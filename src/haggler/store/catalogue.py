"""Stored products: the seeded catalogue and the ones operators add, edit and archive.

A product is never deleted: negotiations refer to it. An archived one is no longer offered for
new negotiations and stays readable for the ones it has. A negotiation keeps the list price it
was played with (its own row holds it), so editing a product changes only what comes after."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from haggler.core.catalogue import SEED_CATALOGUE, Product
from haggler.store.base import Conflict, NotFound, money_decimal
from haggler.store.tables import ProductRow


class Archived(Conflict):
    """The product is archived: it is not offered for new negotiations."""


@dataclass(frozen=True)
class StoredProduct:
    id: int
    product: Product
    archived_at: datetime | None = None
    """When an operator archived it (None: on offer)."""

    @property
    def archived(self) -> bool:
        return self.archived_at is not None


@dataclass(frozen=True)
class ProductPage:
    items: list[StoredProduct]
    next_after: int | None
    """The `after` of the next page (None: this is the last)."""


def _product(row: ProductRow) -> StoredProduct:
    archived_at = row.archived_at
    if archived_at is not None and archived_at.tzinfo is None:  # SQLite's, stored as UTC
        archived_at = archived_at.replace(tzinfo=UTC)
    return StoredProduct(
        row.id, Product(row.name, row.category, float(row.list_price)), archived_at
    )


def seed_catalogue(*, session: Session) -> int:
    """Add the seed catalogue to an empty store; return how many products were added."""
    if session.scalar(select(func.count()).select_from(ProductRow)):
        return 0
    for product in SEED_CATALOGUE:
        session.add(
            ProductRow(
                name=product.name,
                category=product.category,
                list_price=money_decimal(product.list_price),
            )
        )
    session.flush()
    return len(SEED_CATALOGUE)


def list_products(*, session: Session, include_archived: bool = True) -> list[StoredProduct]:
    """Every product by id (the archived ones too, unless `include_archived` is false)."""
    query = select(ProductRow).order_by(ProductRow.id)
    if not include_archived:
        query = query.where(ProductRow.archived_at.is_(None))
    return [_product(row) for row in session.scalars(query)]


def page_products(
    *, session: Session, after: int = 0, limit: int, include_archived: bool = False
) -> ProductPage:
    """Up to `limit` products with ids above `after`, by id: a cursor that stays right while
    products are added or archived between pages (an offset would skip or repeat some)."""
    query = select(ProductRow).where(ProductRow.id > after).order_by(ProductRow.id)
    if not include_archived:
        query = query.where(ProductRow.archived_at.is_(None))
    rows = session.scalars(query.limit(limit + 1)).all()
    items = [_product(row) for row in rows[:limit]]
    return ProductPage(items, items[-1].id if len(rows) > limit else None)


def get_product(product_id: int, *, session: Session) -> StoredProduct:
    row = session.get(ProductRow, product_id)
    if row is None:
        raise NotFound(f"no product {product_id}")
    return _product(row)


def offered_product(product_id: int, *, session: Session) -> StoredProduct:
    """The product a new negotiation is to be about: NotFound if there is none, Archived if it
    is no longer offered."""
    stored = get_product(product_id, session=session)
    if stored.archived:
        raise Archived(f"product {product_id} ({stored.product.name}) is archived")
    return stored


def is_archived(product_id: int, *, session: Session) -> bool:
    """Whether the product is archived (NotFound if there is none)."""
    return get_product(product_id, session=session).archived


def add_product(product: Product, *, session: Session) -> StoredProduct:
    _check_name_free(product.name, session=session)
    row = ProductRow(
        name=product.name, category=product.category, list_price=money_decimal(product.list_price)
    )
    session.add(row)
    _flush(product.name, session=session)
    return _product(row)


def edit_product(
    product_id: int,
    *,
    session: Session,
    name: str | None = None,
    category: str | None = None,
    list_price: float | None = None,
) -> StoredProduct:
    """Change what is given (None: keep it); NotFound, or Conflict for a name taken by another
    product, archived or not. Negotiations already played keep their own list price."""
    row = session.get(ProductRow, product_id)
    if row is None:
        raise NotFound(f"no product {product_id}")
    changed = Product(
        row.name if name is None else name,
        row.category if category is None else category,
        float(row.list_price) if list_price is None else list_price,
    )
    if changed.name != row.name:
        _check_name_free(changed.name, session=session)
    row.name = changed.name
    row.category = changed.category
    row.list_price = money_decimal(changed.list_price)
    _flush(changed.name, session=session)
    return _product(row)


def archive_product(
    product_id: int, *, session: Session, now: datetime | None = None
) -> StoredProduct:
    """No new negotiations about it from now on. Archiving it again changes nothing (it keeps
    the time it was first archived)."""
    row = session.get(ProductRow, product_id)
    if row is None:
        raise NotFound(f"no product {product_id}")
    if row.archived_at is None:
        row.archived_at = now or datetime.now(UTC)
        session.flush()
    return _product(row)


def _check_name_free(name: str, *, session: Session) -> None:
    if session.scalar(select(ProductRow.id).where(ProductRow.name == name)) is not None:
        raise Conflict(f"a product named {name!r} exists already")


def _flush(name: str, *, session: Session) -> None:
    try:
        session.flush()
    except IntegrityError:  # a concurrent write of the same name
        raise Conflict(f"a product named {name!r} exists already") from None
