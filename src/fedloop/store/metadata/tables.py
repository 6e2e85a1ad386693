"""The metadata schema as SQLAlchemy Core tables (migrations in ``migrations/`` follow it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

__all__ = [
    "alias_history",
    "aliases",
    "artifacts",
    "audit_head",
    "credentials",
    "datasets",
    "deployments",
    "events",
    "fl_client_rounds",
    "fl_rounds",
    "latest_metrics",
    "loop_actions",
    "metadata",
    "metrics",
    "model_profiles",
    "model_version_contributors",
    "model_version_datasets",
    "model_versions",
    "monitor_windows",
    "projects",
    "registered_models",
    "run_datasets",
    "run_params",
    "run_tags",
    "runs",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_JSON = JSON().with_variant(JSONB(), "postgresql")
_ID = String(32)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC (naive on SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use fedloop.core.utc_now()")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database; got {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


projects = Table(
    "projects",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
)

datasets = Table(
    "datasets",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("project_id", _ID, ForeignKey("projects.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("num_rows", BigInteger, nullable=True),
    Column("schema", _JSON, nullable=False),
    Column("uri", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("project_id", "name", "fingerprint"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("project_id", _ID, ForeignKey("projects.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("parent_run_id", _ID, ForeignKey("runs.id"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime, nullable=True),
    Column("error", Text, nullable=True),
    Index(None, "project_id", "created_at"),
)

run_params = Table(
    "run_params",
    metadata,
    Column("run_id", _ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

run_tags = Table(
    "run_tags",
    metadata,
    Column("run_id", _ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

run_datasets = Table(
    "run_datasets",
    metadata,
    Column("run_id", _ID, ForeignKey("runs.id"), primary_key=True),
    Column("dataset_id", _ID, ForeignKey("datasets.id"), primary_key=True),
    Column("role", String(50), nullable=False),
)

metrics = Table(
    "metrics",
    metadata,
    Column("id", Integer().with_variant(BigInteger, "postgresql"), primary_key=True),
    Column("run_id", _ID, ForeignKey("runs.id"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Column("timestamp_ms", BigInteger, nullable=False),
    Index(None, "run_id", "key", "step"),
)

latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", _ID, ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("step", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    Column("timestamp_ms", BigInteger, nullable=False),
    Index(None, "key", "value"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("run_id", _ID, ForeignKey("runs.id"), nullable=True),
    Column("name", String(500), nullable=False),
    Column("digest", String(64), nullable=False, index=True),
    Column("size_bytes", BigInteger, nullable=False),
    Column("media_type", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

registered_models = Table(
    "registered_models",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("project_id", _ID, ForeignKey("projects.id"), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("model_name", String(200), ForeignKey("registered_models.name"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("run_id", _ID, ForeignKey("runs.id"), nullable=True),
    Column("parent_version_id", _ID, ForeignKey("model_versions.id"), nullable=True),
    Column("weights_digest", String(64), nullable=False),
    Column("onnx_digest", String(64), nullable=False),
    Column("signature", _JSON, nullable=False),
    Column("metrics", _JSON, nullable=False),
    Column("tags", _JSON, nullable=False),
    Column("privacy", _JSON, nullable=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("model_name", "version"),
)

model_version_datasets = Table(
    "model_version_datasets",
    metadata,
    Column("version_id", _ID, ForeignKey("model_versions.id"), primary_key=True),
    Column("dataset_id", _ID, ForeignKey("datasets.id"), primary_key=True),
    Column("role", String(50), nullable=False),
)

model_version_contributors = Table(
    "model_version_contributors",
    metadata,
    Column("version_id", _ID, ForeignKey("model_versions.id"), primary_key=True),
    Column("contributor", String(200), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("rounds", _JSON, nullable=False),
    Column("num_examples", BigInteger, nullable=True),
)

aliases = Table(
    "aliases",
    metadata,
    Column("model_name", String(200), ForeignKey("registered_models.name"), primary_key=True),
    Column("alias", String(100), primary_key=True),
    Column("version_id", _ID, ForeignKey("model_versions.id"), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

alias_history = Table(
    "alias_history",
    metadata,
    Column("id", Integer().with_variant(BigInteger, "postgresql"), primary_key=True),
    Column("model_name", String(200), ForeignKey("registered_models.name"), nullable=False),
    Column("alias", String(100), nullable=False),
    Column("from_version_id", _ID, ForeignKey("model_versions.id"), nullable=True),
    Column("to_version_id", _ID, ForeignKey("model_versions.id"), nullable=True),
    Column("action", String(20), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index(None, "model_name", "alias", "id"),
)

deployments = Table(
    "deployments",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("model_name", String(200), ForeignKey("registered_models.name"), nullable=False),
    Column("spec", _JSON, nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    ),
    Column("at_us", BigInteger, nullable=False),
    Column("kind", String(100), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("subject", String(500), nullable=False),
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index(None, "kind", "seq"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

fl_rounds = Table(
    "fl_rounds",
    metadata,
    Column("run_id", _ID, ForeignKey("runs.id"), primary_key=True),
    Column("round", Integer, primary_key=True),
    Column("status", String(20), nullable=False),
    Column("parameters_digest", String(64), nullable=False),
    Column("state_digest", String(64), nullable=True),
    Column("num_selected", Integer, nullable=False),
    Column("num_succeeded", Integer, nullable=False),
    Column("num_failed", Integer, nullable=False),
    Column("bytes_up", BigInteger, nullable=False),
    Column("bytes_down", BigInteger, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("metrics", _JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

fl_client_rounds = Table(
    "fl_client_rounds",
    metadata,
    Column("run_id", _ID, ForeignKey("runs.id"), primary_key=True),
    Column("round", Integer, primary_key=True),
    Column("client_id", String(200), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("reason", Text, nullable=True),
    Column("num_examples", BigInteger, nullable=True),
    Column("metrics", _JSON, nullable=False),
    Column("bytes_up", BigInteger, nullable=False),
    Column("bytes_down", BigInteger, nullable=False),
    Column("seconds", Float, nullable=False),
    Index(None, "run_id", "client_id"),
)

model_profiles = Table(
    "model_profiles",
    metadata,
    Column("model_version_id", _ID, ForeignKey("model_versions.id"), primary_key=True),
    Column("profile_digest", String(64), nullable=False),
    Column("source", String(20), nullable=False),
    Column("num_rows", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

monitor_windows = Table(
    "monitor_windows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_name", String(200), ForeignKey("registered_models.name"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("start_time", UtcDateTime, nullable=False),
    Column("end_time", UtcDateTime, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("verdict", String(20), nullable=True),
    Column("summary", _JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "model_name", "version", "kind", "end_time"),
)

loop_actions = Table(
    "loop_actions",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("policy", String(200), nullable=False),
    Column("model_name", String(200), ForeignKey("registered_models.name"), nullable=False),
    Column("trigger_kind", String(20), nullable=False),
    Column("trigger_ref", String(200), nullable=False),
    Column("state", String(20), nullable=False),
    Column("champion_version", Integer, nullable=True),
    Column("challenger_version", Integer, nullable=True),
    Column("run_id", _ID, nullable=True),
    Column("step", Integer, nullable=False),
    Column("step_started_at", UtcDateTime, nullable=True),
    Column("detail", _JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("policy", "trigger_ref"),
    Index(None, "policy", "state"),
)

_ACTIVE = text("revoked_at IS NULL")

#: Enrollment tokens of federated clients (kind ``client``) and API keys (kind ``api``): only the
#: sha256 of a token is kept. A name is unique per kind among credentials not revoked.
credentials = Table(
    "credentials",
    metadata,
    Column("id", _ID, primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("token_sha256", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("revoked_by", String(200), nullable=True),
    Column("last_used_at", UtcDateTime, nullable=True),
    Index(None, "kind", "name", unique=True, sqlite_where=_ACTIVE, postgresql_where=_ACTIVE),
)
