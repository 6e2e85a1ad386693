"""`fedloop keys` and `fedloop federated tokens`: create (shown once), list, revoke; serve with them."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _http_federation import AddClient
from fedloop.cli.app import app
from fedloop.core import ConfigError, Conflict, InvalidInput, NotFound, Unauthenticated, resolve
from fedloop.federated.transports import run_http_client
from fedloop.store import open_workspace


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Return an empty project folder; cwd is it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _invoke(*args: str) -> tuple[int, str, str, BaseException | None]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr, result.exception


def test_a_key_is_printed_once_and_never_listed(project: Path) -> None:
    """`keys create` prints the key alone on stdout; `list` shows name and role, never the key."""
    # Act
    code, key, note, _ = _invoke("keys", "create", "--role", "operator", "ci")
    _, table, _, _ = _invoke("keys", "list")
    _, listed, _, _ = _invoke("keys", "list", "--format", "json")

    # Assert
    assert code == 0
    key = key.strip()
    assert key.startswith("fla_")
    assert "not shown again" in note
    assert "ci" in table
    assert "operator" in table
    assert key not in table + listed
    (entry,) = json.loads(listed)
    assert (entry["name"], entry["role"], entry["revoked_at"]) == ("ci", "operator", None)
    with open_workspace(resolve({}, {}, {}).config) as ws:
        assert ws.metadata.authenticate_credential(key, kind="api").role == "operator"


def test_a_revoked_key_is_listed_only_with_all(project: Path) -> None:
    """`keys revoke` keeps the record (audited); `list --all` shows who revoked it."""
    # Arrange
    _, key, _, _ = _invoke("keys", "create", "--role", "viewer", "grafana")

    # Act
    code, _, note, _ = _invoke("keys", "revoke", "grafana", "--reason", "rotated")
    _, active, _, _ = _invoke("keys", "list", "--format", "json")
    _, everything, _, _ = _invoke("keys", "ls", "--all", "--format", "json")

    # Assert
    assert code == 0
    assert "revoked" in note
    assert json.loads(active) == []
    assert json.loads(everything)[0]["revoked_by"] == "cli"
    with open_workspace(resolve({}, {}, {}).config) as ws:
        with pytest.raises(Unauthenticated, match="revoked"):
            ws.metadata.authenticate_credential(key.strip(), kind="api")
        event = ws.metadata.list_events(kind="credential.revoked")[-1]
    assert event.payload["reason"] == "rotated"


@pytest.mark.parametrize(
    ("args", "error", "field"),
    [
        pytest.param(("keys", "create", "--role", "root", "x"), InvalidInput, "role", id="role"),
        pytest.param(
            ("keys", "create", "--role", "viewer", "a b"), InvalidInput, "name", id="name"
        ),
        pytest.param(("keys", "revoke", "nobody"), NotFound, "name", id="revoke-unknown"),
        pytest.param(("federated", "tokens", "revoke", "nobody"), NotFound, "name", id="token"),
    ],
)
def test_bad_requests_are_typed_errors(
    project: Path, args: tuple[str, ...], error: type[Exception], field: str
) -> None:
    """A bad role or name, or an unknown key, raises the typed error naming the field."""
    # Act
    _, _, _, raised = _invoke(*args)

    # Assert
    assert isinstance(raised, error)
    assert raised.field == field  # type: ignore[attr-defined]


def test_a_second_active_key_of_one_name_is_a_conflict(project: Path) -> None:
    """Names are unique among active keys."""
    # Arrange
    _invoke("keys", "create", "--role", "admin", "ops")

    # Act
    _, _, _, raised = _invoke("keys", "create", "--role", "viewer", "ops")

    # Assert
    assert isinstance(raised, Conflict)
    assert "fedloop keys revoke ops" in (raised.hint or "")


def test_enroll_needs_a_token_file(project: Path) -> None:
    """`serve --enroll` without --token-file is a ConfigError naming token_file."""
    # Act
    _, _, _, raised = _invoke("federated", "serve", "--enroll", "2", "--port", "0")

    # Assert
    assert isinstance(raised, ConfigError)
    assert raised.field == "token_file"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_without_a_token_file_takes_the_stores_tokens(project: Path) -> None:
    """Clients enrolled with `tokens create` train; a revoked client's token is refused (401)."""
    # Arrange
    tokens = {c: _invoke("federated", "tokens", "create", c)[1].strip() for c in ("c0", "c1", "c2")}
    _invoke("federated", "tokens", "revoke", "c2")
    port = _free_port()
    stop = threading.Event()
    errors: dict[str, BaseException] = {}

    def run(client_id: str, offset: float) -> None:
        try:
            run_http_client(
                f"http://127.0.0.1:{port}",
                client_id,
                tokens[client_id],
                AddClient(offset),
                stop_event=stop,
                poll_wait_s=1,
                max_backoff_s=0.2,
            )
        except Exception as err:  # the revoked client's refusal, checked below
            errors[client_id] = err

    threads = [
        threading.Thread(target=run, args=(c, i + 1.0), daemon=True) for i, c in enumerate(tokens)
    ]
    for thread in threads:
        thread.start()

    # Act
    code, _, stderr, raised = _invoke(
        *f"federated serve --rounds 1 --model mlp:4,3 --port {port} --wait-clients 2 "
        "--wait-timeout 60 --no-register".split()
    )
    stop.set()
    for thread in threads:
        thread.join(timeout=10)

    # Assert
    assert code == 0, (stderr, raised)
    assert "store's enrollment tokens (2 enrolled" in stderr
    assert "round 1/1 completed: 2 clients" in stderr
    assert set(errors) == {"c2"}
    assert "401" in str(errors["c2"])
    with open_workspace(resolve({}, {}, {}).config) as ws:
        used = {c.name: c.last_used_at for c in ws.metadata.list_credentials(kind="client")}
    assert all(used.values())
