"""A seller account opens negotiations against the agent; the purchaser's side of the terms
stays on the server.

An external seller over HTTP is usually started by the purchaser's program, which states the
buyer's limit. A seller account may open one itself here: it must not choose, or see, that limit.
The negotiation belongs to the purchaser an operator set up for the seller account, and the server
draws the limit per negotiation, between 70% and 95% of the product's list price, so the seller
cannot learn a fixed fraction by playing again. The negotiation is then an ordinary external-seller
negotiation: moves go to `/api/negotiations/{id}/moves` with the seller token (or the account's).
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from haggler.api.deps import RuntimeDep, SellerDep, SessionDep
from haggler.api.routes import negotiations
from haggler.api.routes.catalogue import offered
from haggler.api.schemas import (
    MAX_ID,
    ExternalSellerIn,
    ExternalStartOut,
    NegotiationIn,
    Price,
    SellerPage,
)
from haggler.store import negotiations as negotiation_store
from haggler.store.accounts import Role

router = APIRouter(prefix="/api", tags=["negotiations"])

LIMIT_RANGE = (0.70, 0.95)
"""The buyer's hidden limit as a share of list price, drawn uniformly per negotiation."""

_random = secrets.SystemRandom()


class SellIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"product_id": 1, "quantity": 20, "asking_price": "320"}]},
    )

    product_id: int = Field(ge=1, le=MAX_ID)
    quantity: int = Field(1, ge=1, le=1_000_000)
    asking_price: Price = Field(description="The seller's opening ask per unit.")


def hidden_limit(list_price: float) -> Decimal:
    share = _random.uniform(*LIMIT_RANGE)
    return max(Decimal("0.01"), round(Decimal(str(list_price)) * Decimal(str(share)), 2))


@router.post(
    "/sell",
    status_code=status.HTTP_201_CREATED,
    summary="Open a negotiation as the seller against the agent, with a limit the server draws",
    description=(
        "For seller accounts with a purchaser (set by an operator: `haggler users add NAME "
        "--role seller --purchaser PURCHASER`), and operators (the negotiation is then theirs)."
    ),
    responses={
        404: {"description": "No such product."},
        409: {
            "description": "No purchaser is set up for this seller account, or the product "
            "is archived."
        },
        **negotiations.AUTH,
    },
)
async def sell(
    body: SellIn, runtime: RuntimeDep, session: SessionDep, seller: SellerDep
) -> ExternalStartOut:
    if seller.role is Role.OPERATOR:
        purchaser_id, seller_account_id = seller.account_id, None
    elif seller.purchaser_id is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"no purchaser is set up for the seller account {seller.name!r}: an operator sets "
            "one (`haggler users purchaser NAME PURCHASER`)",
        )
    else:
        purchaser_id, seller_account_id = seller.purchaser_id, seller.account_id
    product = offered(body.product_id, session)
    started = await negotiations.open_for(
        NegotiationIn(
            product_id=body.product_id,
            quantity=body.quantity,
            max_unit_price=hidden_limit(product.product.list_price),
            seller=ExternalSellerIn(kind="external", asking_price=body.asking_price),
        ),
        purchaser_id,
        runtime,
        session,
        seller_account_id=seller_account_id,
    )
    assert isinstance(started, ExternalStartOut)
    return started


@router.get(
    "/sell/negotiations",
    summary="A seller account's negotiations, newest first, as the seller sees them",
    responses=negotiations.AUTH,
)
async def seller_negotiations(
    session: SessionDep,
    runtime: RuntimeDep,
    seller: SellerDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    before: Annotated[
        int | None,
        Query(ge=1, le=MAX_ID, description="Only negotiations with an id below this (a cursor)."),
    ] = None,
) -> SellerPage:
    where = negotiation_store.NegotiationFilter(seller_account_id=seller.account_id)
    items, next_before = negotiation_store.negotiation_page(
        session=session, where=where, limit=limit, offset=offset, before=before
    )
    total, exact = negotiation_store.count_negotiations(session=session, where=where)
    return SellerPage(
        items=[negotiations.seller_view(item, runtime.settings.currency) for item in items],
        total=total,
        total_exact=exact,
        limit=limit,
        offset=offset,
        next_before=next_before,
    )
