"""Credentials: enrollment tokens and API keys — created, listed, revoked (audited), checked."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import exists, select

from fedloop.core import (
    CREDENTIAL_KINDS,
    ROLES,
    Conflict,
    CredentialKind,
    InvalidInput,
    NotFound,
    StoreUnavailable,
    Unauthenticated,
    new_id,
)
from fedloop.store.audit import append_event
from fedloop.store.metadata._common import StoreBase, check_name, check_text
from fedloop.store.metadata.records import Credential
from fedloop.store.metadata.tables import credentials

_log = logging.getLogger("fedloop.store.credentials")

#: A token is ``<prefix><credential id>.<secret>``: the id finds the row without a scan, and
#: only the sha256 of the whole token is stored and compared (in constant time).
_PREFIX: dict[str, str] = {"client": "flc_", "api": "fla_"}
_TOKEN = re.compile(r"(fl[ca]_)([0-9a-f]{32})\.([A-Za-z0-9_-]{43})")
_DEFAULT_ROLE: dict[str, str] = {"client": "client", "api": "viewer"}
#: ``last_used_at`` is written at most this often per credential (a write per request would
#: serialize every authenticated request on SQLite).
_TOUCH_EVERY = timedelta(seconds=60)
_NO_MATCH = "0" * 64
_COMMANDS = {"client": "fedloop federated tokens", "api": "fedloop keys"}
_NOUN = {"client": "client token", "api": "API key"}
_A = {"client": "a client token", "api": "an API key"}


def token_digest(token: str) -> str:
    """Return the hex sha256 of a token: what the store keeps instead of it."""
    return hashlib.sha256(token.encode()).hexdigest()


def _check_kind(kind: object) -> CredentialKind:
    if kind not in CREDENTIAL_KINDS:
        raise InvalidInput(
            f"`kind` must be one of {', '.join(CREDENTIAL_KINDS)}; got {kind!r}.",
            field="kind",
            value=kind,
            hint="Use 'client' for a federated client's token, 'api' for an API key.",
        )
    return kind


def _check_role(kind: str, role: object) -> str:
    allowed = ("client",) if kind == "client" else ROLES
    if role not in allowed:
        raise InvalidInput(
            f"`role` of {_A[kind]} must be one of {', '.join(allowed)}; got {role!r}.",
            field="role",
            value=role,
            hint="admin > operator > viewer; 'client' may only send payload logs or updates.",
        )
    return str(role)


def _credential(row: Any) -> Credential:
    values = dict(row._mapping)
    values.pop("token_sha256", None)
    return Credential(**values)


class CredentialsMixin(StoreBase):
    """Enrollment tokens of federated clients and control-plane API keys."""

    def create_credential(
        self, kind: CredentialKind, name: str, *, role: str | None = None, actor: str = "cli"
    ) -> tuple[Credential, str]:
        """Create a credential and return it with its token, which is shown only this once.

        Parameters
        ----------
        kind : {"client", "api"}
            A federated client's enrollment token or an API key.
        name : str
            The client id or the key's name (letters, digits, ``_-.``; at most 128
            characters for a client); unique per kind among credentials not revoked.
        role : {"admin", "operator", "viewer", "client"} or None
            The key's role (default ``viewer``); a client token's role is ``client``.
        actor : str, default "cli"
            Who created it (in the ``credential.created`` audit event).

        Returns
        -------
        (Credential, str)
            The record and the bearer token (only its sha256 is stored).

        Raises
        ------
        InvalidInput
            For an unknown kind or role, or a malformed name.
        Conflict
            When a credential of this kind and name exists and is not revoked.
        """
        kind = _check_kind(kind)
        check_name(name, field="name")
        if kind == "client" and len(name) > 128:
            raise InvalidInput(
                f"a client id has at most 128 characters; got {len(name)}.",
                field="name",
                value=name,
                hint="Use a shorter client id, e.g. 'bank-a'.",
            )
        role = _check_role(kind, role or _DEFAULT_ROLE[kind])
        check_text(actor, field="actor", max_chars=200)
        credential_id = new_id()
        token = f"{_PREFIX[kind]}{credential_id}.{secrets.token_urlsafe(32)}"
        now = self.clock.now()
        values: dict[str, Any] = {
            "id": credential_id,
            "kind": kind,
            "name": name,
            "role": role,
            "created_at": now,
            "created_by": actor,
            "revoked_at": None,
            "revoked_by": None,
            "last_used_at": None,
        }
        try:
            with self.transaction() as conn:
                conn.execute(credentials.insert(), {**values, "token_sha256": token_digest(token)})
                append_event(
                    conn,
                    kind="credential.created",
                    subject=f"credential:{kind}/{name}",
                    actor=actor,
                    at=now,
                    payload={"id": credential_id, "kind": kind, "name": name, "role": role},
                )
        except Conflict as err:
            raise Conflict(
                f"{_A[kind]} named {name!r} exists already.",
                field="name",
                value=name,
                hint=f"Revoke it first (`{_COMMANDS[kind]} revoke {name}`) or pick another name.",
            ) from err
        return Credential(**values), token

    def list_credentials(
        self, *, kind: CredentialKind | None = None, include_revoked: bool = False
    ) -> list[Credential]:
        """Return credentials, oldest first (never their tokens or digests).

        Parameters
        ----------
        kind : {"client", "api"} or None
            Only this kind.
        include_revoked : bool, default False
            Also list revoked credentials.

        Returns
        -------
        list of Credential
            The credentials.
        """
        query = select(credentials)
        if kind is not None:
            query = query.where(credentials.c.kind == _check_kind(kind))
        if not include_revoked:
            query = query.where(credentials.c.revoked_at.is_(None))
        query = query.order_by(credentials.c.created_at, credentials.c.name, credentials.c.id)
        with self.reading() as conn:
            rows = conn.execute(query).all()
        return [_credential(r) for r in rows]

    def has_credentials(self, kind: CredentialKind) -> bool:
        """Return whether any credential of ``kind`` was ever created (revoked ones count)."""
        query = select(exists().where(credentials.c.kind == _check_kind(kind)))
        with self.reading() as conn:
            return bool(conn.execute(query).scalar())

    def revoke_credential(
        self, kind: CredentialKind, name: str, *, actor: str = "cli", reason: str = ""
    ) -> Credential:
        """Revoke the active credential of ``kind`` named ``name``; it never authenticates again.

        Parameters
        ----------
        kind : {"client", "api"}
            The credential's kind.
        name : str
            The client id or key name.
        actor : str, default "cli"
            Who revoked it (in the ``credential.revoked`` audit event).
        reason : str, default ""
            Why (in the audit event).

        Returns
        -------
        Credential
            The revoked credential.

        Raises
        ------
        NotFound
            When no credential of that kind and name is active.
        """
        kind = _check_kind(kind)
        check_text(actor, field="actor", max_chars=200)
        check_text(reason, field="reason", max_chars=1000)
        now = self.clock.now()
        active = (
            (credentials.c.kind == kind)
            & (credentials.c.name == name)
            & credentials.c.revoked_at.is_(None)
        )
        with self.transaction() as conn:
            row = conn.execute(select(credentials).where(active).with_for_update()).first()
            if row is None:
                raise NotFound(
                    f"no active {_NOUN[kind]} named {name!r}.",
                    field="name",
                    value=name,
                    hint=f"List them with `{_COMMANDS[kind]} list`.",
                )
            conn.execute(
                credentials.update().where(credentials.c.id == row.id),
                {"revoked_at": now, "revoked_by": actor},
            )
            append_event(
                conn,
                kind="credential.revoked",
                subject=f"credential:{kind}/{name}",
                actor=actor,
                at=now,
                payload={
                    "id": row.id,
                    "kind": kind,
                    "name": name,
                    "role": row.role,
                    "reason": reason,
                },
            )
        return replace(_credential(row), revoked_at=now, revoked_by=actor)

    def authenticate_credential(self, token: str, *, kind: CredentialKind) -> Credential:
        """Return the active credential a token belongs to.

        The token names its credential's id, so one row is read; the sha256 of the presented
        token is compared with the stored one by :func:`hmac.compare_digest`.

        Parameters
        ----------
        token : str
            The bearer token as presented.
        kind : {"client", "api"}
            The kind the caller accepts (an API key is no enrollment token, and the reverse).

        Returns
        -------
        Credential
            The credential (its ``last_used_at`` is refreshed at most once a minute).

        Raises
        ------
        Unauthenticated
            For a malformed or unknown token, one of another kind, or a revoked credential.
        """
        kind = _check_kind(kind)
        match = _TOKEN.fullmatch(token)
        if match is None or match.group(1) != _PREFIX[kind]:
            raise _refused(f"the bearer token is not {_A[kind]} of fedloop", kind)
        with self.reading() as conn:
            row = conn.execute(
                select(credentials).where(
                    (credentials.c.id == match.group(2)) & (credentials.c.kind == kind)
                )
            ).first()
        expected = row.token_sha256 if row is not None else _NO_MATCH
        if not hmac.compare_digest(token_digest(token), expected) or row is None:
            raise _refused(f"the bearer token matches no {_NOUN[kind]}", kind)
        found = _credential(row)
        if not found.is_active:
            raise _refused(
                f"the {_NOUN[kind]} {found.name!r} was revoked "
                f"(at {found.revoked_at:%Y-%m-%d %H:%M:%S} UTC by {found.revoked_by})",
                kind,
            )
        return self._touch(found)

    def _touch(self, found: Credential) -> Credential:
        now = self.clock.now()
        if found.last_used_at is not None and now - found.last_used_at < _TOUCH_EVERY:
            return found
        try:
            with self.transaction() as conn:
                conn.execute(
                    credentials.update().where(credentials.c.id == found.id),
                    {"last_used_at": now},
                )
        except StoreUnavailable as err:  # bookkeeping only: never refuse a caller for it
            _log.debug("could not record the use of credential %s: %s", found.id, err)
            return found
        return replace(found, last_used_at=now)


def _refused(reason: str, kind: str) -> Unauthenticated:
    what = "the token this client was enrolled with" if kind == "client" else "an API key"
    return Unauthenticated(
        f"{reason}.",
        field="Authorization",
        hint=f"Send 'Authorization: Bearer <token>' with {what} (`{_COMMANDS[kind]} create`).",
    )
