"""Stored products: the seeded catalogue and the ones operators add."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from haggler.core.catalogue import SEED_CATALOGUE, Product
from haggler.store.base import Conflict, NotFound, money_decimal
from haggler.store.tables import (
    ProductRow,
)

# -- products ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredProduct:
    id: int
    product: Product


def _product(row: ProductRow) -> StoredProduct:
    return StoredProduct(row.id, Product(row.name, row.category, float(row.list_price)))


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


def list_products(*, session: Session) -> list[StoredProduct]:
    return [_product(row) for row in session.scalars(select(ProductRow).order_by(ProductRow.id))]


def get_product(product_id: int, *, session: Session) -> StoredProduct:
    row = session.get(ProductRow, product_id)
    if row is None:
        raise NotFound(f"no product {product_id}")
    return _product(row)


def add_product(product: Product, *, session: Session) -> StoredProduct:
    existing = session.scalar(select(ProductRow).where(ProductRow.name == product.name))
    if existing is not None:
        raise Conflict(f"a product named {product.name!r} exists already")
    row = ProductRow(
        name=product.name, category=product.category, list_price=money_decimal(product.list_price)
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # a concurrent insert of the same name
        raise Conflict(f"a product named {product.name!r} exists already") from None
    return _product(row)
