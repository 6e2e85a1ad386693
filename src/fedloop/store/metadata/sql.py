"""``SqlMetadataStore``: the metadata store on SQLAlchemy 2 (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import Engine

from fedloop.core import Clock, ProjectId, RunId, SystemClock
from fedloop.store.audit import AuditReport, append_event, latest_seq, list_events, verify_chain
from fedloop.store.metadata._aliases import AliasesMixin
from fedloop.store.metadata._automation import AutomationMixin
from fedloop.store.metadata._credentials import CredentialsMixin
from fedloop.store.metadata.engine import create_store_engine, current_revision, migrate
from fedloop.store.metadata.records import AuditEvent, Project, Run

__all__ = ["MetadataStore", "SqlMetadataStore"]


@runtime_checkable
class MetadataStore(Protocol):
    """What the rest of fedloop needs of a metadata store (the contract suite checks it)."""

    def ensure_project(self, name: str, *, description: str = "") -> Project:
        """Return the project, creating it if needed."""
        ...

    def create_run(self, project_id: ProjectId, **kwargs: Any) -> Run:
        """Create a run."""
        ...

    def get_run(self, run_id: RunId) -> Run:
        """Return a run or raise NotFound."""
        ...

    def append_event(
        self, kind: str, subject: str, payload: Mapping[str, Any] | None = None, *, actor: str = ...
    ) -> AuditEvent:
        """Append an audit event."""
        ...

    def verify_audit(self) -> AuditReport:
        """Verify the audit chain."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class SqlMetadataStore(AutomationMixin, AliasesMixin, CredentialsMixin):
    """The metadata store: projects, data sets, runs, metrics, models, deployments, events, keys.

    Parameters
    ----------
    url : str
        ``sqlite:///path.db`` (default location: the project folder) or
        ``postgresql+psycopg://user:pass@host/db`` (extra ``postgres``).
    busy_timeout_ms : int, default 30000
        SQLite lock wait.
    connect_timeout_s : float, default 5.0
        PostgreSQL connect timeout.
    auto_upgrade : bool, default True
        Apply pending migrations on open; a schema from a newer fedloop is always refused.
    clock : Clock or None
        Time source (tests pin it).

    Raises
    ------
    ConfigError, StoreUnavailable, SchemaTooNew, MissingExtraError
        When the store cannot be opened as asked.

    Example
    -------
    >>> store = SqlMetadataStore("sqlite:///:memory:")  # doctest: +SKIP
    >>> project = store.ensure_project("default")
    """

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_ms: int = 30_000,
        connect_timeout_s: float = 5.0,
        auto_upgrade: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self.url = url
        self.clock = clock or SystemClock()
        self.engine: Engine = create_store_engine(
            url, busy_timeout_ms=busy_timeout_ms, connect_timeout_s=connect_timeout_s
        )
        try:
            self.schema_revision = migrate(self.engine, upgrade=auto_upgrade)
        except BaseException:
            self.engine.dispose()
            raise

    @property
    def dialect(self) -> str:
        """Return the database backend name (``"sqlite"`` or ``"postgresql"``)."""
        return str(self.engine.dialect.name)

    @property
    def safe_url(self) -> str:
        """Return the URL with any password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    def current_revision(self) -> str | None:
        """Return the schema revision stamped in the database."""
        return current_revision(self.engine)

    def append_event(
        self,
        kind: str,
        subject: str,
        payload: Mapping[str, Any] | None = None,
        *,
        actor: str = "system",
    ) -> AuditEvent:
        """Append one audit event in its own transaction.

        Parameters
        ----------
        kind : str
            Dotted event type (``"run.finished"``).
        subject : str
            What it is about.
        payload : Mapping or None
            JSON-serializable details.
        actor : str, default "system"
            Who did it.

        Returns
        -------
        AuditEvent
            The stored, chained event.
        """
        with self.transaction() as conn:
            return append_event(
                conn, kind=kind, subject=subject, payload=payload, actor=actor, at=self.clock.now()
            )

    def list_events(
        self,
        *,
        kind: str | None = None,
        subject: str | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Return audit events oldest first (see :func:`fedloop.store.audit.list_events`)."""
        return list_events(
            self.engine, kind=kind, subject=subject, after_seq=after_seq, limit=limit
        )

    def latest_event_seq(self) -> int:
        """Return the sequence number of the newest audit event (0 when there is none)."""
        return latest_seq(self.engine)

    def verify_audit(self) -> AuditReport:
        """Recompute the audit chain and report the first broken event, if any."""
        return verify_chain(self.engine)

    def close(self) -> None:
        """Release all pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> SqlMetadataStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
