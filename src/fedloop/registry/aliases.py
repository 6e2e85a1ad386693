"""Aliases (``champion``, ``challenger``, any name): model references, promotion and rollback."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fedloop.core import Conflict, InvalidInput, NotFound
from fedloop.store import AliasChange, ModelVersion, SqlMetadataStore

__all__ = ["CHALLENGER", "CHAMPION", "ModelRef", "parse_ref", "promote", "resolve", "rollback"]

CHAMPION = "champion"
CHALLENGER = "challenger"

_REF = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_\-.]{0,199}?)(?:(?P<sep>[@:/])(?P<sel>[^@:/]+))?$"
)


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A reference to a model version: ``NAME@ALIAS``, ``NAME:VERSION``, ``NAME/VERSION`` or ``NAME``."""

    name: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return self.name


def parse_ref(text: str) -> ModelRef:
    """Parse a model reference.

    Parameters
    ----------
    text : str
        ``fraud@champion``, ``fraud:3``, ``fraud/3`` or ``fraud`` (the latest version).

    Returns
    -------
    ModelRef
        The parsed reference.

    Raises
    ------
    InvalidInput
        When the text is not a reference.
    """
    match = _REF.match(text or "")
    if match is None:
        raise InvalidInput(
            f"cannot read the model reference {text!r}.",
            field="model",
            value=text,
            hint="Write NAME@ALIAS (fraud@champion), NAME:VERSION (fraud:3) or NAME.",
        )
    name, sep, sel = match["name"], match["sep"], match["sel"]
    if sep is None:
        return ModelRef(name=name)
    if sep == "@":
        return ModelRef(name=name, alias=sel)
    if not re.fullmatch(r"[0-9]+", sel) or int(sel) < 1:
        raise InvalidInput(
            f"version in {text!r} must be a positive integer; got {sel!r}.",
            field="version",
            value=sel,
            hint=f"Use {name}@{sel} for an alias.",
        )
    return ModelRef(name=name, version=int(sel))


def resolve(store: SqlMetadataStore, ref: ModelRef | str) -> ModelVersion:
    """Return the version a reference points at.

    Parameters
    ----------
    store : SqlMetadataStore
        The metadata store.
    ref : ModelRef or str
        What to resolve; a bare name means its latest version.

    Returns
    -------
    ModelVersion
        The version.

    Raises
    ------
    NotFound
        When the model, version or alias does not exist.
    """
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    if ref.alias is not None:
        found = store.find_alias(ref.name, ref.alias)
        if found is None:
            store.list_model_versions(ref.name)  # raises NotFound for an unknown model
            raise NotFound(
                f"model {ref.name!r} has no alias {ref.alias!r}.",
                field="alias",
                value=ref.alias,
                hint=f"Set it with `fedloop models promote {ref.name} VERSION --alias {ref.alias}`.",
            )
        return found
    if ref.version is not None:
        return store.get_model_version(ref.name, ref.version)
    versions = store.list_model_versions(ref.name)
    if not versions:
        raise NotFound(f"model {ref.name!r} has no versions.", field="model", value=ref.name)
    return versions[0]


def promote(
    store: SqlMetadataStore,
    name: str,
    version: int,
    *,
    alias: str = CHAMPION,
    actor: str = "system",
    reason: str = "",
) -> AliasChange:
    """Point ``alias`` at ``version`` (atomically, with history and an audit event).

    Parameters
    ----------
    store : SqlMetadataStore
        The metadata store.
    name : str
        Model name.
    version : int
        Target version.
    alias : str, default "champion"
        Alias to move.
    actor, reason : str
        Recorded in the history and the audit log.

    Returns
    -------
    AliasChange
        The recorded move.

    Raises
    ------
    NotFound
        When the model or version does not exist (the alias does not move).
    """
    return store.set_alias(name, alias, version, actor=actor, reason=reason or "promoted")


def rollback(
    store: SqlMetadataStore,
    name: str,
    *,
    alias: str = CHAMPION,
    actor: str = "system",
    reason: str = "",
) -> AliasChange:
    """Move ``alias`` back to the version it pointed at before its current one.

    Rollbacks stack: after v1 -> v2 -> v3, one rollback gives v2 and a second gives v1.

    Parameters
    ----------
    store : SqlMetadataStore
        The metadata store.
    name : str
        Model name.
    alias : str, default "champion"
        Alias to roll back.
    actor, reason : str
        Recorded in the history and the audit log.

    Returns
    -------
    AliasChange
        The recorded move.

    Raises
    ------
    NotFound
        When the model or alias does not exist.
    Conflict
        When there is no earlier version to go back to.
    """
    stack: list[int | None] = []
    for change in store.alias_history(name, alias):
        if change.action == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(change.to_version)
    if not stack or stack[-1] is None:
        current = store.find_alias(name, alias)
        if current is None:
            store.list_model_versions(name)
            raise NotFound(f"model {name!r} has no alias {alias!r}.", field="alias", value=alias)
    if len(stack) < 2 or stack[-2] is None:
        raise Conflict(
            f"alias {name}@{alias} has no earlier version to roll back to.",
            field="alias",
            value=alias,
            hint=f"Promote a version explicitly: `fedloop models promote {name} VERSION --alias {alias}`.",
        )
    target = stack[-2]
    return store.set_alias(
        name, alias, target, actor=actor, reason=reason or "rollback", action="rollback"
    )
