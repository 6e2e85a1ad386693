"""The HTTP coordinator authenticating clients by the store's enrollment tokens, revocable live."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _http_federation import Harness, wait_task
from fedloop.core import ConfigError
from fedloop.federated.transports import HttpTransport
from fedloop.store import DEFAULT_CACHE_S, SqlMetadataStore, StoreAuthenticator


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlMetadataStore]:
    """Return a SQLite store."""
    store = SqlMetadataStore(f"sqlite:///{tmp_path / 'fedloop.db'}")
    yield store
    store.close()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


def _client(transport: HttpTransport, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=transport.url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        http2=True,
        http1=False,
    )


def test_a_token_revoked_mid_round_is_refused_on_its_next_request(
    harness: Harness, store: SqlMetadataStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A running coordinator answers 401 within the cache time of a revocation, and logs why."""
    # Arrange
    _, token = store.create_credential("client", "bank-a")
    transport = harness.serve(tokens=None, authenticator=StoreAuthenticator(store, "client"))
    with _client(transport, token) as raw:
        assert raw.post("/v1/heartbeat").status_code == 204
        harness.fit_later(transport, ["bank-a"], timeout_s=5)
        task = wait_task(raw)
        model_url = f"/v1/model/{task['model']['digest']}"
        assert raw.get(model_url, params={"chunk": 0}).status_code == 200

        # Act
        with caplog.at_level(logging.WARNING, logger="fedloop.store.credentials"):
            store.revoke_credential("client", "bank-a", actor="ops", reason="silo compromised")
            revoked_at = time.monotonic()
            while (answer := raw.get(model_url, params={"chunk": 0})).status_code == 200:
                assert time.monotonic() - revoked_at < DEFAULT_CACHE_S + 3
                time.sleep(0.05)
            refused_after_s = time.monotonic() - revoked_at

    # Assert
    assert answer.status_code == 401
    assert answer.json()["error"]["field"] == "Authorization"
    assert refused_after_s <= DEFAULT_CACHE_S + 0.5
    assert "'bank-a' was revoked" in caplog.text
    assert "by ops" in caplog.text


def test_a_client_enrolled_while_serving_connects_at_once(
    harness: Harness, store: SqlMetadataStore
) -> None:
    """A token created after the coordinator started is accepted on its first request."""
    # Arrange
    transport = harness.serve(tokens=None, authenticator=StoreAuthenticator(store, "client"))
    with _client(transport, "flc_" + "0" * 32 + "." + "x" * 43) as stranger:
        assert stranger.post("/v1/heartbeat").status_code == 401

    # Act
    _, token = store.create_credential("client", "bank-b")
    with _client(transport, token) as raw:
        answer = raw.post("/v1/heartbeat")

    # Assert
    assert answer.status_code == 204
    assert transport.list_clients() == ["bank-b"]


def test_an_api_key_is_no_enrollment_token(harness: Harness, store: SqlMetadataStore) -> None:
    """The coordinator takes only 'client' credentials, not API keys of any role."""
    # Arrange
    _, key = store.create_credential("api", "ops", role="admin")
    transport = harness.serve(tokens=None, authenticator=StoreAuthenticator(store, "client"))

    # Act
    with _client(transport, key) as raw:
        answer = raw.post("/v1/heartbeat")

    # Assert
    assert answer.status_code == 401


@pytest.mark.parametrize("both", [pytest.param(True, id="both"), pytest.param(False, id="none")])
def test_tokens_or_an_authenticator_exactly_one(store: SqlMetadataStore, both: bool) -> None:
    """HttpTransport needs exactly one way of knowing its clients."""
    # Arrange
    kwargs = (
        {
            "tokens": {"c0": "a-long-enough-token"},
            "authenticator": StoreAuthenticator(store, "client"),
        }
        if both
        else {"tokens": None}
    )

    # Act / Assert
    with pytest.raises(ConfigError) as info:
        HttpTransport(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == "tokens"
