"""Projects, data sets, runs, params, tags, metric series, run search and artifact records."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, get_args

from sqlalchemy import Connection, Insert, and_, bindparam, func, select, tuple_

from fedloop.core import (
    Conflict,
    DatasetId,
    InvalidInput,
    NotFound,
    ProjectId,
    RunId,
    RunKind,
    RunStatus,
    new_id,
)
from fedloop.store.audit import append_event
from fedloop.store.metadata._common import (
    StoreBase,
    check_key,
    check_name,
    check_text,
    dialect_insert,
)
from fedloop.store.metadata.records import Dataset, MetricPoint, Project, Run, StoredArtifact
from fedloop.store.metadata.search import compile_filter, compile_order, parse_filter
from fedloop.store.metadata.tables import (
    artifacts,
    datasets,
    latest_metrics,
    metadata,
    metrics,
    projects,
    run_datasets,
    run_params,
    run_tags,
    runs,
)

_STATUS_UPDATE = (
    runs.update()
    .where(runs.c.id == bindparam("target_id"))
    .values(status=bindparam("status"), ended_at=bindparam("ended_at"), error=bindparam("error"))
)
_KINDS = get_args(RunKind)
_STATUSES = get_args(RunStatus)


def _str_map(values: Mapping[str, Any] | None, *, field: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (values or {}).items():
        check_key(key, field=field)
        text = (
            value
            if isinstance(value, str)
            else repr(value)
            if isinstance(value, float)
            else str(value)
        )
        if len(text) > 8000:
            raise InvalidInput(
                f"`{field}[{key!r}]` is {len(text)} characters; at most 8000 are stored.",
                field=f"{field}.{key}",
                hint="Store large values as an artifact instead.",
            )
        out[key] = text
    return out


def _prepare_points(
    points: Iterable[tuple[RunId, MetricPoint]],
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    """Validate points; return their rows and the newest row of each (run, key)."""
    rows: list[dict[str, Any]] = []
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for run_id, point in points:
        check_key(point.key, field="metrics")
        if not isinstance(point.value, (int, float)) or not math.isfinite(point.value):
            raise InvalidInput(
                f"metric {point.key!r} must be a finite number; got {point.value!r}.",
                field=f"metrics.{point.key}",
                value=point.value,
                hint="Check the training loop for divergence, or skip the point.",
            )
        if not isinstance(point.step, int) or point.step < 0:
            raise InvalidInput(
                f"metric {point.key!r} step must be an int >= 0; got {point.step!r}.",
                field="step",
                value=point.step,
            )
        row = {
            "run_id": run_id,
            "key": point.key,
            "step": point.step,
            "value": float(point.value),
            "timestamp_ms": point.timestamp_ms,
        }
        rows.append(row)
        prev = latest.get((run_id, point.key))
        if prev is None or (row["step"], row["timestamp_ms"]) >= (
            prev["step"],
            prev["timestamp_ms"],
        ):
            latest[(run_id, point.key)] = row
    return rows, latest


class RunsMixin(StoreBase):
    """Projects, data sets, runs, params, tags, metrics and artifact records."""

    # -- projects ----------------------------------------------------------------------------
    def ensure_project(self, name: str, *, description: str = "") -> Project:
        """Return the project called ``name``, creating it if needed.

        Parameters
        ----------
        name : str
            Project name.
        description : str, default ""
            Used only when the project is created.

        Returns
        -------
        Project
            The stored project.
        """
        check_name(name, field="project.name")
        cache: dict[str, Project] = self.__dict__.setdefault("_project_cache", {})
        if name in cache:  # projects are never renamed or deleted
            return cache[name]
        found = self.find_project(name)
        if found is not None:
            cache[name] = found
            return found
        values: dict[str, Any] = {
            "id": new_id(),
            "name": name,
            "description": description,
            "created_at": self.clock.now(),
        }
        with self.transaction() as conn:
            conn.execute(self._insert_ignore(projects, ["name"], values))
            row = conn.execute(select(projects).where(projects.c.name == name)).one()
        cache[name] = Project(**row._mapping)
        return cache[name]

    def find_project(self, name: str) -> Project | None:
        """Return the project called ``name`` or None."""
        with self.reading() as conn:
            row = conn.execute(select(projects).where(projects.c.name == name)).first()
        return Project(**row._mapping) if row else None

    def get_project(self, name: str) -> Project:
        """Return the project called ``name``.

        Raises
        ------
        NotFound
            When there is no such project.
        """
        found = self.find_project(name)
        if found is None:
            raise NotFound(
                f"no project named {name!r}.",
                field="project",
                value=name,
                hint="List projects with `fedloop runs list --project NAME`.",
            )
        return found

    def list_projects(self) -> list[Project]:
        """Return all projects, oldest first."""
        with self.reading() as conn:
            rows = conn.execute(select(projects).order_by(projects.c.created_at)).all()
        return [Project(**r._mapping) for r in rows]

    # -- data sets ---------------------------------------------------------------------------
    def register_dataset(
        self,
        project_id: ProjectId,
        name: str,
        *,
        fingerprint: str,
        num_rows: int | None = None,
        schema: Mapping[str, Any] | None = None,
        uri: str | None = None,
    ) -> Dataset:
        """Record a data set by content fingerprint; the same content returns the same row.

        Parameters
        ----------
        project_id : ProjectId
            Owning project.
        name : str
            Data set name.
        fingerprint : str
            sha256 hex of the data's canonical bytes.
        num_rows : int or None
            Row count.
        schema : Mapping or None
            Column names and dtypes.
        uri : str or None
            Where the data lives (never the data itself).

        Returns
        -------
        Dataset
            The stored (or already stored) data set.
        """
        check_name(name, field="dataset.name")
        if len(fingerprint) != 64 or any(c not in "0123456789abcdef" for c in fingerprint):
            raise InvalidInput(
                f"`fingerprint` must be 64 lowercase hex characters; got {fingerprint!r}.",
                field="fingerprint",
                hint="Use fedloop.store.fingerprint_arrays().",
            )
        with self.transaction() as conn:
            row = conn.execute(
                select(datasets).where(
                    datasets.c.project_id == project_id,
                    datasets.c.name == name,
                    datasets.c.fingerprint == fingerprint,
                )
            ).first()
            if row is not None:
                return Dataset(**row._mapping)
            values: dict[str, Any] = {
                "id": new_id(),
                "project_id": project_id,
                "name": name,
                "fingerprint": fingerprint,
                "num_rows": num_rows,
                "schema": dict(schema or {}),
                "uri": uri,
                "created_at": self.clock.now(),
            }
            conn.execute(datasets.insert(), values)
        return Dataset(**values)

    def find_dataset(self, dataset_id: DatasetId) -> Dataset | None:
        """Return a data set by id, or None."""
        with self.reading() as conn:
            row = conn.execute(select(datasets).where(datasets.c.id == dataset_id)).first()
        return Dataset(**row._mapping) if row else None

    def get_dataset(self, dataset_id: DatasetId) -> Dataset:
        """Return a data set by id.

        Raises
        ------
        NotFound
            When there is no such data set.
        """
        found = self.find_dataset(dataset_id)
        if found is None:
            raise NotFound(
                f"no data set with id {dataset_id!r}.", field="dataset_id", value=dataset_id
            )
        return found

    def list_datasets(self, project_id: ProjectId) -> list[Dataset]:
        """Return the project's data sets, newest first."""
        with self.reading() as conn:
            rows = conn.execute(
                select(datasets)
                .where(datasets.c.project_id == project_id)
                .order_by(datasets.c.created_at.desc())
            ).all()
        return [Dataset(**r._mapping) for r in rows]

    # -- runs --------------------------------------------------------------------------------
    def create_run(
        self,
        project_id: ProjectId,
        *,
        name: str | None = None,
        kind: str = "local",
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: RunId | None = None,
        dataset_ids: Sequence[tuple[DatasetId, str]] = (),
    ) -> Run:
        """Create a run in status ``running``.

        Parameters
        ----------
        project_id : ProjectId
            Owning project.
        name : str or None
            Display name; defaults to ``run-<first 8 of id>``.
        kind : {"local", "federated", "data-parallel"}
            What produced it.
        params : Mapping or None
            Hyperparameters (stored as text).
        tags : Mapping or None
            Free-form labels.
        parent_run_id : RunId or None
            The run this one belongs to.
        dataset_ids : sequence of (DatasetId, role)
            Data sets used (role: ``"train"``, ``"eval"``…).

        Returns
        -------
        Run
            The new run.
        """
        if kind not in _KINDS:
            raise InvalidInput(
                f"`kind` must be one of {', '.join(_KINDS)}; got {kind!r}.",
                field="kind",
                value=kind,
            )
        run_id = RunId(new_id())
        name = name or f"run-{run_id[:8]}"
        if not isinstance(name, str) or not 0 < len(name) <= 200:
            raise InvalidInput(f"`name` must be 1-200 characters; got {name!r}.", field="name")
        p, t = _str_map(params, field="params"), _str_map(tags, field="tags")
        for _, role in dataset_ids:
            check_text(role, field="dataset role", max_chars=50)
        now = self.clock.now()
        with self.transaction() as conn:
            conn.execute(
                runs.insert(),
                {
                    "id": run_id,
                    "project_id": project_id,
                    "name": name,
                    "kind": kind,
                    "status": "running",
                    "parent_run_id": parent_run_id,
                    "created_at": now,
                    "ended_at": None,
                    "error": None,
                },
            )
            if p:
                conn.execute(
                    run_params.insert(),
                    [{"run_id": run_id, "key": k, "value": v} for k, v in p.items()],
                )
            if t:
                conn.execute(
                    run_tags.insert(),
                    [{"run_id": run_id, "key": k, "value": v} for k, v in t.items()],
                )
            if dataset_ids:
                conn.execute(
                    run_datasets.insert(),
                    [{"run_id": run_id, "dataset_id": d, "role": r} for d, r in dataset_ids],
                )
        return Run(
            id=run_id,
            project_id=project_id,
            name=name,
            kind=kind,
            status="running",
            params=p,
            tags=t,
            parent_run_id=parent_run_id,
            created_at=now,
            ended_at=None,
            error=None,
        )

    def _require_run(self, conn: Connection, run_id: RunId) -> None:
        if conn.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise NotFound(
                f"no run with id {run_id!r}.",
                field="run_id",
                value=run_id,
                hint="List runs with `fedloop runs list`.",
            )

    def log_params(self, run_id: RunId, params: Mapping[str, Any]) -> None:
        """Record hyperparameters; a param once logged cannot change its value.

        Raises
        ------
        NotFound
            When the run does not exist.
        Conflict
            When a key was logged before with another value.
        """
        values = _str_map(params, field="params")
        if not values:
            return
        with self.transaction() as conn:
            self._require_run(conn, run_id)
            existing: dict[str, str] = dict(
                conn.execute(
                    select(run_params.c.key, run_params.c.value).where(
                        run_params.c.run_id == run_id, run_params.c.key.in_(list(values))
                    )
                ).all()
            )
            for key, old in existing.items():
                if old != values[key]:
                    raise Conflict(
                        f"param {key!r} of run {run_id} is {old!r}; cannot change it to "
                        f"{values[key]!r}.",
                        field=f"params.{key}",
                        hint="Params are immutable; log the new value under another key or start a new run.",
                    )
            new = [
                {"run_id": run_id, "key": k, "value": v}
                for k, v in values.items()
                if k not in existing
            ]
            if new:
                conn.execute(run_params.insert(), new)

    def set_tags(self, run_id: RunId, tags: Mapping[str, Any]) -> None:
        """Set (or overwrite) tags on a run.

        Raises
        ------
        NotFound
            When the run does not exist.
        """
        values = _str_map(tags, field="tags")
        if not values:
            return
        with self.transaction() as conn:
            self._require_run(conn, run_id)
            conn.execute(
                self._upsert(
                    run_tags,
                    ["run_id", "key"],
                    [{"run_id": run_id, "key": k, "value": v} for k, v in values.items()],
                )
            )

    def log_metric_points(self, points: Iterable[tuple[RunId, MetricPoint]]) -> int:
        """Write metric points for one or many runs in one transaction.

        Parameters
        ----------
        points : iterable of (RunId, MetricPoint)
            Points to store; the latest step of each (run, key) is kept for search.

        Returns
        -------
        int
            How many points were written.

        Raises
        ------
        InvalidInput
            For a bad key, a non-finite value or a negative step (nothing is written).
        NotFound
            When a run does not exist (nothing is written).
        """
        rows, latest = _prepare_points(points)
        if not rows:
            return 0
        run_ids = {r for r, _ in latest}
        with self.transaction() as conn:
            found = set(conn.execute(select(runs.c.id).where(runs.c.id.in_(run_ids))).scalars())
            if missing := run_ids - found:
                raise NotFound(
                    f"no run with id {sorted(missing)[0]!r}.",
                    field="run_id",
                    value=sorted(missing)[0],
                )
            self._write_points(conn, rows, list(latest.values()))
        return len(rows)

    def _write_points(
        self, conn: Connection, rows: list[dict[str, Any]], latest: list[dict[str, Any]]
    ) -> None:
        conn.execute(metrics.insert(), rows)
        conn.execute(self._latest_upsert(), latest)

    def _latest_upsert(self) -> Insert:
        """Return the (cached) upsert that keeps the newest point of each (run, key)."""
        cached: Insert | None = getattr(self, "_latest_upsert_stmt", None)
        if cached is None:
            stmt = dialect_insert(self.engine.dialect.name, latest_metrics)
            cached = stmt.on_conflict_do_update(
                index_elements=["run_id", "key"],
                set_={
                    "step": stmt.excluded.step,
                    "value": stmt.excluded.value,
                    "timestamp_ms": stmt.excluded.timestamp_ms,
                },
                where=tuple_(stmt.excluded.step, stmt.excluded.timestamp_ms)
                >= tuple_(latest_metrics.c.step, latest_metrics.c.timestamp_ms),
            )
            self._latest_upsert_stmt = cached
        return cached

    def get_metric_history(self, run_id: RunId, key: str) -> list[MetricPoint]:
        """Return every point of one metric of a run, by step then time."""
        with self.reading() as conn:
            rows = conn.execute(
                select(metrics.c.key, metrics.c.value, metrics.c.step, metrics.c.timestamp_ms)
                .where(metrics.c.run_id == run_id, metrics.c.key == key)
                .order_by(metrics.c.step, metrics.c.timestamp_ms, metrics.c.id)
            ).all()
        return [
            MetricPoint(key=r.key, value=r.value, step=r.step, timestamp_ms=r.timestamp_ms)
            for r in rows
        ]

    def list_metric_keys(self, run_id: RunId) -> list[str]:
        """Return the metric keys a run has logged."""
        with self.reading() as conn:
            return list(
                conn.execute(
                    select(latest_metrics.c.key)
                    .where(latest_metrics.c.run_id == run_id)
                    .order_by(latest_metrics.c.key)
                ).scalars()
            )

    def set_run_status(
        self,
        run_id: RunId,
        status: str,
        *,
        error: str | None = None,
        final_points: Iterable[tuple[RunId, MetricPoint]] = (),
    ) -> None:
        """Move a run to ``running``, ``finished``, ``failed`` or ``killed``.

        Parameters
        ----------
        run_id : RunId
            The run.
        status : str
            New status.
        error : str or None
            Why it failed.
        final_points : iterable of (RunId, MetricPoint)
            Metric points of this run to write in the same transaction (a run's last flush).

        Raises
        ------
        NotFound
            When the run does not exist (nothing is written).
        InvalidInput
            For a bad status or point (nothing is written).
        """
        if status not in _STATUSES:
            raise InvalidInput(
                f"`status` must be one of {', '.join(_STATUSES)}; got {status!r}.",
                field="status",
                value=status,
            )
        rows, latest = _prepare_points(final_points)
        if any(r != run_id for r, _ in latest):
            raise InvalidInput(
                "`final_points` must belong to the run being ended.", field="final_points"
            )
        ended = None if status == "running" else self.clock.now()
        with self.transaction() as conn:
            result = conn.execute(
                _STATUS_UPDATE,
                {"target_id": run_id, "status": status, "ended_at": ended, "error": error},
            )
            if result.rowcount == 0:
                raise NotFound(f"no run with id {run_id!r}.", field="run_id", value=run_id)
            if rows:
                self._write_points(conn, rows, list(latest.values()))
            append_event(
                conn,
                kind=f"run.{status}",
                subject=f"run:{run_id}",
                at=ended or self.clock.now(),
                payload={"error": error} if error else {},
            )

    def _load_runs(self, conn: Connection, rows: Sequence[Any]) -> list[Run]:
        ids = [r.id for r in rows]
        if not ids:
            return []
        p: dict[str, dict[str, str]] = defaultdict(dict)
        t: dict[str, dict[str, str]] = defaultdict(dict)
        m: dict[str, dict[str, float]] = defaultdict(dict)
        for table, target in ((run_params, p), (run_tags, t)):
            for rid, key, value in conn.execute(
                select(table.c.run_id, table.c.key, table.c.value).where(table.c.run_id.in_(ids))
            ):
                target[rid][key] = value
        for rid, key, value in conn.execute(
            select(latest_metrics.c.run_id, latest_metrics.c.key, latest_metrics.c.value).where(
                latest_metrics.c.run_id.in_(ids)
            )
        ):
            m[rid][key] = value
        return [
            Run(
                id=r.id,
                project_id=r.project_id,
                name=r.name,
                kind=r.kind,
                status=r.status,
                params=p[r.id],
                tags=t[r.id],
                parent_run_id=r.parent_run_id,
                created_at=r.created_at,
                ended_at=r.ended_at,
                error=r.error,
                latest_metrics=m[r.id],
            )
            for r in rows
        ]

    def find_run(self, run_id: RunId) -> Run | None:
        """Return a run by id, or None."""
        with self.reading() as conn:
            rows = conn.execute(select(runs).where(runs.c.id == run_id)).all()
            loaded = self._load_runs(conn, rows)
        return loaded[0] if loaded else None

    def get_run(self, run_id: RunId) -> Run:
        """Return a run by id.

        Raises
        ------
        NotFound
            When there is no such run.
        """
        found = self.find_run(run_id)
        if found is None:
            raise NotFound(
                f"no run with id {run_id!r}.",
                field="run_id",
                value=run_id,
                hint="List runs with `fedloop runs list`.",
            )
        return found

    def search_runs(
        self,
        project_id: ProjectId | None = None,
        *,
        filter: str = "",
        order_by: str | None = None,
        max_results: int = 100,
    ) -> list[Run]:
        """Find runs by a filter over metrics, params, tags and attributes.

        Parameters
        ----------
        project_id : ProjectId or None
            Restrict to one project.
        filter : str, default ""
            E.g. ``"metrics.auc > 0.9 and params.optimizer = 'sgd'"``.
        order_by : str or None
            E.g. ``"metrics.auc desc"``; default newest first.
        max_results : int, default 100
            At most this many (1 to 50000).

        Returns
        -------
        list of Run
            Matching runs with params, tags and latest metrics.

        Raises
        ------
        InvalidInput
            For an unreadable filter or order.
        """
        if not 1 <= max_results <= 50_000:
            raise InvalidInput(
                f"`max_results` must be in [1, 50000]; got {max_results}.",
                field="max_results",
                value=max_results,
            )
        cond = compile_filter(parse_filter(filter), dialect=self.engine.dialect.name)
        metric_key, column, desc = compile_order(order_by)
        query = select(runs)
        if metric_key is not None:
            query = query.outerjoin(
                latest_metrics,
                and_(latest_metrics.c.run_id == runs.c.id, latest_metrics.c.key == metric_key),
            )
        if project_id is not None:
            query = query.where(runs.c.project_id == project_id)
        if cond is not None:
            query = query.where(cond)
        query = query.order_by(
            column.desc().nulls_last() if desc else column.asc().nulls_last(), runs.c.id
        ).limit(max_results)
        with self.reading() as conn:
            return self._load_runs(conn, conn.execute(query).all())

    def count_runs(self, project_id: ProjectId | None = None) -> int:
        """Return how many runs exist (in a project)."""
        query = select(func.count()).select_from(runs)
        if project_id is not None:
            query = query.where(runs.c.project_id == project_id)
        with self.reading() as conn:
            return int(conn.execute(query).scalar_one())

    def list_run_datasets(self, run_id: RunId) -> list[tuple[Dataset, str]]:
        """Return the data sets a run used, with their roles."""
        with self.reading() as conn:
            rows = conn.execute(
                select(datasets, run_datasets.c.role)
                .join(run_datasets, run_datasets.c.dataset_id == datasets.c.id)
                .where(run_datasets.c.run_id == run_id)
            ).all()
        return [
            (Dataset(**{k: v for k, v in r._mapping.items() if k != "role"}), r.role) for r in rows
        ]

    # -- artifact records ---------------------------------------------------------------------
    def record_artifact(
        self,
        run_id: RunId | None,
        name: str,
        *,
        digest: str,
        size_bytes: int,
        media_type: str = "application/octet-stream",
    ) -> StoredArtifact:
        """Record that an artifact (already in the artifact store) belongs to a run.

        Raises
        ------
        NotFound
            When the run does not exist.
        """
        if not name or len(name) > 500:
            raise InvalidInput(
                f"artifact `name` must be 1-500 characters; got {name!r}.", field="name"
            )
        values: dict[str, Any] = {
            "id": new_id(),
            "run_id": run_id,
            "name": name,
            "digest": digest,
            "size_bytes": size_bytes,
            "media_type": media_type,
            "created_at": self.clock.now(),
        }
        with self.transaction() as conn:
            if run_id is not None:
                self._require_run(conn, run_id)
            conn.execute(artifacts.insert(), values)
        return StoredArtifact(**values)

    def list_artifacts(self, run_id: RunId) -> list[StoredArtifact]:
        """Return the artifacts recorded against a run, oldest first."""
        with self.reading() as conn:
            rows = conn.execute(
                select(artifacts)
                .where(artifacts.c.run_id == run_id)
                .order_by(artifacts.c.created_at)
            ).all()
        return [StoredArtifact(**r._mapping) for r in rows]

    def list_artifact_digests(self) -> set[str]:
        """Return every artifact digest any record refers to (the keep-set of garbage collection).

        Every column named ``digest`` or ``*_digest`` of every table counts (run artifacts,
        model weights and ONNX graphs, federated round checkpoints and strategy states), so a
        digest column added later is kept without touching this method.

        Returns
        -------
        set of str
            The referenced sha256 digests.
        """
        columns = [
            column
            for table in metadata.sorted_tables
            for column in table.columns
            if column.name == "digest" or column.name.endswith("_digest")
        ]
        out: set[str] = set()
        with self.reading() as conn:
            for column in columns:
                out.update(
                    conn.execute(select(column).where(column.is_not(None)).distinct()).scalars()
                )
        return out
