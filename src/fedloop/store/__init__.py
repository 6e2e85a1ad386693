"""Metadata (SQLAlchemy + Alembic), artifacts (fsspec), the audit log and the tracking API."""

from fedloop.store.artifacts import ArtifactRef, ArtifactStore, FsspecArtifactStore, GcReport
from fedloop.store.audit import AuditReport
from fedloop.store.credentials import DEFAULT_CACHE_S, StoreAuthenticator, bearer_token
from fedloop.store.gc import GC_EVENT, collect_garbage
from fedloop.store.metadata import (
    SCHEMA_HEAD,
    AliasChange,
    AuditEvent,
    Contributor,
    Credential,
    Dataset,
    Deployment,
    FlClientRound,
    FlRound,
    LoopAction,
    MetricPoint,
    ModelProfile,
    ModelVersion,
    MonitorWindow,
    Project,
    RegisteredModel,
    Run,
    StoredArtifact,
)
from fedloop.store.metadata._common import check_name
from fedloop.store.metadata.sql import MetadataStore, SqlMetadataStore
from fedloop.store.tracking import ActiveRun, start_run
from fedloop.store.workspace import CONFIG_FILE, Workspace, load_config, open_workspace

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_CACHE_S",
    "GC_EVENT",
    "SCHEMA_HEAD",
    "ActiveRun",
    "AliasChange",
    "ArtifactRef",
    "ArtifactStore",
    "AuditEvent",
    "AuditReport",
    "Contributor",
    "Credential",
    "Dataset",
    "Deployment",
    "FlClientRound",
    "FlRound",
    "FsspecArtifactStore",
    "GcReport",
    "LoopAction",
    "MetadataStore",
    "MetricPoint",
    "ModelProfile",
    "ModelVersion",
    "MonitorWindow",
    "Project",
    "RegisteredModel",
    "Run",
    "SqlMetadataStore",
    "StoreAuthenticator",
    "StoredArtifact",
    "Workspace",
    "bearer_token",
    "check_name",
    "collect_garbage",
    "load_config",
    "open_workspace",
    "start_run",
]
