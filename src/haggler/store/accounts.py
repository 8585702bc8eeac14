"""Accounts, their bearer tokens and their browser sessions.

Passwords are hashed with argon2id (argon2-cffi: the winner of the Password Hashing Competition,
with its parameters and salt in the stored string). Tokens and session ids are 256 random bits,
so a SHA-256 of them is enough at rest: nobody can guess one from its hash, and looking one up
costs one indexed read instead of an argon2 verification per request.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from haggler.store.base import Conflict, NotFound
from haggler.store.tables import AccountRow, ApiTokenRow, WebSessionRow

TOKEN_PREFIX = "hgl_"
"""Every account token starts so (a secret scanner can find one pasted where it should not be)."""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$"
MIN_PASSWORD = 10

_hasher = PasswordHasher()


class Role(enum.StrEnum):
    PURCHASER = "purchaser"
    """Opens negotiations with its own limits; sees its own negotiations."""
    SELLER = "seller"
    """Negotiates against the agent; sees the seller's view of its own negotiations only."""
    OPERATOR = "operator"
    """Sees everything; alone changes models, products, A/B tests, settings and accounts."""


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    role: Role
    purchaser_id: int | None
    """A seller's purchaser (whose limits `/api/sell` plays with)."""
    created_at: datetime
    disabled: bool
    has_password: bool


@dataclass(frozen=True)
class Principal:
    """Who a request comes from."""

    account_id: int
    name: str
    role: Role
    purchaser_id: int | None = None
    csrf_token: str | None = None
    """Set when signed in by a browser session: unsafe requests must echo it."""


@dataclass(frozen=True)
class TokenInfo:
    id: int
    account: str
    label: str
    created_at: datetime
    revoked: bool


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _account(row: AccountRow) -> Account:
    return Account(
        row.id,
        row.name,
        Role(row.role),
        row.purchaser_id,
        row.created_at,
        row.disabled_at is not None,
        row.password_hash is not None,
    )


def _row(name: str, *, session: Session) -> AccountRow:
    row = session.scalar(select(AccountRow).where(AccountRow.name == name))
    if row is None:
        raise NotFound(f"no account named {name!r}")
    return row


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > 1000:
        raise ValueError("a password has at most 1000 characters")


def create_account(
    name: str,
    role: Role,
    *,
    session: Session,
    password: str | None = None,
    purchaser: str | None = None,
) -> Account:
    """A new account; a seller may name the purchaser whose limits it sells against."""
    if purchaser is not None and role is not Role.SELLER:
        raise ValueError("only a seller account has a purchaser")
    purchaser_id = None
    if purchaser is not None:
        buyer = _row(purchaser, session=session)
        if buyer.role != Role.PURCHASER:
            raise ValueError(f"{purchaser!r} is a {buyer.role} account, not a purchaser")
        purchaser_id = buyer.id
    if password is not None:
        check_password(password)
    row = AccountRow(
        name=name,
        role=role.value,
        password_hash=_hasher.hash(password) if password is not None else None,
        purchaser_id=purchaser_id,
        created_at=datetime.now(UTC),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise Conflict(f"an account named {name!r} exists") from None
    return _account(row)


def get_account(name: str, *, session: Session) -> Account:
    return _account(_row(name, session=session))


def list_accounts(*, session: Session) -> list[Account]:
    return [_account(row) for row in session.scalars(select(AccountRow).order_by(AccountRow.id))]


def count_accounts(*, session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AccountRow)) or 0


def set_password(name: str, password: str, *, session: Session) -> None:
    """A new password; every browser session of the account ends."""
    check_password(password)
    row = _row(name, session=session)
    row.password_hash = _hasher.hash(password)
    session.execute(
        update(WebSessionRow)
        .where(WebSessionRow.account_id == row.id)
        .values(expires_at=datetime.now(UTC))
    )


def set_disabled(name: str, disabled: bool, *, session: Session) -> None:
    """Disable (or enable again) an account: a disabled one cannot sign in or use its tokens."""
    row = _row(name, session=session)
    row.disabled_at = datetime.now(UTC) if disabled else None


def set_purchaser(name: str, purchaser: str, *, session: Session) -> None:
    """Make `purchaser` the purchaser of the seller account `name` (whose limits it sells to)."""
    row = _row(name, session=session)
    if row.role != Role.SELLER:
        raise ValueError(f"{name!r} is a {row.role} account; only sellers have a purchaser")
    buyer = _row(purchaser, session=session)
    if buyer.role != Role.PURCHASER:
        raise ValueError(f"{purchaser!r} is a {buyer.role} account, not a purchaser")
    row.purchaser_id = buyer.id


def issue_token(name: str, label: str, *, session: Session) -> tuple[TokenInfo, str]:
    """A new bearer token for the account: its record, and the secret (shown once, never
    stored)."""
    row = _row(name, session=session)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiTokenRow(
        account_id=row.id, token_hash=token_hash(secret), label=label, created_at=datetime.now(UTC)
    )
    session.add(token)
    session.flush()
    return TokenInfo(token.id, row.name, label, token.created_at, False), secret


def register_token(name: str, secret: str, label: str, *, session: Session) -> None:
    """Make `secret` a token of the account if it is not one already (OPERATOR_TOKEN)."""
    row = _row(name, session=session)
    hashed = token_hash(secret)
    existing = session.scalar(select(ApiTokenRow).where(ApiTokenRow.token_hash == hashed))
    if existing is None:
        session.add(
            ApiTokenRow(
                account_id=row.id, token_hash=hashed, label=label, created_at=datetime.now(UTC)
            )
        )
    elif existing.account_id != row.id:
        raise Conflict("that token belongs to another account")


def list_tokens(*, session: Session, account: str | None = None) -> list[TokenInfo]:
    query = (
        select(ApiTokenRow, AccountRow.name)
        .join(AccountRow, AccountRow.id == ApiTokenRow.account_id)
        .order_by(ApiTokenRow.id)
    )
    if account is not None:
        query = query.where(AccountRow.name == account)
    return [
        TokenInfo(token.id, name, token.label, token.created_at, token.revoked_at is not None)
        for token, name in session.execute(query)
    ]


def revoke_token(token_id: int, *, session: Session, in_use: str | None = None) -> TokenInfo:
    """Revoke a token; Conflict if it is `in_use` (the secret the request came with: an
    operator revoking their own token would lock themselves out)."""
    token = session.get(ApiTokenRow, token_id)
    if token is None:
        raise NotFound(f"no token {token_id}")
    if in_use is not None and token.token_hash == token_hash(in_use):
        raise Conflict(
            "this is the token the request came with: revoke it with another one, or with "
            "`haggler users revoke`"
        )
    if token.revoked_at is None:
        token.revoked_at = datetime.now(UTC)
    account = session.get(AccountRow, token.account_id)
    assert account is not None
    return TokenInfo(token.id, account.name, token.label, token.created_at, True)


def principal_for_token(secret: str, *, session: Session) -> Principal | None:
    """The account a bearer token signs in (None: unknown, revoked, or its account disabled)."""
    row = session.execute(
        select(AccountRow)
        .join(ApiTokenRow, ApiTokenRow.account_id == AccountRow.id)
        .where(
            ApiTokenRow.token_hash == token_hash(secret),
            ApiTokenRow.revoked_at.is_(None),
            AccountRow.disabled_at.is_(None),
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    return Principal(row.id, row.name, Role(row.role), row.purchaser_id)


def password_hash(name: str, *, session: Session) -> str | None:
    """The stored hash a sign-in checks (None: no such account, disabled, or no password)."""
    row = session.scalar(
        select(AccountRow).where(AccountRow.name == name, AccountRow.disabled_at.is_(None))
    )
    return row.password_hash if row is not None else None


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored`: ~0.1 s of CPU by design, so call it off the event
    loop. With no stored hash a dummy one is checked: the time does not tell names apart."""
    try:
        return _hasher.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def open_session(name: str, *, session: Session, hours: float) -> tuple[Principal, str]:
    """A browser session for the account: (who, the session id for the cookie)."""
    row = _row(name, session=session)
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    session.add(
        WebSessionRow(
            account_id=row.id,
            session_hash=token_hash(session_id),
            csrf_token=csrf,
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    return Principal(row.id, row.name, Role(row.role), row.purchaser_id, csrf), session_id


def principal_for_session(session_id: str, *, session: Session) -> Principal | None:
    """The account a session cookie signs in (None: unknown, expired, or account disabled)."""
    found = session.execute(
        select(AccountRow, WebSessionRow.csrf_token)
        .join(WebSessionRow, WebSessionRow.account_id == AccountRow.id)
        .where(
            WebSessionRow.session_hash == token_hash(session_id),
            WebSessionRow.expires_at > datetime.now(UTC),
            AccountRow.disabled_at.is_(None),
        )
    ).one_or_none()
    if found is None:
        return None
    row, csrf = found
    return Principal(row.id, row.name, Role(row.role), row.purchaser_id, csrf)


def sign_out(session_id: str, *, session: Session) -> None:
    session.execute(
        update(WebSessionRow)
        .where(WebSessionRow.session_hash == token_hash(session_id))
        .values(expires_at=datetime.now(UTC))
    )


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


LOCAL_OPERATOR = "admin"
"""The operator account a fresh install creates (with a password it prints once)."""
TOKEN_OPERATOR = "operator"
"""The account OPERATOR_TOKEN signs in (the first version's one operator token)."""


def bootstrap(*, session: Session, operator_token: str | None) -> str | None:
    """Accounts a service needs at start: OPERATOR_TOKEN as a token of the operator account
    `operator`, and on a store with no accounts at all, the operator `admin` with a new
    password, returned (to print once; None: nothing created)."""
    if operator_token is not None:
        if session.scalar(select(AccountRow.id).where(AccountRow.name == TOKEN_OPERATOR)) is None:
            create_account(TOKEN_OPERATOR, Role.OPERATOR, session=session)
        register_token(TOKEN_OPERATOR, operator_token, "OPERATOR_TOKEN", session=session)
        return None
    if count_accounts(session=session) > 0:
        return None
    password = secrets.token_urlsafe(12)
    create_account(LOCAL_OPERATOR, Role.OPERATOR, session=session, password=password)
    return password
