"""The product catalogue."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from haggler.api.deps import SessionDep
from haggler.api.schemas import ProductIn, ProductOut
from haggler.core.catalogue import Product
from haggler.store import base as store
from haggler.store import catalogue as catalogue_store

router = APIRouter(prefix="/api/products", tags=["catalogue"])


def product_out(stored: catalogue_store.StoredProduct) -> ProductOut:
    p = stored.product
    return ProductOut(
        id=stored.id, name=p.name, category=p.category, list_price=store.money_decimal(p.list_price)
    )


@router.get("", summary="List the products")
async def list_products(session: SessionDep) -> list[ProductOut]:
    return [product_out(p) for p in catalogue_store.list_products(session=session)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Add a product",
    responses={409: {"description": "A product with that name exists already."}},
)
async def add_product(body: ProductIn, session: SessionDep) -> ProductOut:
    product = Product(body.name.strip(), body.category.strip(), float(body.list_price))
    try:
        stored = catalogue_store.add_product(product, session=session)
    except store.Conflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    session.commit()
    return product_out(stored)
