"""Registered models and their versions with lineage (data sets, contributors, parent)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, func, select

from fedloop.core import (
    DatasetId,
    ModelVersionId,
    NotFound,
    ProjectId,
    RunId,
    Signature,
    new_id,
)
from fedloop.store.audit import append_event
from fedloop.store.metadata._common import StoreBase, check_name, check_text
from fedloop.store.metadata.records import Contributor, ModelVersion, RegisteredModel
from fedloop.store.metadata.tables import (
    aliases,
    model_version_contributors,
    model_version_datasets,
    model_versions,
    registered_models,
)


def _not_found_model(name: str) -> NotFound:
    return NotFound(
        f"no registered model named {name!r}.",
        field="model",
        value=name,
        hint="List models with `fedloop models list`.",
    )


class ModelsMixin(StoreBase):
    """Registered models and their versions with lineage."""

    def _lock_model(self, conn: Connection, name: str) -> None:
        row = conn.execute(
            select(registered_models.c.name)
            .where(registered_models.c.name == name)
            .with_for_update()
        ).first()
        if row is None:
            raise _not_found_model(name)

    def create_model_version(
        self,
        project_id: ProjectId,
        model_name: str,
        *,
        weights_digest: str,
        onnx_digest: str,
        signature: Signature,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        run_id: RunId | None = None,
        parent_version_id: ModelVersionId | None = None,
        dataset_ids: Sequence[tuple[DatasetId, str]] = (),
        contributors: Sequence[Contributor] = (),
        privacy: Mapping[str, Any] | None = None,
        description: str = "",
        actor: str = "system",
    ) -> ModelVersion:
        """Store a new version (numbered 1, 2, … per model) and its lineage, atomically.

        Parameters
        ----------
        project_id : ProjectId
            Owning project (the model is created in it if new).
        model_name : str
            Registered model name.
        weights_digest, onnx_digest : str
            sha256 of the artifacts already in the artifact store.
        signature : Signature
            Input/output signature.
        metrics, tags : Mapping or None
            Evaluation metrics and labels.
        run_id : RunId or None
            The run that produced it.
        parent_version_id : ModelVersionId or None
            The version it was warm-started from.
        dataset_ids : sequence of (DatasetId, role)
            Data sets it was trained / evaluated on.
        contributors : sequence of Contributor
            Clients or workers that contributed.
        privacy : Mapping or None
            Privacy cost (epsilon, delta, accountant).
        description : str
            Free text.
        actor : str
            Who registered it (audit).

        Returns
        -------
        ModelVersion
            The stored version.
        """
        check_name(model_name, field="model_name")
        check_text(actor, field="actor", max_chars=200)
        for _, role in dataset_ids:
            check_text(role, field="dataset role", max_chars=50)
        now = self.clock.now()
        with self.transaction() as conn:
            conn.execute(
                self._insert_ignore(
                    registered_models,
                    ["name"],
                    {
                        "name": model_name,
                        "project_id": project_id,
                        "description": "",
                        "created_at": now,
                    },
                )
            )
            self._lock_model(conn, model_name)
            version = (
                int(
                    conn.execute(
                        select(func.coalesce(func.max(model_versions.c.version), 0)).where(
                            model_versions.c.model_name == model_name
                        )
                    ).scalar_one()
                )
                + 1
            )
            if (
                parent_version_id is not None
                and conn.execute(
                    select(model_versions.c.id).where(model_versions.c.id == parent_version_id)
                ).first()
                is None
            ):
                raise NotFound(
                    f"parent version {parent_version_id!r} does not exist.",
                    field="parent_version_id",
                    value=parent_version_id,
                )
            vid = ModelVersionId(new_id())
            values = {
                "id": vid,
                "model_name": model_name,
                "version": version,
                "run_id": run_id,
                "parent_version_id": parent_version_id,
                "weights_digest": weights_digest,
                "onnx_digest": onnx_digest,
                "signature": signature.model_dump(mode="json"),
                "metrics": dict(metrics or {}),
                "tags": dict(tags or {}),
                "privacy": dict(privacy) if privacy is not None else None,
                "description": description,
                "created_at": now,
            }
            conn.execute(model_versions.insert(), values)
            if dataset_ids:
                conn.execute(
                    model_version_datasets.insert(),
                    [{"version_id": vid, "dataset_id": d, "role": r} for d, r in dataset_ids],
                )
            if contributors:
                conn.execute(
                    model_version_contributors.insert(),
                    [
                        {
                            "version_id": vid,
                            "contributor": c.contributor,
                            "kind": c.kind,
                            "rounds": list(c.rounds),
                            "num_examples": c.num_examples,
                        }
                        for c in contributors
                    ],
                )
            append_event(
                conn,
                kind="model.version_registered",
                subject=f"model:{model_name}/{version}",
                actor=actor,
                at=now,
                payload={
                    "version_id": vid,
                    "run_id": run_id,
                    "weights_digest": weights_digest,
                    "onnx_digest": onnx_digest,
                    "parent_version_id": parent_version_id,
                    "datasets": [d for d, _ in dataset_ids],
                    "contributors": [c.contributor for c in contributors],
                    "privacy": dict(privacy) if privacy is not None else None,
                },
            )
        return self.get_model_version(model_name, version)

    def _versions(self, conn: Connection, rows: Sequence[Any]) -> list[ModelVersion]:
        ids = [r.id for r in rows]
        ds: dict[str, list[DatasetId]] = defaultdict(list)
        cs: dict[str, list[Contributor]] = defaultdict(list)
        al: dict[str, list[str]] = defaultdict(list)
        if ids:
            for r in conn.execute(
                select(model_version_datasets).where(model_version_datasets.c.version_id.in_(ids))
            ):
                ds[r.version_id].append(r.dataset_id)
            for r in conn.execute(
                select(model_version_contributors)
                .where(model_version_contributors.c.version_id.in_(ids))
                .order_by(model_version_contributors.c.contributor)
            ):
                cs[r.version_id].append(
                    Contributor(
                        contributor=r.contributor,
                        kind=r.kind,
                        rounds=tuple(r.rounds),
                        num_examples=r.num_examples,
                    )
                )
            for r in conn.execute(
                select(aliases.c.alias, aliases.c.version_id)
                .where(aliases.c.version_id.in_(ids))
                .order_by(aliases.c.alias)
            ):
                al[r.version_id].append(r.alias)
        return [
            ModelVersion(
                id=r.id,
                model_name=r.model_name,
                version=r.version,
                run_id=r.run_id,
                parent_version_id=r.parent_version_id,
                weights_digest=r.weights_digest,
                onnx_digest=r.onnx_digest,
                signature=Signature.model_validate(r.signature),
                metrics=dict(r.metrics),
                tags=dict(r.tags),
                privacy=r.privacy,
                description=r.description,
                created_at=r.created_at,
                dataset_ids=tuple(ds[r.id]),
                contributors=tuple(cs[r.id]),
                aliases=tuple(al[r.id]),
            )
            for r in rows
        ]

    def find_model_version(self, model_name: str, version: int) -> ModelVersion | None:
        """Return a version by model name and number, or None."""
        with self.reading() as conn:
            rows = conn.execute(
                select(model_versions).where(
                    model_versions.c.model_name == model_name, model_versions.c.version == version
                )
            ).all()
            found = self._versions(conn, rows)
        return found[0] if found else None

    def get_model_version(self, model_name: str, version: int) -> ModelVersion:
        """Return a version by model name and number.

        Raises
        ------
        NotFound
            When the model or version does not exist.
        """
        found = self.find_model_version(model_name, version)
        if found is None:
            raise NotFound(
                f"model {model_name!r} has no version {version}.",
                field="version",
                value=version,
                hint=f"List versions with `fedloop models show {model_name}`.",
            )
        return found

    def get_model_version_by_id(self, version_id: ModelVersionId) -> ModelVersion:
        """Return a version by its id.

        Raises
        ------
        NotFound
            When there is no such version.
        """
        with self.reading() as conn:
            found = self._versions(
                conn,
                conn.execute(select(model_versions).where(model_versions.c.id == version_id)).all(),
            )
        if not found:
            raise NotFound(
                f"no model version with id {version_id!r}.", field="version_id", value=version_id
            )
        return found[0]

    def list_model_versions(self, model_name: str) -> list[ModelVersion]:
        """Return all versions of a model, newest first.

        Raises
        ------
        NotFound
            When the model does not exist.
        """
        with self.reading() as conn:
            if (
                conn.execute(
                    select(registered_models.c.name).where(registered_models.c.name == model_name)
                ).first()
                is None
            ):
                raise _not_found_model(model_name)
            return self._versions(
                conn,
                conn.execute(
                    select(model_versions)
                    .where(model_versions.c.model_name == model_name)
                    .order_by(model_versions.c.version.desc())
                ).all(),
            )

    def list_registered_models(self, project_id: ProjectId | None = None) -> list[RegisteredModel]:
        """Return registered models with their latest version and aliases."""
        query = select(registered_models).order_by(registered_models.c.name)
        if project_id is not None:
            query = query.where(registered_models.c.project_id == project_id)
        with self.reading() as conn:
            rows = conn.execute(query).all()
            latest: dict[str, int] = dict(
                conn.execute(
                    select(
                        model_versions.c.model_name, func.max(model_versions.c.version)
                    ).group_by(model_versions.c.model_name)
                ).all()
            )
            al: dict[str, dict[str, int]] = defaultdict(dict)
            for r in conn.execute(
                select(aliases.c.model_name, aliases.c.alias, model_versions.c.version).join(
                    model_versions, model_versions.c.id == aliases.c.version_id
                )
            ):
                al[r.model_name][r.alias] = r.version
        return [
            RegisteredModel(
                name=r.name,
                project_id=r.project_id,
                description=r.description,
                created_at=r.created_at,
                latest_version=latest.get(r.name),
                aliases=dict(sorted(al[r.name].items())),
            )
            for r in rows
        ]
