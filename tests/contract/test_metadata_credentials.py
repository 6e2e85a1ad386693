"""Contract suite of credentials (enrollment tokens and API keys) on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from fedloop.core import Conflict, InvalidInput, NotFound, Unauthenticated
from fedloop.store import SqlMetadataStore
from fedloop.store.metadata.tables import credentials


def test_only_the_tokens_sha256_is_stored(store: SqlMetadataStore) -> None:
    """The token is returned once; the row holds its sha256 and nothing else of it."""
    # Act
    credential, token = store.create_credential("api", "ci", role="operator", actor="alice")

    # Assert
    with store.engine.connect() as conn:
        row = conn.execute(select(credentials)).one()
    assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert all(token not in str(value) for value in row)
    assert (credential.kind, credential.name, credential.role, credential.created_by) == (
        "api",
        "ci",
        "operator",
        "alice",
    )
    assert "token" not in str(credential.to_dict())


def test_a_token_authenticates_its_credential_only(store: SqlMetadataStore) -> None:
    """A valid token finds its credential and records its use; a key is no client token."""
    # Arrange
    _, key = store.create_credential("api", "ci", role="viewer")
    _, client_token = store.create_credential("client", "bank-a")

    # Act
    found = store.authenticate_credential(client_token, kind="client")

    # Assert
    assert (found.name, found.role) == ("bank-a", "client")
    assert found.last_used_at is not None
    assert store.list_credentials(kind="client")[0].last_used_at is not None
    assert store.authenticate_credential(key, kind="api").name == "ci"
    with pytest.raises(Unauthenticated) as info:
        store.authenticate_credential(key, kind="client")
    assert info.value.field == "Authorization"


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), id="wrong-secret"),
        pytest.param(lambda t: t[:4] + "0" * 32 + t[36:], id="unknown-id"),
        pytest.param(lambda t: "not-a-token", id="malformed"),
        pytest.param(lambda t: "", id="empty"),
    ],
)
def test_other_tokens_are_refused(store: SqlMetadataStore, mangle: object) -> None:
    """A changed secret, an unknown id or a malformed token is Unauthenticated."""
    # Arrange
    _, token = store.create_credential("client", "bank-a")

    # Act / Assert
    with pytest.raises(Unauthenticated, match="bearer token"):
        store.authenticate_credential(mangle(token), kind="client")  # type: ignore[operator]


def test_a_revoked_credential_never_authenticates(store: SqlMetadataStore) -> None:
    """After revocation the token is refused with who revoked it; the name may be enrolled anew."""
    # Arrange
    _, old = store.create_credential("client", "bank-a")

    # Act
    revoked = store.revoke_credential("client", "bank-a", actor="bob", reason="laptop lost")
    _, new = store.create_credential("client", "bank-a")

    # Assert
    assert (revoked.revoked_by, revoked.is_active) == ("bob", False)
    with pytest.raises(Unauthenticated, match=r"revoked .*by bob"):
        store.authenticate_credential(old, kind="client")
    assert store.authenticate_credential(new, kind="client").name == "bank-a"
    assert [c.is_active for c in store.list_credentials(include_revoked=True)] == [False, True]
    assert len(store.list_credentials()) == 1


def test_an_active_name_is_unique_per_kind(store: SqlMetadataStore) -> None:
    """A second active credential of one kind and name is a Conflict; another kind may share it."""
    # Arrange
    store.create_credential("api", "ops", role="admin")
    events_before = len(store.list_events())

    # Act / Assert
    with pytest.raises(Conflict) as info:
        store.create_credential("api", "ops", role="viewer")
    assert info.value.field == "name"
    assert len(store.list_events()) == events_before  # nothing half-written
    store.create_credential("client", "ops")
    assert [c.kind for c in store.list_credentials()] == ["api", "client"]


def test_create_and_revoke_are_audited_without_the_token(store: SqlMetadataStore) -> None:
    """Each change is an audit event naming actor, kind, name and role, never the token."""
    # Arrange
    _, token = store.create_credential("api", "ci", role="operator", actor="alice")

    # Act
    store.revoke_credential("api", "ci", actor="bob", reason="rotated")

    # Assert
    created, revoked = store.list_events(kind="credential.*")
    assert (created.kind, created.actor, created.subject) == (
        "credential.created",
        "alice",
        "credential:api/ci",
    )
    assert (revoked.kind, revoked.actor, revoked.payload["reason"]) == (
        "credential.revoked",
        "bob",
        "rotated",
    )
    assert created.payload["role"] == "operator"
    assert token not in str(created.payload) + str(revoked.payload)
    assert store.verify_audit().ok


def test_revoking_an_unknown_or_revoked_name_is_not_found(store: SqlMetadataStore) -> None:
    """Only an active credential can be revoked."""
    # Arrange
    store.create_credential("api", "ci")
    store.revoke_credential("api", "ci")

    # Act / Assert
    with pytest.raises(NotFound) as info:
        store.revoke_credential("api", "ci")
    assert info.value.field == "name"


@pytest.mark.parametrize(
    ("kind", "name", "role", "field"),
    [
        pytest.param("user", "x", None, "kind", id="kind"),
        pytest.param("api", "x", "root", "role", id="role"),
        pytest.param("client", "x", "admin", "role", id="client-role"),
        pytest.param("api", "has space", None, "name", id="name"),
        pytest.param("client", "c" * 129, None, "name", id="long-client-id"),
    ],
)
def test_bad_input_names_its_field(
    store: SqlMetadataStore, kind: str, name: str, role: str | None, field: str
) -> None:
    """Unknown kinds and roles and malformed names are InvalidInput naming the field."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        store.create_credential(kind, name, role=role)  # type: ignore[arg-type]
    assert info.value.field == field
    assert store.list_credentials(include_revoked=True) == []


def test_has_credentials_counts_revoked_ones(store: SqlMetadataStore) -> None:
    """Once a kind has had a credential, it has credentials (revoking the last keeps it so)."""
    # Arrange
    assert not store.has_credentials("api")
    store.create_credential("api", "ci")

    # Act
    store.revoke_credential("api", "ci")

    # Assert
    assert store.has_credentials("api")
    assert not store.has_credentials("client")
