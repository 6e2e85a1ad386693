"""Monitoring records: reference profiles of model versions and checked windows of live traffic."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select

from fedloop.core import InvalidInput, ModelVersionId, NotFound
from fedloop.store.audit import append_event
from fedloop.store.metadata._federated import FederatedMixin
from fedloop.store.metadata.records import ModelProfile, MonitorWindow
from fedloop.store.metadata.tables import model_profiles, model_versions, monitor_windows

_PROFILE_SOURCES = ("central", "federated", "traffic")
_WINDOW_KINDS = ("drift", "performance")
_VERDICTS = ("drift", "no_drift", "ok", "degraded")


class MonitoringMixin(FederatedMixin):
    """Reference profiles and monitor windows."""

    def attach_profile(
        self,
        model_version_id: ModelVersionId,
        *,
        profile_digest: str,
        source: str,
        num_rows: int,
        actor: str = "system",
    ) -> ModelProfile:
        """Record (or replace) the reference profile of a model version, with an audit event.

        Parameters
        ----------
        model_version_id : ModelVersionId
            The version.
        profile_digest : str
            Artifact digest of the encoded profile.
        source : {"central", "federated", "traffic"}
            How it was made: from the training rows, merged from client summaries, or from
            the first window of live traffic.
        num_rows : int
            Rows summarised.
        actor : str
            Recorded in the audit event.

        Returns
        -------
        ModelProfile
            The stored record.

        Raises
        ------
        NotFound
            When the version does not exist.
        InvalidInput
            When ``source`` or ``num_rows`` is bad.
        """
        if source not in _PROFILE_SOURCES:
            raise InvalidInput(
                f"profile `source` must be one of {', '.join(_PROFILE_SOURCES)}; got {source!r}.",
                field="source",
                value=source,
            )
        if num_rows < 0:
            raise InvalidInput(f"`num_rows` must be >= 0; got {num_rows}.", field="num_rows")
        now = self.clock.now()
        values: dict[str, Any] = {
            "model_version_id": model_version_id,
            "profile_digest": profile_digest,
            "source": source,
            "num_rows": int(num_rows),
            "created_at": now,
        }
        with self.transaction() as conn:
            row = conn.execute(
                select(model_versions.c.model_name, model_versions.c.version).where(
                    model_versions.c.id == model_version_id
                )
            ).first()
            if row is None:
                raise NotFound(
                    f"no model version with id {model_version_id!r}.",
                    field="model_version_id",
                    value=model_version_id,
                )
            conn.execute(self._upsert(model_profiles, ["model_version_id"], [values]))
            append_event(
                conn,
                kind="model.profile_attached",
                subject=f"model:{row.model_name}/{row.version}",
                actor=actor,
                at=now,
                payload={"profile_digest": profile_digest, "source": source, "num_rows": num_rows},
            )
        return ModelProfile(**values)

    def find_profile(self, model_version_id: ModelVersionId) -> ModelProfile | None:
        """Return the reference profile record of a version, or None when it has none."""
        with self.reading() as conn:
            row = conn.execute(
                select(model_profiles).where(model_profiles.c.model_version_id == model_version_id)
            ).first()
        return None if row is None else ModelProfile(**row._mapping)

    def record_monitor_window(
        self,
        model_name: str,
        version: int,
        *,
        kind: str,
        start_time: datetime,
        end_time: datetime,
        rows: int,
        verdict: str | None,
        summary: Mapping[str, Any],
        event_kind: str | None = None,
        event_payload: Mapping[str, Any] | None = None,
        actor: str = "monitor",
    ) -> MonitorWindow:
        """Record one checked window; with ``event_kind``, also an audit event in the same commit.

        Parameters
        ----------
        model_name, version : str, int
            The version whose traffic the window holds.
        kind : {"drift", "performance"}
            What was checked.
        start_time, end_time : datetime
            The window's span (UTC).
        rows : int
            Rows (drift) or labelled predictions (performance) in the window.
        verdict : str or None
            ``drift``/``no_drift`` or ``ok``/``degraded``.
        summary : Mapping
            The JSON-ready result (per-column tests, metrics).
        event_kind : str or None
            When set (e.g. ``monitor.drift_detected``), the audit event appended with it.
        event_payload : Mapping or None
            The event's payload (the findings); the window id is added.
        actor : str
            Recorded in the audit event.

        Returns
        -------
        MonitorWindow
            The stored window.
        """
        if kind not in _WINDOW_KINDS:
            raise InvalidInput(
                f"window `kind` must be one of {', '.join(_WINDOW_KINDS)}; got {kind!r}.",
                field="kind",
                value=kind,
            )
        if verdict is not None and verdict not in _VERDICTS:
            raise InvalidInput(
                f"window `verdict` must be one of {', '.join(_VERDICTS)}; got {verdict!r}.",
                field="verdict",
                value=verdict,
            )
        now = self.clock.now()
        values: dict[str, Any] = {
            "model_name": model_name,
            "version": int(version),
            "kind": kind,
            "start_time": start_time,
            "end_time": end_time,
            "rows": int(rows),
            "verdict": verdict,
            "summary": dict(summary),
            "created_at": now,
        }
        with self.transaction() as conn:
            (window_id,) = conn.execute(monitor_windows.insert(), values).inserted_primary_key or (
                0,
            )
            if event_kind is not None:
                append_event(
                    conn,
                    kind=event_kind,
                    subject=f"model:{model_name}/{version}",
                    actor=actor,
                    at=now,
                    payload={**(event_payload or {}), "window_id": int(window_id)},
                )
        return MonitorWindow(id=int(window_id), **values)

    def list_monitor_windows(
        self,
        model_name: str,
        *,
        version: int | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[MonitorWindow]:
        """Return a model's checked windows, oldest first (the newest ``limit`` of them)."""
        query = select(monitor_windows).where(monitor_windows.c.model_name == model_name)
        if version is not None:
            query = query.where(monitor_windows.c.version == version)
        if kind is not None:
            query = query.where(monitor_windows.c.kind == kind)
        if since is not None:
            query = query.where(monitor_windows.c.end_time >= since)
        query = query.order_by(monitor_windows.c.id.desc()).limit(limit)
        with self.reading() as conn:
            rows = conn.execute(query).all()
        return [MonitorWindow(**r._mapping) for r in reversed(rows)]
