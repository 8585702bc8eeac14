"""The product catalogue: listed by anyone, added, edited and archived by operators."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from haggler.api.deps import OperatorDep, RuntimeDep, SessionDep, require_principal
from haggler.api.schemas import MAX_ID, PLAIN_TEXT, Price, ProductIn, ProductOut
from haggler.core.catalogue import Product
from haggler.store import base as store
from haggler.store import catalogue as catalogue_store

# Any signed-in account reads the catalogue; operators alone change it.
router = APIRouter(
    prefix="/api/products", tags=["catalogue"], dependencies=[Depends(require_principal)]
)

MAX_PAGE = 200
"""The most products one page holds."""

AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in."},
    403: {"description": "Not an operator."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such product."}}
NAME_TAKEN: dict[int | str, dict[str, Any]] = {
    409: {"description": "Another product has that name."}
}

ProductId = Annotated[int, Path(ge=1, le=MAX_ID)]


class CatalogueProductOut(ProductOut):
    """A product as the catalogue shows it: with whether it is still offered."""

    archived_at: datetime | None = Field(
        description="When an operator archived it: no new negotiations about it (null: offered)."
    )


class ProductPage(BaseModel):
    items: list[CatalogueProductOut]
    next: int | None = Field(
        description="Send as `after` for the next page (null: this is the last page)."
    )


class ProductChange(BaseModel):
    """What to change; what is left out stays as it is."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"list_price": "279.00"}, {"name": "Pallet jack 2.5 t"}]},
    )

    name: Annotated[str, Field(min_length=1, max_length=200, pattern=PLAIN_TEXT)] | None = None
    category: Annotated[str, Field(min_length=1, max_length=100, pattern=PLAIN_TEXT)] | None = None
    list_price: Price | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> ProductChange:
        if not self.model_fields_set:
            raise ValueError("give at least one of name, category and list_price")
        nulls = sorted(field for field in self.model_fields_set if getattr(self, field) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null (leave a field out to keep it)")
        return self


def offered(product_id: int, session: Session) -> catalogue_store.StoredProduct:
    """The product a new negotiation is about: 404 if there is none, 409 if it is archived."""
    try:
        return catalogue_store.offered_product(product_id, session=session)
    except store.NotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    except catalogue_store.Archived as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None


def product_out(
    stored: catalogue_store.StoredProduct, *, list_price: float | None = None
) -> ProductOut:
    """The product as negotiations show it; `list_price`: the one a negotiation was played with,
    if the product's has changed since."""
    p = stored.product
    return ProductOut(
        id=stored.id,
        name=p.name,
        category=p.category,
        list_price=store.money_decimal(p.list_price if list_price is None else list_price),
    )


def catalogue_product_out(stored: catalogue_store.StoredProduct) -> CatalogueProductOut:
    return CatalogueProductOut(**product_out(stored).model_dump(), archived_at=stored.archived_at)


@router.get(
    "",
    summary="List the products",
    description=(
        "The products on offer, by id, as one list; with `include_archived=true`, the archived "
        "ones too. With `limit` or `after`, one page: `{items, next}`, where `next` is the "
        "`after` of the next page."
    ),
)
async def list_products(
    session: SessionDep,
    include_archived: bool = False,
    limit: Annotated[
        int | None, Query(ge=1, le=MAX_PAGE, description="Products per page (a page is sent).")
    ] = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_ID, description="The last id of the page before (a page is sent)."),
    ] = None,
) -> list[CatalogueProductOut] | ProductPage:
    # A plain list without paging: what the pages and the first version's clients read.
    if limit is None and after is None:
        return [
            catalogue_product_out(p)
            for p in catalogue_store.list_products(
                session=session, include_archived=include_archived
            )
        ]
    page = catalogue_store.page_products(
        session=session,
        after=after or 0,
        limit=limit or MAX_PAGE,
        include_archived=include_archived,
    )
    return ProductPage(items=[catalogue_product_out(p) for p in page.items], next=page.next_after)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Add a product",
    responses={**AUTH, **NAME_TAKEN},
)
async def add_product(
    body: ProductIn, session: SessionDep, _operator: OperatorDep
) -> CatalogueProductOut:
    product = Product(body.name.strip(), body.category.strip(), float(body.list_price))
    try:
        stored = catalogue_store.add_product(product, session=session)
    except store.Conflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    session.commit()
    return catalogue_product_out(stored)


@router.patch(
    "/{product_id}",
    summary="Change a product's name, category or list price",
    description=(
        "Negotiations already started keep the list price they were played with; new ones use "
        "the new one. An archived product can be changed too."
    ),
    responses={**AUTH, **NOT_FOUND, **NAME_TAKEN},
)
async def edit_product(
    product_id: ProductId,
    body: ProductChange,
    runtime: RuntimeDep,
    session: SessionDep,
    _operator: OperatorDep,
) -> CatalogueProductOut:
    try:
        stored = catalogue_store.edit_product(
            product_id,
            session=session,
            name=body.name.strip() if body.name is not None else None,
            category=body.category.strip() if body.category is not None else None,
            list_price=float(body.list_price) if body.list_price is not None else None,
        )
    except store.NotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    except store.Conflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    session.commit()
    return catalogue_product_out(stored)


@router.post(
    "/{product_id}/archive",
    summary="Archive a product: no new negotiations about it",
    description=(
        "The product stays, with its negotiations, and is listed with `include_archived=true`; "
        "starting a negotiation about it gets a 409. Archiving it again changes nothing."
    ),
    responses={**AUTH, **NOT_FOUND},
)
async def archive_product(
    product_id: ProductId, runtime: RuntimeDep, session: SessionDep, _operator: OperatorDep
) -> CatalogueProductOut:
    try:
        stored = catalogue_store.archive_product(product_id, session=session)
    except store.NotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    session.commit()
    return catalogue_product_out(stored)
