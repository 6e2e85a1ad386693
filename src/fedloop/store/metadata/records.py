"""Immutable records the metadata store returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fedloop.core import DatasetId, ModelVersionId, ProjectId, RunId, Signature

__all__ = [
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


@dataclass(frozen=True, slots=True)
class Project:
    """A namespace for runs, data sets and models."""

    id: ProjectId
    name: str
    description: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Dataset:
    """A data set identified by its content fingerprint (sha256 of its canonical bytes)."""

    id: DatasetId
    project_id: ProjectId
    name: str
    fingerprint: str
    num_rows: int | None
    schema: dict[str, Any]
    uri: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Run:
    """One training run (federated, data-parallel or local) with its params and tags."""

    id: RunId
    project_id: ProjectId
    name: str
    kind: str
    status: str
    params: dict[str, str]
    tags: dict[str, str]
    parent_run_id: RunId | None
    created_at: datetime
    ended_at: datetime | None
    error: str | None
    latest_metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One value of a metric time series."""

    key: str
    value: float
    step: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    """An artifact recorded against a run (its bytes live in the artifact store)."""

    id: str
    run_id: RunId | None
    name: str
    digest: str
    size_bytes: int
    media_type: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A named model, the container of its versions and aliases."""

    name: str
    project_id: ProjectId
    description: str
    created_at: datetime
    latest_version: int | None
    aliases: dict[str, int]


@dataclass(frozen=True, slots=True)
class Contributor:
    """A client or worker that contributed to a model version, and in which rounds."""

    contributor: str
    kind: str
    rounds: tuple[int, ...]
    num_examples: int | None


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """A registered model version: weights, ONNX graph, signature, metrics and lineage."""

    id: ModelVersionId
    model_name: str
    version: int
    run_id: RunId | None
    parent_version_id: ModelVersionId | None
    weights_digest: str
    onnx_digest: str
    signature: Signature
    metrics: dict[str, float]
    tags: dict[str, str]
    privacy: dict[str, Any] | None
    description: str
    created_at: datetime
    dataset_ids: tuple[DatasetId, ...] = ()
    contributors: tuple[Contributor, ...] = ()
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AliasChange:
    """One move of an alias, kept forever."""

    id: int
    model_name: str
    alias: str
    from_version: int | None
    to_version: int | None
    action: str
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Deployment:
    """Desired serving state of a model (what the controller reconciles)."""

    id: str
    name: str
    model_name: str
    spec: dict[str, Any]
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One append-only, hash-chained audit event."""

    seq: int
    at: datetime
    kind: str
    actor: str
    subject: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class FlClientRound:
    """What one client did in one federated round (never its data or its raw update)."""

    client_id: str
    status: str  # ok | failed | rejected | timeout | unused
    reason: str | None
    num_examples: int | None
    metrics: dict[str, float]
    bytes_up: int
    bytes_down: int
    seconds: float


@dataclass(frozen=True, slots=True)
class FlRound:
    """A completed federated round: its checkpoint and its summary."""

    run_id: RunId
    round: int
    status: str  # completed | skipped
    parameters_digest: str
    state_digest: str | None
    num_selected: int
    num_succeeded: int
    num_failed: int
    bytes_up: int
    bytes_down: int
    seconds: float
    metrics: dict[str, float]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """The reference data profile of a model version (what drift is measured against)."""

    model_version_id: ModelVersionId
    profile_digest: str
    source: str
    num_rows: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class MonitorWindow:
    """One checked window of live traffic: its drift or performance summary."""

    id: int
    model_name: str
    version: int
    kind: str
    start_time: datetime
    end_time: datetime
    rows: int
    verdict: str | None
    summary: dict[str, Any]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Return the window as JSON-ready data (the API's and the CLI's view)."""
        return {
            "id": self.id,
            "model": self.model_name,
            "version": self.version,
            "kind": self.kind,
            "start_time": self.start_time.isoformat(),
            "end_time": self.end_time.isoformat(),
            "rows": self.rows,
            "verdict": self.verdict,
            "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class LoopAction:
    """One action of the closed loop: a policy's trigger and what became of it."""

    id: str
    policy: str
    model_name: str
    trigger_kind: str
    trigger_ref: str
    state: str
    champion_version: int | None
    challenger_version: int | None
    run_id: str | None
    step: int
    step_started_at: datetime | None
    detail: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Return the action as JSON-ready data (the API's and the CLI's view)."""
        return {
            "id": self.id,
            "policy": self.policy,
            "model": self.model_name,
            "trigger": self.trigger_kind,
            "trigger_ref": self.trigger_ref,
            "state": self.state,
            "champion_version": self.champion_version,
            "challenger_version": self.challenger_version,
            "step": self.step,
            "detail": self.detail,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }

    @property
    def is_open(self) -> bool:
        """Whether the action is still in progress (not promoted, rolled back, rejected or failed)."""
        return self.state not in ("promoted", "rolled_back", "rejected", "failed")


@dataclass(frozen=True, slots=True)
class Credential:
    """A federated client's enrollment token or an API key; the token itself is never kept."""

    id: str
    kind: str
    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    revoked_by: str | None
    last_used_at: datetime | None

    @property
    def is_active(self) -> bool:
        """Whether the credential still authenticates (it was not revoked)."""
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """Return the credential as JSON-ready data (the API's and the CLI's view)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revoked_by": self.revoked_by,
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
        }
