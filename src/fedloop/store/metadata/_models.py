"""Registered models, versions with lineage, aliases with history, and deployments."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, func, select

from fedloop.core import (
    Conflict,
    DatasetId,
    InvalidInput,
    ModelVersionId,
    NotFound,
    ProjectId,
    RunId,
    Signature,
    new_id,
)
from fedloop.store.audit import append_event
from fedloop.store.metadata._common import StoreBase, check_name, check_text
from fedloop.store.metadata.records import (
    AliasChange,
    Contributor,
    Deployment,
    ModelVersion,
    RegisteredModel,
)
from fedloop.store.metadata.tables import (
    alias_history,
    aliases,
    deployments,
    model_version_contributors,
    model_version_datasets,
    model_versions,
    registered_models,
)

_ALIAS_HINT = "Aliases are 1-100 characters of letters, digits, '_', '-' or '.', e.g. 'champion'."


def _not_found_model(name: str) -> NotFound:
    return NotFound(
        f"no registered model named {name!r}.",
        field="model",
        value=name,
        hint="List models with `fedloop models list`.",
    )


class ModelsMixin(StoreBase):
    """Model versions, aliases and deployments."""

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

    # -- aliases -----------------------------------------------------------------------------
    def set_alias(
        self,
        model_name: str,
        alias: str,
        version: int,
        *,
        actor: str = "system",
        reason: str = "",
        action: str = "set",
    ) -> AliasChange:
        """Point ``alias`` at ``version`` atomically and record the move in its history.

        Raises
        ------
        NotFound
            When the model or version does not exist (nothing changes).
        """
        return self._move_alias(
            model_name, alias, version, actor=actor, reason=reason, action=action
        )

    def delete_alias(
        self, model_name: str, alias: str, *, actor: str = "system", reason: str = ""
    ) -> AliasChange:
        """Remove an alias (recorded in its history).

        Raises
        ------
        NotFound
            When the alias is not set.
        """
        return self._move_alias(
            model_name, alias, None, actor=actor, reason=reason, action="delete"
        )

    def _move_alias(
        self,
        model_name: str,
        alias: str,
        version: int | None,
        *,
        actor: str,
        reason: str,
        action: str,
    ) -> AliasChange:
        check_text(actor, field="actor", max_chars=200)
        check_text(reason, field="reason", max_chars=10_000)
        if action not in ("set", "rollback", "delete"):
            raise InvalidInput(
                f"alias `action` must be set, rollback or delete; got {action!r}.", field="action"
            )
        try:
            check_name(alias, field="alias")
        except InvalidInput as err:
            raise InvalidInput(err.message, field="alias", value=alias, hint=_ALIAS_HINT) from err
        if len(alias) > 100:
            raise InvalidInput(
                f"alias {alias[:20]!r}… is {len(alias)} characters; at most 100 are allowed.",
                field="alias",
                value=alias,
                hint=_ALIAS_HINT,
            )
        if alias.isdigit():
            raise InvalidInput(
                f"alias {alias!r} would be confused with a version number.",
                field="alias",
                value=alias,
                hint=_ALIAS_HINT,
            )
        now = self.clock.now()
        with self.transaction() as conn:
            self._lock_model(conn, model_name)
            target = None
            if version is not None:
                target = conn.execute(
                    select(model_versions.c.id).where(
                        model_versions.c.model_name == model_name,
                        model_versions.c.version == version,
                    )
                ).scalar()
                if target is None:
                    raise NotFound(
                        f"model {model_name!r} has no version {version}; alias {alias!r} "
                        "was not moved.",
                        field="version",
                        value=version,
                        hint=f"List versions with `fedloop models show {model_name}`.",
                    )
            current = conn.execute(
                select(aliases.c.version_id, model_versions.c.version)
                .join(model_versions, model_versions.c.id == aliases.c.version_id)
                .where(aliases.c.model_name == model_name, aliases.c.alias == alias)
            ).first()
            if target is None and current is None:
                raise NotFound(
                    f"model {model_name!r} has no alias {alias!r}.", field="alias", value=alias
                )
            if target is None:
                conn.execute(
                    aliases.delete().where(
                        aliases.c.model_name == model_name, aliases.c.alias == alias
                    )
                )
            else:
                conn.execute(
                    self._upsert(
                        aliases,
                        ["model_name", "alias"],
                        [
                            {
                                "model_name": model_name,
                                "alias": alias,
                                "version_id": target,
                                "updated_at": now,
                            }
                        ],
                    )
                )
            from_version = current.version if current else None
            hid = conn.execute(
                alias_history.insert().values(
                    model_name=model_name,
                    alias=alias,
                    from_version_id=current.version_id if current else None,
                    to_version_id=target,
                    action=action,
                    actor=actor,
                    reason=reason,
                    at=now,
                )
            ).inserted_primary_key
            append_event(
                conn,
                kind="model.alias_moved" if target else "model.alias_deleted",
                subject=f"model:{model_name}@{alias}",
                actor=actor,
                at=now,
                payload={
                    "from_version": from_version,
                    "to_version": version,
                    "action": action,
                    "reason": reason,
                },
            )
        return AliasChange(
            id=int(hid[0]) if hid else 0,
            model_name=model_name,
            alias=alias,
            from_version=from_version,
            to_version=version,
            action=action,
            actor=actor,
            reason=reason,
            at=now,
        )

    def find_alias(self, model_name: str, alias: str) -> ModelVersion | None:
        """Return the version an alias points at, or None when it is not set."""
        with self.reading() as conn:
            found = self._versions(
                conn,
                conn.execute(
                    select(model_versions)
                    .join(aliases, aliases.c.version_id == model_versions.c.id)
                    .where(aliases.c.model_name == model_name, aliases.c.alias == alias)
                ).all(),
            )
        return found[0] if found else None

    def alias_history(self, model_name: str, alias: str | None = None) -> list[AliasChange]:
        """Return alias moves of a model (optionally one alias), oldest first."""
        src = model_versions.alias("src")
        dst = model_versions.alias("dst")
        query = (
            select(alias_history, src.c.version.label("from_v"), dst.c.version.label("to_v"))
            .outerjoin(src, src.c.id == alias_history.c.from_version_id)
            .outerjoin(dst, dst.c.id == alias_history.c.to_version_id)
            .where(alias_history.c.model_name == model_name)
            .order_by(alias_history.c.id)
        )
        if alias is not None:
            query = query.where(alias_history.c.alias == alias)
        with self.reading() as conn:
            rows = conn.execute(query).all()
        return [
            AliasChange(
                id=r.id,
                model_name=r.model_name,
                alias=r.alias,
                from_version=r.from_v,
                to_version=r.to_v,
                action=r.action,
                actor=r.actor,
                reason=r.reason,
                at=r.at,
            )
            for r in rows
        ]

    # -- deployments -------------------------------------------------------------------------
    def put_deployment(
        self,
        name: str,
        model_name: str,
        spec: Mapping[str, Any],
        *,
        status: str = "pending",
        actor: str = "system",
    ) -> Deployment:
        """Create or replace a deployment's desired state.

        Raises
        ------
        NotFound
            When the model does not exist.
        """
        check_name(name, field="deployment.name")
        check_text(status, field="status", max_chars=20)
        check_text(actor, field="actor", max_chars=200)
        now = self.clock.now()
        with self.transaction() as conn:
            self._lock_model(conn, model_name)
            row = conn.execute(select(deployments).where(deployments.c.name == name)).first()
            if row is not None and row.model_name != model_name:
                raise Conflict(
                    f"deployment {name!r} serves model {row.model_name!r}, not {model_name!r}.",
                    field="model_name",
                    hint="Use another deployment name.",
                )
            did, created = (row.id, row.created_at) if row else (new_id(), now)
            values: dict[str, Any] = {
                "id": did,
                "name": name,
                "model_name": model_name,
                "spec": dict(spec),
                "status": status,
                "created_at": created,
                "updated_at": now,
            }
            conn.execute(self._upsert(deployments, ["name"], [values]))
            append_event(
                conn,
                kind="deployment.changed",
                subject=f"deployment:{name}",
                actor=actor,
                at=now,
                payload={"model_name": model_name, "spec": dict(spec), "status": status},
            )
        return Deployment(**values)

    def get_deployment(self, name: str) -> Deployment:
        """Return a deployment by name.

        Raises
        ------
        NotFound
            When there is no such deployment.
        """
        with self.reading() as conn:
            row = conn.execute(select(deployments).where(deployments.c.name == name)).first()
        if row is None:
            raise NotFound(f"no deployment named {name!r}.", field="deployment", value=name)
        return Deployment(**row._mapping)

    def list_deployments(self) -> list[Deployment]:
        """Return all deployments by name."""
        with self.reading() as conn:
            rows = conn.execute(select(deployments).order_by(deployments.c.name)).all()
        return [Deployment(**r._mapping) for r in rows]
