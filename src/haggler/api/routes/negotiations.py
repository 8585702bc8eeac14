"""Negotiations: start one (simulated persona or external seller), seller moves, read, list.

Every call that moves a negotiation is one transaction: the moves, the agent's decision with its
propensity and, at the end, the outcome are committed together before the answer is sent.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import time
import typing
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect

from haggler.api.deps import (
    PurchaserDep,
    Runtime,
    RuntimeDep,
    SessionDep,
    account_token_principal,
    bearer,
    hash_token,
    principal_of,
    unauthorized,
)
from haggler.api.limits import credentials_verified
from haggler.api.routes.catalogue import offered, product_out
from haggler.api.schemas import (
    MAX_ID,
    PLAIN_TEXT,
    ExternalStartOut,
    NegotiationIn,
    NegotiationOut,
    NegotiationPage,
    ResultOut,
    SellerMoveIn,
    SellerViewOut,
    TurnOut,
)
from haggler.core.negotiation import (
    Action,
    Move,
    NegotiationState,
    ProtocolError,
    Terms,
    open_negotiation,
    result,
)
from haggler.core.sellers import make_seller
from haggler.serving import turns
from haggler.store import accounts
from haggler.store import base as store
from haggler.store import negotiations as negotiation_store
from haggler.store.accounts import Principal, Role

router = APIRouter(prefix="/api/negotiations", tags=["negotiations"])

NegotiationId = Annotated[int, Path(ge=1, le=MAX_ID, description="The negotiation's id.")]

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such negotiation (or not one of yours)."}
}
AUTH: dict[int | str, dict[str, Any]] = {
    401: {"description": "No token or login."},
    403: {"description": "This account's role may not do this."},
}


def _turns(state: NegotiationState) -> list[TurnOut]:
    return [
        TurnOut(
            party=turn.party.value,
            move=turn.move.value,
            price=store.money_decimal(turn.price) if turn.price is not None else None,
            round=turn.round,
        )
        for turn in state.transcript
    ]


def negotiation_out(stored: negotiation_store.StoredNegotiation, currency: str) -> NegotiationOut:
    state = stored.state
    summary = None
    if state.is_over:
        r = result(state)
        summary = ResultOut(
            outcome=r.outcome.value,
            deal_price=store.money_decimal(r.deal_price) if r.deal_price is not None else None,
            savings_per_unit=store.money_decimal(r.savings_per_unit),
            savings_total=store.money_decimal(r.savings_total),
            savings_pct=round(r.savings_pct, 2),
            rounds=r.rounds,
        )
    to_move = state.to_move
    return NegotiationOut(
        id=stored.id,
        product=product_out(stored.product, list_price=state.terms.list_price),
        quantity=state.terms.quantity,
        max_unit_price=store.money_decimal(state.terms.buyer_limit),
        max_rounds=state.terms.max_rounds,
        seller_kind=stored.seller.kind,
        seller_strategy=stored.seller.strategy,
        status="finished" if state.is_over else "open",
        to_move=to_move.value if to_move else None,
        transcript=_turns(state),
        result=summary,
        reward=stored.reward,
        model_version=stored.model_version,
        created_at=stored.created_at,
        finished_at=stored.finished_at,
        currency=currency,
    )


def seller_view(stored: negotiation_store.StoredNegotiation, currency: str) -> SellerViewOut:
    state = stored.state
    to_move = state.to_move
    transcript = _turns(state)
    buyer_moves = [turn for turn in transcript if turn.party == "buyer"]
    return SellerViewOut(
        id=stored.id,
        product=product_out(stored.product, list_price=state.terms.list_price),
        quantity=state.terms.quantity,
        currency=currency,
        status="finished" if state.is_over else "open",
        to_move=to_move.value if to_move else None,
        round=state.buyer_moves,
        max_rounds=state.terms.max_rounds,
        rounds_left=state.rounds_left,
        buyer_last_move=buyer_moves[-1] if buyer_moves else None,
        transcript=transcript,
        outcome=state.outcome.value if state.outcome else None,
        deal_price=store.money_decimal(state.deal_price) if state.deal_price is not None else None,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Start a negotiation",
    description=(
        "With a simulated seller the negotiation runs to its end and the answer holds the whole "
        "transcript. With an external seller the caller is the seller: the answer holds a seller "
        "token and the agent's first move; send each further move to `/{id}/moves`."
    ),
    responses={
        404: {"description": "No such product."},
        409: {"description": "The product is archived."},
        422: {"description": "Bad input, or the named seller account is not a seller."},
        **AUTH,
    },
)
async def start(
    body: NegotiationIn, runtime: RuntimeDep, session: SessionDep, purchaser: PurchaserDep
) -> NegotiationOut | ExternalStartOut:
    return await open_for(body, purchaser.account_id, runtime, session)


async def open_for(
    body: NegotiationIn,
    purchaser_id: int,
    runtime: RuntimeDep,
    session: SessionDep,
    seller_account_id: int | None = None,
) -> NegotiationOut | ExternalStartOut:
    """Open a negotiation for the purchaser account `purchaser_id` (and play it to its end
    with a simulated seller)."""
    # Read every time (one primary-key read): an operator may edit or archive a product, in
    # any serving process.
    product = offered(body.product_id, session)
    terms = Terms(
        product.product.list_price,
        float(body.max_unit_price),
        max_rounds=body.max_rounds,
        quantity=body.quantity,
    )
    started = time.perf_counter()
    service = runtime.service
    version = service.snapshot.version
    created_at = datetime.now(UTC)
    if body.seller.kind == "external":
        if body.seller.account is not None:
            seller_account_id = _seller_account(body.seller.account, session)
        token = secrets.token_urlsafe(24)
        state = open_negotiation(terms, float(body.seller.asking_price))
        seller = negotiation_store.SellerInfo(
            "external", token_hash=hash_token(token), account_id=seller_account_id
        )
        negotiation_id = negotiation_store.create_negotiation(
            state,
            session=session,
            product_id=product.id,
            seller=seller,
            model_version=version,
            created_at=created_at,
            purchaser_id=purchaser_id,
        )
        version = turns.choose_arm(service, negotiation_id, version, session=session)
        state = turns.play_turn(
            service, negotiation_id, state, None, version=version, session=session
        )
        session.commit()
        stored = negotiation_store.StoredNegotiation(
            negotiation_id,
            product,
            seller,
            state,
            version,
            None,
            created_at,
            None,
            (),
            purchaser_id,
        )
        if not state.is_over:
            runtime.open_negotiations[negotiation_id] = stored
        if runtime.turn_latency is not None:
            runtime.turn_latency.observe(time.perf_counter() - started)
        return ExternalStartOut(
            seller_token=token, negotiation=seller_view(stored, runtime.settings.currency)
        )

    seed = body.seller.seed
    if seed is None:
        seed = int(service.rng.integers(2**63))
    persona = make_seller(body.seller.strategy, terms.list_price, np.random.default_rng(seed))
    state = open_negotiation(terms, persona.opening_ask())
    negotiation_id = negotiation_store.create_negotiation(
        state,
        session=session,
        product_id=product.id,
        seller=negotiation_store.SellerInfo("simulated", body.seller.strategy, seed),
        model_version=version,
        created_at=created_at,
        purchaser_id=purchaser_id,
    )
    version = turns.choose_arm(service, negotiation_id, version, session=session)
    turns.play_simulated(service, negotiation_id, state, persona, version=version, session=session)
    session.commit()
    return negotiation_out(
        negotiation_store.get_negotiation(negotiation_id, session=session),
        runtime.settings.currency,
    )


def _seller_account(name: str, session: Session) -> int:
    try:
        account = accounts.get_account(name, session=session)
    except store.NotFound:
        account = None
    if account is None or account.role is not Role.SELLER or account.disabled:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"no seller account named {name!r}"
        )
    return account.id


class LeanRoute(APIRoute):
    """A route whose parameters are read and validated by pydantic in one step, not by FastAPI's
    dependency solving (measured: that took a fifth of a move's CPU time). FastAPI documents
    the endpoint as usual, from its signature: `negotiation_id` from the path, `body` a JSON
    model, `authorization` a header, `request` the request."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        annotations = typing.get_type_hints(endpoint, include_extras=True)
        # The path id's constraints are the ones the signature declares (and documents).
        id_adapter: TypeAdapter[int] = TypeAdapter(annotations["negotiation_id"])
        body_model = annotations["body"]

        async def handler(request: Request) -> Response:
            problems: list[dict[str, Any]] = []
            key = request.headers.get("idempotency-key")
            try:
                negotiation_id = id_adapter.validate_python(request.path_params["negotiation_id"])
            except ValidationError as error:
                problems += _located(error, "path", "negotiation_id")
            try:
                raw = await request.body()
            except ClientDisconnect:  # the caller went away mid-request: nothing was stored
                raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body was cut off") from None
            try:
                body = body_model.model_validate_json(raw)
            except ValidationError as error:
                problems += _located(error, "body")
            if problems:  # FastAPI's own 422
                raise RequestValidationError(problems)
            response: Response = await endpoint(
                negotiation_id=negotiation_id, body=body, request=request, idempotency_key=key
            )
            return response

        return handler


def _located(error: ValidationError, *where: str) -> list[dict[str, Any]]:
    problems = error.errors(include_url=False, include_input=False)
    return [{**problem, "loc": (*where, *problem["loc"])} for problem in problems]


async def seller_move(
    negotiation_id: NegotiationId,
    body: SellerMoveIn,
    request: Request,
    authorization: Annotated[
        str | None,
        Header(
            description="`Bearer <token>`: this negotiation's seller token, or a token of the "
            "seller account party to it."
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=MAX_IDEMPOTENCY_KEY,
            description="Any unique string (a UUID): a retry with the same key and the same "
            "move gets the first answer again and changes nothing.",
        ),
    ] = None,
) -> Response:
    # The service's hot path, so leaner than the other routes: its parameters are read by
    # `LeanRoute`, it writes through a Core connection rather than an ORM session, and its
    # answer is serialised once, by pydantic.
    started = time.perf_counter()
    runtime: Runtime = request.app.state.runtime
    key = _idempotency_key(idempotency_key)
    with runtime.engine.connect() as connection:
        moved = _move(runtime, negotiation_id, body, request, connection, key)
    if isinstance(moved, str):  # a retry: the first answer again
        return Response(moved, media_type="application/json")
    state, stored, answer = moved
    stored = dataclasses.replace(stored, state=state)
    if state.is_over:
        runtime.open_negotiations.pop(negotiation_id, None)
    else:
        runtime.open_negotiations[negotiation_id] = stored
    if runtime.turn_latency is not None:
        runtime.turn_latency.observe(time.perf_counter() - started)
    return Response(answer, media_type="application/json")


MAX_IDEMPOTENCY_KEY = 200


def _idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters",
        )
    return key


router.add_api_route(
    "/{negotiation_id}/moves",
    seller_move,
    methods=["POST"],
    route_class_override=LeanRoute,
    summary="An external seller's move; the agent answers at once",
    response_model=SellerViewOut,
    responses={
        **NOT_FOUND,
        401: {"description": "No seller token."},
        403: {"description": "The token is not this negotiation's."},
        409: {
            "description": "Not the seller's turn, the negotiation is over, or it moved on "
            "since `expected_turns` (another move was applied first)."
        },
        422: {"description": "Bad input, or an Idempotency-Key reused with a different move."},
    },
)


def _move(
    runtime: Runtime,
    negotiation_id: int,
    body: SellerMoveIn,
    request: Request,
    connection: Connection,
    key: str | None,
) -> tuple[NegotiationState, negotiation_store.StoredNegotiation, str] | str:
    """The seller's move and the agent's answer, committed: (the new state, the negotiation,
    the answer as JSON); or, for a retry of a move sent with the same idempotency key, that
    move's answer. A copy of the negotiation this process kept is checked by the store and, if
    stale, read again and the move replayed."""
    stored = runtime.open_negotiations.get(negotiation_id)
    from_cache = stored is not None
    request_hash = hash_token(body.model_dump_json())
    while True:
        if stored is None:
            with Session(connection) as reader:
                stored = _get(negotiation_id, reader, with_decisions=False)
        check_seller(runtime, request, stored, moving=True)
        if key is not None:
            kept = _kept_answer(negotiation_id, key, request_hash, connection)
            if kept is not None:
                return kept
        expected = body.expected_turns
        if expected is not None and expected != len(stored.state.transcript):
            if from_cache:  # this process's copy may be stale: read again, then judge
                stored, from_cache = None, False
                continue
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"the negotiation has moved on: its transcript has "
                f"{len(stored.state.transcript)} moves, not {expected}; read it and move again",
            )
        action = _seller_action(body)
        try:
            state = turns.play_turn(
                runtime.service,
                negotiation_id,
                stored.state,
                action,
                version=stored.model_version,
                session=connection,
            )
            # The answer is built from the state just written: no second read.
            answer = seller_view(
                dataclasses.replace(stored, state=state), runtime.settings.currency
            ).model_dump_json()
            if key is not None:
                negotiation_store.keep_reply(
                    negotiation_id, key, request_hash, answer, session=connection
                )
            connection.commit()
            return state, stored, answer
        except store.Conflict as error:
            connection.rollback()
            runtime.open_negotiations.pop(negotiation_id, None)
            if not from_cache:
                if key is not None:  # the same move sent twice at once: the first one's answer
                    kept = _kept_answer(negotiation_id, key, request_hash, connection)
                    if kept is not None:
                        return kept
                raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
            stored, from_cache = None, False  # this process's copy may be stale: read, retry
        except ProtocolError:
            connection.rollback()
            runtime.open_negotiations.pop(negotiation_id, None)
            raise


def _kept_answer(
    negotiation_id: int, key: str, request_hash: str, connection: Connection
) -> str | None:
    kept = negotiation_store.kept_reply(negotiation_id, key, session=connection)
    if kept is None:
        return None
    if kept[0] != request_hash:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "this Idempotency-Key came with another move; use a new key for a new move",
        )
    return kept[1]


def check_seller(
    runtime: Runtime,
    request: Request,
    stored: negotiation_store.StoredNegotiation,
    *,
    moving: bool,
) -> None:
    """Only this negotiation's external seller may move in it or read its seller's view: by the
    negotiation's seller token, or as the seller account made party to it. Its purchaser and
    operators may read the seller's view too (to see what the seller sees), never move."""
    if moving and stored.seller.kind != "external":
        raise HTTPException(status.HTTP_409_CONFLICT, "this negotiation's seller is simulated")
    token = bearer(request.headers.get("authorization"))
    if token is not None and stored.seller.token_hash is not None:
        expected = stored.seller.token_hash.encode()
        if hmac.compare_digest(expected, hash_token(token).encode()):
            credentials_verified(request.scope)  # the rate limits' strikes spare it (api.limits)
            return
    if token is not None and account_token_principal(runtime, token) is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "this seller token is not for this negotiation"
        )
    principal = principal_of(runtime, request)
    if principal is None:
        raise unauthorized(
            "send this negotiation's seller token as `Authorization: Bearer <token>`, "
            "or a token of the seller account party to it"
        )
    if principal.role is Role.SELLER and principal.account_id == stored.seller.account_id:
        return
    if not moving and visible_to(principal, stored):
        return
    if moving and visible_to(principal, stored):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "only the negotiation's seller moves for the seller"
        )
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no negotiation {stored.id}")


def visible_to(principal: Principal, stored: negotiation_store.StoredNegotiation) -> bool:
    """Whether `principal` sees the negotiation as its purchaser does."""
    return principal.role is Role.OPERATOR or (
        principal.role is Role.PURCHASER and principal.account_id == stored.purchaser_id
    )


def _seller_action(body: SellerMoveIn) -> Action:
    move = Move(body.move)
    if move is Move.COUNTER and body.price is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "a counter-offer needs a price")
    if move is not Move.COUNTER and body.price is not None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{body.move} takes no price")
    return Action(move, float(body.price) if body.price is not None else None)


def _get(
    negotiation_id: int, session: Session, *, with_decisions: bool = True
) -> negotiation_store.StoredNegotiation:
    try:
        return negotiation_store.get_negotiation(
            negotiation_id, session=session, with_decisions=with_decisions
        )
    except store.NotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None


@router.get(
    "/{negotiation_id}", summary="One negotiation, as the purchaser sees it", responses=NOT_FOUND
)
async def read(
    negotiation_id: NegotiationId,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: PurchaserDep,
) -> NegotiationOut:
    stored = _get(negotiation_id, session)
    if not visible_to(principal, stored):  # another's negotiation: as if there were none
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no negotiation {negotiation_id}")
    return negotiation_out(stored, runtime.settings.currency)


@router.get(
    "/{negotiation_id}/seller",
    summary="One negotiation, as its seller sees it (never the buyer's limit)",
    description=(
        "For the negotiation's seller: its seller token, or the seller account party to it. "
        "Its purchaser and operators may read it too."
    ),
    responses={**NOT_FOUND, 401: {"description": "No token or login."}},
)
async def read_as_seller(
    negotiation_id: NegotiationId, request: Request, runtime: RuntimeDep, session: SessionDep
) -> SellerViewOut:
    stored = _get(negotiation_id, session, with_decisions=False)
    check_seller(runtime, request, stored, moving=False)
    return seller_view(stored, runtime.settings.currency)


@router.get(
    "",
    summary="Negotiations, newest first, with filters and paging",
    description="A purchaser's own negotiations; every negotiation for an operator.",
    responses=AUTH,
)
async def list_negotiations(
    runtime: RuntimeDep,
    session: SessionDep,
    purchaser: PurchaserDep,
    product_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    outcome: Literal["deal", "buyer_walked", "seller_walked", "deadline"] | None = None,
    status_: Annotated[Literal["open", "finished"] | None, Query(alias="status")] = None,
    seller: Annotated[
        str | None, Query(max_length=50, pattern=PLAIN_TEXT, description="Seller strategy")
    ] = None,
    model_version: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    before: Annotated[
        int | None,
        Query(ge=1, le=MAX_ID, description="Only negotiations with an id below this (a cursor)."),
    ] = None,
) -> NegotiationPage:
    where = negotiation_store.NegotiationFilter(
        product_id,
        outcome,
        status_,
        seller,
        model_version,
        purchaser_id=purchaser.account_id if purchaser.role is Role.PURCHASER else None,
    )
    items, next_before = negotiation_store.negotiation_page(
        session=session, where=where, limit=limit, offset=offset, before=before
    )
    total, exact = negotiation_store.count_negotiations(session=session, where=where)
    currency = runtime.settings.currency
    return NegotiationPage(
        items=[negotiation_out(n, currency) for n in items],
        total=total,
        total_exact=exact,
        limit=limit,
        offset=offset,
        next_before=next_before,
        currency=currency,
    )
