"""The [api] section and secret config values: masked everywhere unless a dump asks for them."""

from __future__ import annotations

import pytest

from fedloop.core import (
    REVEAL_SECRETS,
    FedloopConfig,
    flatten_config,
    is_loopback_host,
    resolve,
    role_allows,
)

SECRET = "fla_" + "1" * 32 + ".a-secret-that-must-not-leak-into-any-dump-0"
ENV = {"FEDLOOP_SERVING__PAYLOAD_LOG__API_KEY": SECRET, "FEDLOOP_API__AUTH": "required"}


def test_the_payload_log_key_comes_from_the_environment_and_stays_masked() -> None:
    """The key is read from FEDLOOP_SERVING__PAYLOAD_LOG__API_KEY; repr and JSON dumps mask it."""
    # Act
    resolved = resolve({}, ENV, {})
    config = resolved.config

    # Assert
    assert config.serving.payload_log.api_key is not None
    assert config.serving.payload_log.api_key.get_secret_value() == SECRET
    assert config.api.auth == "required"
    assert resolved.source_of(("serving", "payload_log", "api_key")) == "env"
    assert SECRET not in repr(config)
    assert SECRET not in config.model_dump_json()
    assert SECRET not in str(flatten_config(config.model_dump(mode="json")))


def test_a_child_process_gets_the_secret_when_the_dump_asks_for_it() -> None:
    """model_dump_json(context={REVEAL_SECRETS: True}) round-trips the key (fedloop serve's workers)."""
    # Arrange
    config = resolve({}, ENV, {}).config

    # Act
    again = FedloopConfig.model_validate_json(
        config.model_dump_json(context={REVEAL_SECRETS: True})
    )

    # Assert
    assert again.serving.payload_log.api_key is not None
    assert again.serving.payload_log.api_key.get_secret_value() == SECRET


@pytest.mark.parametrize(
    ("role", "needs", "allowed"),
    [
        pytest.param("admin", "admin", True, id="admin-admin"),
        pytest.param("operator", "admin", False, id="operator-admin"),
        pytest.param("operator", "viewer", True, id="operator-viewer"),
        pytest.param("viewer", "operator", False, id="viewer-operator"),
        pytest.param("viewer", "client", False, id="viewer-ingest"),
        pytest.param("client", "client", True, id="client-ingest"),
        pytest.param("client", "viewer", False, id="client-read"),
        pytest.param("admin", "client", True, id="admin-ingest"),
        pytest.param("root", "viewer", False, id="unknown-role"),
    ],
)
def test_role_order(role: str, needs: str, allowed: bool) -> None:
    """Roles rank admin > operator > viewer; client only sends data, as operator and admin may."""
    # Assert
    assert role_allows(role, needs) is allowed  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        pytest.param("127.0.0.1", True, id="v4"),
        pytest.param("127.0.0.2", True, id="v4-net"),
        pytest.param("[::1]", True, id="v6"),
        pytest.param("LOCALHOST", True, id="name"),
        pytest.param("0.0.0.0", False, id="any"),
        pytest.param("::", False, id="any-v6"),
        pytest.param("example.org", False, id="dns"),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    """Only loopback addresses and localhost count as loopback."""
    # Assert
    assert is_loopback_host(host) is loopback
