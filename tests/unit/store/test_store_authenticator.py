"""StoreAuthenticator: bearer tokens against the store, cached briefly, refusals logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from fedloop.core import Unauthenticated
from fedloop.federated.transports import Authenticator
from fedloop.store import SqlMetadataStore, StoreAuthenticator, bearer_token


class FakeClock:
    """Seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> Iterator[SqlMetadataStore]:
    """Return an in-memory store."""
    store = SqlMetadataStore("sqlite:///:memory:")
    yield store
    store.close()


def test_a_revoked_token_is_refused_once_the_cache_time_is_up(store: SqlMetadataStore) -> None:
    """A revocation takes effect within cache_s: the cached answer serves until then."""
    # Arrange
    clock = FakeClock()
    auth = StoreAuthenticator(store, "client", cache_s=2.0, clock=clock)
    _, token = store.create_credential("client", "bank-a")
    assert auth.authenticate(f"Bearer {token}") == "bank-a"

    # Act
    store.revoke_credential("client", "bank-a")
    clock.now += 1.9
    within = auth.authenticate(f"Bearer {token}")
    clock.now += 0.2
    after = auth.authenticate(f"Bearer {token}")

    # Assert
    assert (within, after) == ("bank-a", None)


def test_the_refusal_reason_is_logged_and_raised(
    store: SqlMetadataStore, caplog: pytest.LogCaptureFixture
) -> None:
    """check() raises Unauthenticated saying who revoked the token; the log says it too."""
    # Arrange
    auth = StoreAuthenticator(store, "api", cache_s=0)
    _, key = store.create_credential("api", "ci")
    store.revoke_credential("api", "ci", actor="carol")

    # Act
    with (
        caplog.at_level(logging.WARNING, logger="fedloop.store.credentials"),
        pytest.raises(Unauthenticated, match="revoked") as info,
    ):
        auth.check(f"Bearer {key}")

    # Assert
    assert info.value.field == "Authorization"
    assert "'ci' was revoked" in caplog.text
    assert "by carol" in caplog.text


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic"),
        pytest.param("Bearer ", id="no-token"),
    ],
)
def test_no_bearer_token_is_unauthenticated(store: SqlMetadataStore, header: str | None) -> None:
    """Without a bearer token there is nobody; the store is not asked."""
    # Arrange
    auth = StoreAuthenticator(store, "api")

    # Act / Assert
    with pytest.raises(Unauthenticated, match="no bearer token"):
        auth.check(header)
    assert auth.authenticate(header) is None


def test_the_bearer_scheme_is_case_insensitive(store: SqlMetadataStore) -> None:
    """``bearer`` in any case, with extra spaces around the token, is understood."""
    # Arrange
    auth = StoreAuthenticator(store, "client")
    _, token = store.create_credential("client", "bank-a")

    # Act
    found = auth.authenticate(f"BEARER  {token} ")

    # Assert
    assert found == "bank-a"
    assert bearer_token(f"bearer {token}") == token


def test_credentials_exist_follows_the_store_after_the_cache_time(
    store: SqlMetadataStore,
) -> None:
    """credentials_exist() sees a first key within cache_s."""
    # Arrange
    clock = FakeClock()
    auth = StoreAuthenticator(store, "api", cache_s=2.0, clock=clock)
    assert not auth.credentials_exist()

    # Act
    store.create_credential("api", "ops", role="admin")
    cached = auth.credentials_exist()
    clock.now += 2.1

    # Assert
    assert (cached, auth.credentials_exist()) == (False, True)


def test_it_is_an_http_transport_authenticator(store: SqlMetadataStore) -> None:
    """The store authenticator satisfies the federated transport's Authenticator protocol."""
    # Assert
    assert isinstance(StoreAuthenticator(store, "client"), Authenticator)
