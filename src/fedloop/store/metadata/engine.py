"""Opening a metadata database: URL checks, SQLite pragmas, write transactions and migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.pool import StaticPool

from fedloop.core import ConfigError, SchemaTooNew, StoreUnavailable, require

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

__all__ = ["SCHEMA_HEAD", "create_store_engine", "current_revision", "migrate", "write_transaction"]

_MIGRATIONS = Path(__file__).parent / "migrations"


def _script() -> ScriptDirectory:
    # Alembic (and Mako) load only when a migration has to run: opening an up-to-date store
    # reads the stamped revision with one query.
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


SCHEMA_HEAD = "0005"


def _mask(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<malformed URL>"


def create_store_engine(
    url: str, *, busy_timeout_ms: int = 30_000, connect_timeout_s: float = 5.0
) -> Engine:
    """Create an engine for a metadata store URL and check that the database answers.

    Parameters
    ----------
    url : str
        ``sqlite:///path/to/file.db`` or ``postgresql+psycopg://…``.
    busy_timeout_ms : int, default 30000
        SQLite lock wait.
    connect_timeout_s : float, default 5.0
        PostgreSQL connect timeout.

    Returns
    -------
    Engine
        A pooled engine.

    Raises
    ------
    ConfigError
        For a malformed URL or an unsupported database.
    MissingExtraError
        When the PostgreSQL driver is not installed.
    StoreUnavailable
        When the database cannot be reached.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise ConfigError(
            f"`store.url` is not a database URL; got {url!r}.",
            field="store.url",
            value=url,
            hint="Use sqlite:///path/fedloop.db or postgresql+psycopg://user:pass@host:5432/db.",
        ) from err
    backend = parsed.get_backend_name()
    connect_args: dict[str, Any] = {}
    engine_args: dict[str, Any] = {}
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": busy_timeout_ms / 1000, "check_same_thread": False}
        if parsed.database in (None, "", ":memory:"):
            # One shared connection, or every thread would see its own empty database.
            engine_args["poolclass"] = StaticPool
    elif backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        require("postgres", feature="A PostgreSQL metadata store")
        connect_args = {"connect_timeout": max(1, round(connect_timeout_s))}
    else:
        raise ConfigError(
            f"`store.url` names an unsupported database {backend!r}.",
            field="store.url",
            value=_mask(url),
            hint="fedloop supports sqlite:/// and postgresql+psycopg:// URLs.",
        )
    try:
        engine = create_engine(
            parsed, connect_args=connect_args, pool_pre_ping=backend != "sqlite", **engine_args
        )
    except (ArgumentError, NoSuchModuleError) as err:
        raise ConfigError(
            f"`store.url` cannot be used: {err}.", field="store.url", value=_mask(url)
        ) from err
    if backend == "sqlite":
        _configure_sqlite(engine, busy_timeout_ms)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (OperationalError, SAInterfaceError) as err:
        engine.dispose()
        raise StoreUnavailable(
            f"the metadata store at {_mask(url)} cannot be reached: "
            f"{' '.join(str(err.orig).split()).rstrip('.?')}.",
            field="store.url",
            value=_mask(url),
            hint="Check that the database server is running and the URL (host, port, "
            "user, password, database) is right, or unset FEDLOOP_STORE_URL to use SQLite.",
        ) from err
    return engine


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front so that a read-then-write never fails to upgrade.
        immediate = conn.get_execution_options().get("fedloop_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """Open a write transaction: all or nothing, serialized against other writers on SQLite.

    Parameters
    ----------
    engine : Engine
        The store's engine.

    Yields
    ------
    Connection
        Commits on normal exit, rolls back on an exception.
    """
    with engine.connect() as conn:
        conn = conn.execution_options(fedloop_write=True)
        with conn.begin():
            yield conn


def current_revision(engine: Engine) -> str | None:
    """Return the schema revision stamped in the database (``None`` when empty).

    Parameters
    ----------
    engine : Engine
        The store's engine.

    Returns
    -------
    str or None
        The Alembic revision id.
    """
    with engine.connect() as conn:
        return _stamped_revision(conn)


def _stamped_revision(conn: Connection) -> str | None:
    """Read Alembic's ``alembic_version`` table (one linear history: at most one row)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine, *, upgrade: bool = True) -> str:
    """Bring the schema to this fedloop's head, refusing a database from a newer fedloop.

    Parameters
    ----------
    engine : Engine
        The store's engine.
    upgrade : bool, default True
        Apply pending migrations; when False, only check.

    Returns
    -------
    str
        The revision the database is at afterwards.

    Raises
    ------
    SchemaTooNew
        When the database carries a revision this fedloop does not know.
    ConfigError
        When ``upgrade`` is False and migrations are pending.
    """
    current = current_revision(engine)
    if current == SCHEMA_HEAD:
        return current
    script = _script()
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        raise SchemaTooNew(
            f"the metadata store is at schema revision {current!r}, which this fedloop does "
            f"not know (it knows up to {SCHEMA_HEAD!r}).",
            field="store.url",
            value=current,
            hint="Upgrade fedloop (pip install -U fedloop) or point store.url at another database.",
        )
    if not upgrade:
        raise ConfigError(
            f"the metadata store is at revision {current!r}; this fedloop needs {SCHEMA_HEAD!r}.",
            field="store.auto_upgrade",
            hint="Run `fedloop store upgrade` or set store.auto_upgrade = true.",
        )
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with write_transaction(engine) as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(7244011)"))
        cfg.attributes["connection"] = conn
        # Another process may have migrated while we waited for the lock.
        if _stamped_revision(conn) != SCHEMA_HEAD:
            command.upgrade(cfg, "head")
    return SCHEMA_HEAD
