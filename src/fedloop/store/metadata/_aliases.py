"""Aliases with their history (set, rollback, delete), and deployments' desired state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from fedloop.core import Conflict, InvalidInput, NotFound, new_id
from fedloop.store.audit import append_event
from fedloop.store.metadata._common import check_name, check_text
from fedloop.store.metadata._models import ModelsMixin
from fedloop.store.metadata.records import AliasChange, Deployment, ModelVersion
from fedloop.store.metadata.tables import alias_history, aliases, deployments, model_versions

_ALIAS_HINT = "Aliases are 1-100 characters of letters, digits, '_', '-' or '.', e.g. 'champion'."


class AliasesMixin(ModelsMixin):
    """Aliases with their history, and deployments (over the model versions they point at)."""

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
