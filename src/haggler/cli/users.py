"""`haggler users`: accounts and their tokens, on the store at DATABASE_URL.

A running service sees a new account or token at once, and a revoked token or a disabled account
within seconds (it trusts what it read for PRINCIPAL_SECONDS)."""

from __future__ import annotations

import secrets
import sys

import click

from haggler.cli.common import store_sessions

ROLES = ("purchaser", "seller", "operator")


@click.group()
def users() -> None:
    """Accounts (purchasers, sellers, operators) and their API tokens."""


def _password(from_stdin: bool) -> tuple[str, bool]:
    """The password to set: read from stdin, or a new random one (then printed)."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise click.ClickException("no password on stdin")
        return password, False
    return secrets.token_urlsafe(12), True


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the account may do.")
@click.option(
    "--purchaser",
    default=None,
    help="A seller's purchaser: whose limits its negotiations from /api/sell use.",
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from stdin [default: a new one]."
)
@click.option(
    "--tokens-only", is_flag=True, help="No password: the account signs in with tokens only."
)
def users_add(
    name: str, role: str, purchaser: str | None, password_stdin: bool, tokens_only: bool
) -> None:
    """Create the account NAME."""
    import re

    from haggler.store import accounts
    from haggler.store import base as store

    if not re.fullmatch(accounts.NAME_PATTERN, name):
        raise click.ClickException(
            f"bad name {name!r}: letters, digits, '.', '_' and '-', at most 50 characters"
        )
    if tokens_only and password_stdin:
        raise click.ClickException("--tokens-only and --password-stdin exclude each other")
    password, generated = (None, False) if tokens_only else _password(password_stdin)
    with store_sessions()() as session:
        try:
            accounts.create_account(
                name,
                accounts.Role(role),
                session=session,
                password=password,
                purchaser=purchaser,
            )
        except (store.Conflict, store.NotFound) as error:
            raise click.ClickException(str(error)) from None
        session.commit()
    click.echo(f"Created the {role} account {name}.")
    if generated:
        click.echo(f"Password (shown once): {password}")


@users.command("list")
def users_list() -> None:
    """Every account."""
    from haggler.store import accounts

    with store_sessions()() as session:
        found = accounts.list_accounts(session=session)
    names = {account.id: account.name for account in found}
    click.echo(f"{'name':24s} {'role':10s} {'purchaser':24s} {'sign-in':10s} state")
    for account in found:
        purchaser = names.get(account.purchaser_id or 0, "-")
        sign_in = "password" if account.has_password else "tokens"
        state = "disabled" if account.disabled else "active"
        click.echo(f"{account.name:24s} {account.role:10s} {purchaser:24s} {sign_in:10s} {state}")


@users.command("password")
@click.argument("name")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from stdin [default: a new one]."
)
def users_password(name: str, password_stdin: bool) -> None:
    """Set a new password for NAME (its browser sessions end)."""
    from haggler.store import accounts
    from haggler.store import base as store

    password, generated = _password(password_stdin)
    with store_sessions()() as session:
        try:
            accounts.set_password(name, password, session=session)
        except store.NotFound as error:
            raise click.ClickException(str(error)) from None
        session.commit()
    click.echo(f"Set a new password for {name}.")
    if generated:
        click.echo(f"Password (shown once): {password}")


@users.command("purchaser")
@click.argument("seller")
@click.argument("purchaser")
def users_purchaser(seller: str, purchaser: str) -> None:
    """Make PURCHASER the purchaser whose limits the seller account SELLER sells to."""
    from haggler.store import accounts
    from haggler.store import base as store

    with store_sessions()() as session:
        try:
            accounts.set_purchaser(seller, purchaser, session=session)
        except store.NotFound as error:
            raise click.ClickException(str(error)) from None
        session.commit()
    click.echo(f"{seller} now sells to {purchaser}.")


def _set_disabled(name: str, disabled: bool) -> None:
    from haggler.store import accounts
    from haggler.store import base as store

    with store_sessions()() as session:
        try:
            accounts.set_disabled(name, disabled, session=session)
        except store.NotFound as error:
            raise click.ClickException(str(error)) from None
        session.commit()
    click.echo(f"{name} is {'disabled' if disabled else 'enabled'}.")


@users.command("disable")
@click.argument("name")
def users_disable(name: str) -> None:
    """Disable NAME: no sign-in, its tokens refused."""
    _set_disabled(name, True)


@users.command("enable")
@click.argument("name")
def users_enable(name: str) -> None:
    """Enable NAME again."""
    _set_disabled(name, False)


@users.command("token")
@click.argument("name")
@click.option("--label", default="api", show_default=True, help="What the token is for.")
def users_token(name: str, label: str) -> None:
    """A new API token for NAME (printed once; only its hash is stored)."""
    from haggler.store import accounts
    from haggler.store import base as store

    if not 1 <= len(label) <= 100 or not label.isprintable():
        raise click.ClickException("a label is 1 to 100 printable characters")
    with store_sessions()() as session:
        try:
            token, secret = accounts.issue_token(name, label, session=session)
        except store.NotFound as error:
            raise click.ClickException(str(error)) from None
        session.commit()
    click.echo(f"Token {token.id} for {name} ({label}); send it as `Authorization: Bearer ...`:")
    click.echo(secret)


@users.command("tokens")
@click.argument("name", required=False)
def users_tokens(name: str | None) -> None:
    """The tokens (of NAME, or of everyone): ids and labels, never the secrets."""
    from haggler.store import accounts

    with store_sessions()() as session:
        found = accounts.list_tokens(session=session, account=name)
    if not found:
        click.echo("No tokens.")
        return
    click.echo(f"{'id':>5s} {'account':24s} {'label':24s} {'created (UTC)':19s} state")
    for token in found:
        created = token.created_at.strftime("%Y-%m-%d %H:%M:%S")
        state = "revoked" if token.revoked else "active"
        click.echo(f"{token.id:5d} {token.account:24s} {token.label:24s} {created:19s} {state}")


@users.command("revoke")
@click.argument("token_id", type=click.IntRange(min=1))
def users_revoke(token_id: int) -> None:
    """Revoke the token TOKEN_ID (see `haggler users tokens`)."""
    from haggler.store import accounts
    from haggler.store import base as store

    with store_sessions()() as session:
        try:
            token = accounts.revoke_token(token_id, session=session)
        except store.NotFound as error:
            raise click.ClickException(str(error)) from None
        session.commit()
    click.echo(f"Revoked token {token.id} of {token.account} ({token.label}).")
