"""Playing the seller in the browser: the purchaser's side of the terms stays on the server.

An external seller over HTTP is started by a caller who states the buyer's limit (the purchaser's
program). A person playing the seller in the web app must not choose, or see, that limit: here the
server draws it per negotiation, between 70% and 95% of the product's list price, so the seller
cannot learn a fixed fraction by playing again. The negotiation is then an ordinary external-seller
negotiation: moves go to `/api/negotiations/{id}/moves` with the seller token.
"""

from __future__ import annotations

import secrets
from decimal import Decimal

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from haggler.api.deps import RuntimeDep, SessionDep
from haggler.api.routes import negotiations
from haggler.api.schemas import MAX_ID, ExternalSellerIn, ExternalStartOut, NegotiationIn, Price
from haggler.store import base as store
from haggler.store import catalogue as catalogue_store

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
    responses={404: {"description": "No such product."}},
)
async def sell(body: SellIn, runtime: RuntimeDep, session: SessionDep) -> ExternalStartOut:
    try:
        product = catalogue_store.get_product(body.product_id, session=session)
    except store.NotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    started = await negotiations.start(
        NegotiationIn(
            product_id=body.product_id,
            quantity=body.quantity,
            max_unit_price=hidden_limit(product.product.list_price),
            seller=ExternalSellerIn(kind="external", asking_price=body.asking_price),
        ),
        runtime,
        session,
    )
    assert isinstance(started, ExternalStartOut)
    return started
