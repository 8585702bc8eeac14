"""What every module of the store shares: its errors, money as exact decimals, and statements
run on the driver's cursor (the serving hot path opens no ORM session).

Every function of the store takes the session (or a Core connection) as a keyword-only argument and
leaves committing to the caller, so that one request is one transaction; rows become domain objects
in the store and nowhere else."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Dialect,
    Executable,
    Insert,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


class NotFound(LookupError):
    """No row with that id."""


class Conflict(ValueError):
    """The write would break a uniqueness rule (for example a product name taken)."""


def money_decimal(value: float) -> Decimal:
    """A price as an exact two-place decimal."""
    return Decimal(f"{value:.2f}")


Database = Session | Connection
"""A session or a Core connection: the hot path's writes take either (in its transaction)."""


@dataclass(frozen=True)
class _DriverStatement:
    """A Core statement as SQLAlchemy compiles it for one dialect: its SQL, the order of its
    parameters (positional drivers) and the dialect's conversion of each value."""

    sql: str
    names: tuple[str, ...] | None
    defaults: dict[str, Any]
    converters: dict[str, Any]

    def parameters(self, values: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        merged = {**self.defaults, **values}
        for name, convert in self.converters.items():
            merged[name] = convert(merged[name])
        return tuple(merged[name] for name in self.names) if self.names else merged


@functools.cache
def _compiled(
    statement: Executable, columns: tuple[str, ...] | None, dialect: Dialect
) -> _DriverStatement:
    compiled = cast(Any, statement).compile(
        dialect=dialect, column_keys=list(columns) if columns else None
    )
    converters = {}
    for name, bind in compiled.binds.items():
        convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if convert is not None:
            converters[name] = convert
    names = tuple(compiled.positiontup) if compiled.positional else None
    return _DriverStatement(compiled.string, names, dict(compiled.params), converters)


@dataclass(frozen=True)
class Ran:
    rowcount: int
    returned: tuple[Any, ...] | None
    """The first row a RETURNING gave (None: the statement returns none)."""


def run_statement(database: Database, statement: Executable, rows: Sequence[dict[str, Any]]) -> Ran:
    """Run `statement` once per row on the driver's cursor of `database`'s connection (an
    INSERT sets the columns the rows name, in their order). A driver
    error is raised as SQLAlchemy's (IntegrityError, OperationalError, ...), and a connection
    the server dropped is invalidated, as `Connection.execute` does. A session's pending
    changes are flushed first, as `Session.execute` does."""
    if isinstance(database, Session):
        database.flush()  # nothing to do, and next to free, when nothing is pending
        connection = database.connection()
    else:
        connection = database
        if not connection.in_transaction():  # the cursor alone would not begin one
            connection.begin()
    dialect = connection.dialect
    columns = tuple(rows[0]) if isinstance(statement, Insert) else None
    prepared = _compiled(statement, columns, dialect)
    cursor: Any = connection.connection.cursor()
    try:
        if len(rows) == 1:
            cursor.execute(prepared.sql, prepared.parameters(rows[0]))
        else:
            cursor.executemany(prepared.sql, [prepared.parameters(row) for row in rows])
        returned = cursor.fetchone() if cursor.description is not None else None
        return Ran(cursor.rowcount, tuple(returned) if returned is not None else None)
    except dialect.loaded_dbapi.Error as error:
        dropped = dialect.is_disconnect(error, connection.connection, cursor)
        if dropped:
            connection.invalidate(error)
        raise DBAPIError.instance(
            prepared.sql,
            None,
            error,
            dialect.loaded_dbapi.Error,
            connection_invalidated=dropped,
            dialect=dialect,
        ) from None
    finally:
        cursor.close()
