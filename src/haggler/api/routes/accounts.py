"""Signing in and out (browser sessions), who am I, and the operator's management of accounts
and their tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from haggler.api.deps import (
    SESSION_COOKIE,
    OperatorDep,
    PrincipalDep,
    RuntimeDep,
    SessionDep,
    bearer,
)
from haggler.api.schemas import PLAIN_TEXT
from haggler.store import accounts
from haggler.store import base as store

router = APIRouter(prefix="/api", tags=["accounts"])

AccountName = Annotated[
    str,
    Field(
        pattern=accounts.NAME_PATTERN,
        description="Letters, digits, '.', '_' and '-'; at most 50 characters.",
    ),
]
Password = Annotated[str, Field(min_length=accounts.MIN_PASSWORD, max_length=1000)]


class SignInIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=50, pattern=PLAIN_TEXT)
    password: str = Field(min_length=1, max_length=1000)


class MeOut(BaseModel):
    name: str
    role: Literal["purchaser", "seller", "operator"]
    csrf_token: str | None = Field(
        None,
        description="Signed in by the session cookie: send it as `X-CSRF-Token` on every "
        "request that changes something.",
    )


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: AccountName
    role: Literal["purchaser", "seller", "operator"]
    password: Password | None = Field(None, description="None: the account uses tokens only.")
    purchaser: AccountName | None = Field(
        None, description="A seller's purchaser: whose limits its `/api/sell` negotiations use."
    )


class AccountOut(BaseModel):
    name: str
    role: Literal["purchaser", "seller", "operator"]
    purchaser: str | None
    created_at: datetime
    disabled: bool
    can_sign_in: bool = Field(description="Whether it has a password (else tokens only).")


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field("api", min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")


class TokenOut(BaseModel):
    id: int
    account: str
    label: str
    created_at: datetime
    revoked: bool


class NewTokenOut(TokenOut):
    token: str = Field(description="The secret: shown this once, stored only as a hash.")


class DisabledIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disabled: bool


NameParam = Annotated[str, Path(pattern=accounts.NAME_PATTERN)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such account."}}


def _account_out(account: accounts.Account, names: dict[int, str]) -> AccountOut:
    return AccountOut(
        name=account.name,
        role=account.role.value,
        purchaser=names.get(account.purchaser_id) if account.purchaser_id is not None else None,
        created_at=account.created_at,
        disabled=account.disabled,
        can_sign_in=account.has_password,
    )


def _token_out(token: accounts.TokenInfo) -> TokenOut:
    return TokenOut(
        id=token.id,
        account=token.account,
        label=token.label,
        created_at=token.created_at,
        revoked=token.revoked,
    )


@router.post(
    "/session",
    summary="Sign in with a name and password: sets the session cookie",
    responses={401: {"description": "Wrong name or password."}},
)
async def sign_in(
    body: SignInIn, request: Request, response: Response, runtime: RuntimeDep, session: SessionDep
) -> MeOut:
    stored = accounts.password_hash(body.name, session=session)
    # ~0.1 s of CPU by design: off the event loop, where it would hold up every other request.
    if not await anyio.to_thread.run_sync(accounts.verify_password, stored, body.password):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong name or password")
    principal, session_id = accounts.open_session(
        body.name, session=session, hours=runtime.settings.session_hours
    )
    session.commit()
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(runtime.settings.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=runtime.settings.cookie_secure or request.url.scheme == "https",
        path="/",
    )
    return MeOut(name=principal.name, role=principal.role.value, csrf_token=principal.csrf_token)


@router.delete(
    "/session", status_code=status.HTTP_204_NO_CONTENT, summary="Sign out of this browser"
)
async def sign_out(request: Request, runtime: RuntimeDep, session: SessionDep) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        accounts.sign_out(cookie, session=session)
        session.commit()
        runtime.principals.clear()
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/me", summary="The signed-in account")
async def me(principal: PrincipalDep) -> MeOut:
    return MeOut(name=principal.name, role=principal.role.value, csrf_token=principal.csrf_token)


@router.get("/accounts", summary="Every account (operators)")
async def list_accounts(session: SessionDep, _operator: OperatorDep) -> list[AccountOut]:
    found = accounts.list_accounts(session=session)
    names = {account.id: account.name for account in found}
    return [_account_out(account, names) for account in found]


@router.post(
    "/accounts",
    status_code=status.HTTP_201_CREATED,
    summary="Create an account (operators)",
    responses={409: {"description": "The name is taken."}},
)
async def create_account(
    body: AccountIn, session: SessionDep, _operator: OperatorDep
) -> AccountOut:
    try:
        account = await anyio.to_thread.run_sync(
            lambda: accounts.create_account(
                body.name,
                accounts.Role(body.role),
                session=session,
                password=body.password,
                purchaser=body.purchaser,
            )
        )
    except store.Conflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    except store.NotFound as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    except ValueError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    session.commit()
    return _account_out(account, {account.purchaser_id or 0: body.purchaser or ""})


@router.put(
    "/accounts/{name}/disabled",
    summary="Disable an account, or enable it again (operators)",
    responses=NOT_FOUND,
)
async def set_disabled(
    name: NameParam,
    body: DisabledIn,
    runtime: RuntimeDep,
    session: SessionDep,
    operator: OperatorDep,
) -> AccountOut:
    if name == operator.name and body.disabled:
        raise HTTPException(status.HTTP_409_CONFLICT, "an operator cannot disable themselves")
    try:
        accounts.set_disabled(name, body.disabled, session=session)
        account = accounts.get_account(name, session=session)
    except store.NotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    session.commit()
    runtime.principals.clear()
    found = accounts.list_accounts(session=session)
    return _account_out(account, {a.id: a.name for a in found})


@router.get("/tokens", summary="Every token (operators): never the secrets")
async def list_tokens(session: SessionDep, _operator: OperatorDep) -> list[TokenOut]:
    return [_token_out(token) for token in accounts.list_tokens(session=session)]


@router.post(
    "/accounts/{name}/tokens",
    status_code=status.HTTP_201_CREATED,
    summary="A new bearer token for an account (operators); the secret is shown once",
    responses=NOT_FOUND,
)
async def issue_token(
    name: NameParam, body: TokenIn, session: SessionDep, _operator: OperatorDep
) -> NewTokenOut:
    try:
        token, secret = accounts.issue_token(name, body.label, session=session)
    except store.NotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    session.commit()
    return NewTokenOut(**_token_out(token).model_dump(), token=secret)


@router.delete(
    "/tokens/{token_id}",
    summary="Revoke a token (operators): refused from then on",
    responses={
        404: {"description": "No such token."},
        409: {"description": "The token this request came with."},
    },
)
async def revoke_token(
    token_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    _operator: OperatorDep,
) -> TokenOut:
    in_use = bearer(request.headers.get("authorization"))
    try:
        token = accounts.revoke_token(token_id, session=session, in_use=in_use)
    except store.NotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
    except store.Conflict as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
    session.commit()
    runtime.principals.clear()
    return _token_out(token)
