"""The metadata store's schema, migrations and records (the store itself is in ``sql``)."""

from fedloop.store.metadata.engine import SCHEMA_HEAD
from fedloop.store.metadata.records import (
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

__all__ = [
    "SCHEMA_HEAD",
    "AliasChange",
    "AuditEvent",
    "Contributor",
    "Credential",
    "Dataset",
    "Deployment",
    "FlClientRound",
    "FlRound",
    "LoopAction",
    "MetricPoint",
    "ModelProfile",
    "ModelVersion",
    "MonitorWindow",
    "Project",
    "RegisteredModel",
    "Run",
    "StoredArtifact",
]
