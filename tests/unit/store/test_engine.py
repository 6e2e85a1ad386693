"""Opening a metadata database: URL checks, SQLite settings, concurrency and migrations."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text

from fedloop.core import ConfigError, StoreUnavailable
from fedloop.store import SCHEMA_HEAD, SqlMetadataStore
from fedloop.store.metadata import engine as engine_module
from fedloop.store.metadata.engine import create_store_engine, current_revision, migrate
from fedloop.store.metadata.tables import metadata, runs

MIGRATIONS = Path(engine_module.__file__).parent / "migrations"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """Return the URL of a SQLite file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'engine.db'}"


@pytest.fixture
def store(sqlite_url: str) -> Iterator[SqlMetadataStore]:
    """Return a migrated SQLite store."""
    opened = SqlMetadataStore(sqlite_url)
    yield opened
    opened.close()


@pytest.fixture
def closed_port() -> int:
    """Return a loopback TCP port that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_postgres_raises_store_unavailable(closed_port: int) -> None:
    """A PostgreSQL URL nobody answers raises StoreUnavailable naming store.url, with a hint."""
    # Arrange
    pytest.importorskip("psycopg", reason='psycopg is missing: pip install "fedloop[postgres]"')
    url = f"postgresql+psycopg://fedloop:s3cret@127.0.0.1:{closed_port}/fedloop"
    started = time.monotonic()

    # Act / Assert
    with pytest.raises(StoreUnavailable, match=r"cannot be reached") as info:
        create_store_engine(url, connect_timeout_s=1)
    assert info.value.field == "store.url"
    assert info.value.hint
    assert info.value.retryable
    assert "s3cret" not in str(info.value)
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("not a url", id="words"),
        pytest.param("://nowhere", id="no-scheme"),
        pytest.param("", id="empty"),
    ],
)
def test_malformed_url_raises_config_error(url: str) -> None:
    """A string that is not a database URL raises ConfigError naming store.url."""
    # Act / Assert
    with pytest.raises(ConfigError, match=r"store\.url") as info:
        create_store_engine(url)
    assert info.value.field == "store.url"


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("mysql://user:pw@127.0.0.1/fedloop", id="mysql"),
        pytest.param("mysql+pymysql://user:pw@127.0.0.1/fedloop", id="mysql-driver"),
        pytest.param("oracle://user:pw@127.0.0.1/fedloop", id="oracle"),
    ],
)
def test_unsupported_database_raises_config_error(url: str) -> None:
    """A database other than SQLite or PostgreSQL raises ConfigError naming store.url."""
    # Act / Assert
    with pytest.raises(ConfigError, match=r"unsupported database") as info:
        create_store_engine(url)
    assert info.value.field == "store.url"
    assert "pw@" not in str(info.value.value)


def test_sqlite_file_and_folder_are_created(tmp_path: Path) -> None:
    """Opening a SQLite store creates its folder and file."""
    # Arrange
    path = tmp_path / "nested" / "deeper" / "meta.db"

    # Act
    with SqlMetadataStore(f"sqlite:///{path}") as store:
        revision = store.current_revision()

    # Assert
    assert path.is_file()
    assert revision == SCHEMA_HEAD


def test_sqlite_journal_mode_is_wal(store: SqlMetadataStore) -> None:
    """SQLite connections use write-ahead logging."""
    # Act
    with store.engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()

    # Assert
    assert mode == "wal"


def test_sqlite_enforces_foreign_keys(store: SqlMetadataStore) -> None:
    """SQLite connections enforce foreign keys."""
    # Act
    with store.engine.connect() as conn:
        enabled = conn.exec_driver_sql("PRAGMA foreign_keys").scalar()

    # Assert
    assert enabled == 1


def test_second_store_writes_while_first_holds_read(sqlite_url: str) -> None:
    """A writer on one store is not blocked by an open read transaction on another."""
    # Arrange
    first = SqlMetadataStore(sqlite_url)
    second = SqlMetadataStore(sqlite_url, busy_timeout_ms=2_000)
    project = first.ensure_project("demo")
    first.create_run(project.id, name="before")
    errors: list[BaseException] = []

    def write() -> None:
        try:
            second.create_run(project.id, name="from-second")
        except BaseException as err:  # collected and asserted below
            errors.append(err)

    try:
        with first.engine.connect() as reader, reader.begin():
            seen_before = reader.execute(select(func.count()).select_from(runs)).scalar_one()
            writer = threading.Thread(target=write)

            # Act
            writer.start()
            writer.join(timeout=30)
            seen_during = reader.execute(select(func.count()).select_from(runs)).scalar_one()
        first.create_run(project.id, name="from-first")

        # Assert
        assert errors == []
        assert (seen_before, seen_during) == (1, 1)
        assert {r.name for r in second.search_runs(project.id)} == {
            "before",
            "from-second",
            "from-first",
        }
    finally:
        first.close()
        second.close()


def test_two_stores_write_concurrently(sqlite_url: str) -> None:
    """Writers on two stores of one file interleave without losing rows."""
    # Arrange
    stores = [SqlMetadataStore(sqlite_url) for _ in range(2)]
    project = stores[0].ensure_project("demo")
    errors: list[BaseException] = []

    def write(store: SqlMetadataStore, prefix: str) -> None:
        try:
            for i in range(20):
                store.create_run(project.id, name=f"{prefix}-{i}")
        except BaseException as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(s, f"s{n}")) for n, s in enumerate(stores)]

    # Act
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        # Assert
        assert errors == []
        assert stores[1].count_runs(project.id) == 40
    finally:
        for store in stores:
            store.close()


def test_in_memory_store_is_shared_across_threads() -> None:
    """A sqlite:///:memory: store shows the same database to every thread."""
    # Arrange
    store = SqlMetadataStore("sqlite:///:memory:")
    project = store.ensure_project("demo")
    seen: list[object] = []

    def read() -> None:
        try:
            seen.append(store.get_project("demo").id)
        except BaseException as err:  # collected and asserted below
            seen.append(err)

    thread = threading.Thread(target=read)

    # Act
    try:
        thread.start()
        thread.join(timeout=30)
    finally:
        store.close()

    # Assert
    assert seen == [project.id]


def test_migrate_without_upgrade_on_empty_database_raises_config_error(sqlite_url: str) -> None:
    """An empty database with auto-upgrade off raises ConfigError naming store.auto_upgrade."""
    # Arrange
    engine = create_store_engine(sqlite_url)

    # Act / Assert
    try:
        with pytest.raises(ConfigError, match=r"needs") as info:
            migrate(engine, upgrade=False)
        assert info.value.field == "store.auto_upgrade"
        assert current_revision(engine) is None
    finally:
        engine.dispose()


def test_store_with_auto_upgrade_off_refuses_empty_database(sqlite_url: str) -> None:
    """SqlMetadataStore(auto_upgrade=False) does not migrate an empty database."""
    # Act / Assert
    with pytest.raises(ConfigError) as info:
        SqlMetadataStore(sqlite_url, auto_upgrade=False)
    assert info.value.field == "store.auto_upgrade"


def test_store_with_auto_upgrade_off_opens_current_database(store: SqlMetadataStore) -> None:
    """A database already at the head opens with auto-upgrade off."""
    # Act
    with SqlMetadataStore(store.url, auto_upgrade=False) as again:
        revision = again.schema_revision

    # Assert
    assert revision == SCHEMA_HEAD


def test_migrate_is_idempotent(store: SqlMetadataStore) -> None:
    """Migrating a database at the head again changes nothing."""
    # Act
    revision = migrate(store.engine)

    # Assert
    assert revision == SCHEMA_HEAD
    assert store.current_revision() == SCHEMA_HEAD


def test_schema_head_is_alembic_head() -> None:
    """SCHEMA_HEAD names the single head of the migration scripts."""
    # Arrange
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)

    # Act
    heads = script.get_heads()

    # Assert
    assert heads == [SCHEMA_HEAD]


def test_migrated_schema_matches_tables(store: SqlMetadataStore) -> None:
    """The migrated SQLite schema has no differences from tables.py."""
    # Act
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(context, metadata)

    # Assert
    assert diffs == []


def test_migration_stamps_alembic_version(store: SqlMetadataStore) -> None:
    """The alembic_version table holds SCHEMA_HEAD after opening."""
    # Act
    with store.engine.connect() as conn:
        stamped = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()

    # Assert
    assert stamped == [SCHEMA_HEAD]
