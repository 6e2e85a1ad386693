"""Shared helpers of the SQL metadata store modules."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Insert, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from fedloop.core import Clock, Conflict, InvalidInput, StoreUnavailable
from fedloop.store.metadata.engine import write_transaction

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]{0,199}$")
_KEY = re.compile(r"^[A-Za-z0-9_\-./: ]{1,250}$")


def check_name(value: object, *, field: str) -> str:
    """Return ``value`` if it is a valid object name, else raise InvalidInput."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidInput(
            f"`{field}` must be 1-200 characters of letters, digits, '_', '-' or '.', "
            f"starting with a letter or digit; got {value!r}.",
            field=field,
            value=value,
            hint="Rename it, e.g. 'fraud-detector'.",
        )
    return value


def check_key(value: object, *, field: str) -> str:
    """Return ``value`` if it is a valid metric/param/tag key, else raise InvalidInput."""
    if not isinstance(value, str) or not _KEY.match(value):
        raise InvalidInput(
            f"`{field}` keys must be 1-250 characters of letters, digits, spaces and _-./:; "
            f"got {value!r}.",
            field=field,
            value=value,
            hint="Use keys like 'val_loss' or 'train/auc'.",
        )
    return value


def check_text(value: object, *, field: str, max_chars: int) -> str:
    """Return ``value`` if it is a string of at most ``max_chars`` characters, else raise."""
    if not isinstance(value, str) or len(value) > max_chars:
        shown = value if not isinstance(value, str) else f"{len(value)} characters"
        raise InvalidInput(
            f"`{field}` must be text of at most {max_chars} characters; got {shown!r}.",
            field=field,
            hint=f"Shorten `{field}`.",
        )
    return value


def dialect_insert(dialect: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """Return the INSERT of SQLite or PostgreSQL, which both know ON CONFLICT."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def insert_ignore(dialect: str, table: Table, index: list[str], values: dict[str, Any]) -> Insert:
    """Build an INSERT … ON CONFLICT (index) DO NOTHING for SQLite or PostgreSQL."""
    return (
        dialect_insert(dialect, table).values(values).on_conflict_do_nothing(index_elements=index)
    )


class StoreBase:
    """The engine, the clock and the transaction helpers every store part uses."""

    engine: Engine
    clock: Clock

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Open a write transaction; errors of the database become fedloop errors.

        Yields
        ------
        Connection
            Commits on success, rolls back on any exception.

        Raises
        ------
        Conflict
            When a uniqueness or reference constraint fails.
        StoreUnavailable
            When the database is locked or gone.
        """
        try:
            with write_transaction(self.engine) as conn:
                yield conn
        except SAIntegrityError as err:
            raise Conflict(
                f"the change conflicts with stored data: {err.orig}.",
                hint="Reload the object and retry; names and versions must be unique.",
            ) from err
        except DataError as err:
            raise InvalidInput(
                f"a value does not fit its column: {err.orig}.",
                hint="Shorten the offending text or check the value's type.",
            ) from err
        except OperationalError as err:
            raise StoreUnavailable(
                f"the metadata store failed: {err.orig}.",
                field="store.url",
                hint="Retry; if it persists check that the database is reachable and not locked.",
            ) from err

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """Open a read-only connection.

        Yields
        ------
        Connection
            Rolled back on exit.
        """
        try:
            with self.engine.connect() as conn:
                yield conn
        except OperationalError as err:
            raise StoreUnavailable(
                f"the metadata store failed: {err.orig}.",
                field="store.url",
                hint="Check that the database is reachable.",
            ) from err

    def _insert_ignore(self, table: Table, index: list[str], values: dict[str, Any]) -> Insert:
        """Build an INSERT … ON CONFLICT DO NOTHING for this dialect (race-free get-or-create)."""
        return insert_ignore(self.engine.dialect.name, table, index, values)

    def _upsert(self, table: Table, index: list[str], values: list[dict[str, Any]]) -> Insert:
        """Build an INSERT … ON CONFLICT DO UPDATE for this dialect."""
        stmt = dialect_insert(self.engine.dialect.name, table).values(values)
        update = {c: stmt.excluded[c] for c in values[0] if c not in index}
        return stmt.on_conflict_do_update(index_elements=index, set_=update)
