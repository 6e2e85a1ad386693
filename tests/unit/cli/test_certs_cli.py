"""``fedloop certs``: init, server, client and show, their files, messages and refusals."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner, Result

from fedloop.cli.app import app
from fedloop.core import Conflict, InvalidInput, NotFound


@pytest.fixture
def runner() -> CliRunner:
    """Return a typer test runner."""
    return CliRunner()


def _run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(app, ["certs", *args])


@pytest.fixture
def certs_dir(runner: CliRunner, tmp_path: Path) -> Path:
    """Return a folder where `fedloop certs init` made a CA."""
    folder = tmp_path / "certs"
    result = _run(runner, "init", "--dir", str(folder))
    assert result.exit_code == 0, result.output
    return folder


def test_init_writes_the_ca_and_says_what_next(runner: CliRunner, tmp_path: Path) -> None:
    """Init writes ca.pem and a 0600 ca-key.pem and points at `certs server`."""
    folder = tmp_path / "certs"

    result = _run(runner, "init", "--dir", str(folder))

    assert result.exit_code == 0, result.output
    assert (folder / "ca.pem").is_file()
    assert stat.S_IMODE((folder / "ca-key.pem").stat().st_mode) == 0o600
    assert "fedloop certs server" in result.output


def test_init_refuses_to_overwrite(runner: CliRunner, certs_dir: Path) -> None:
    """A second init raises Conflict naming the file; --overwrite replaces the CA."""
    before = (certs_dir / "ca.pem").read_bytes()

    refused = _run(runner, "init", "--dir", str(certs_dir))
    replaced = _run(runner, "init", "--dir", str(certs_dir), "--overwrite")

    assert isinstance(refused.exception, Conflict)
    assert "ca.pem" in str(refused.exception)
    assert replaced.exit_code == 0, replaced.output
    assert (certs_dir / "ca.pem").read_bytes() != before


def test_server_certificate_is_signed_and_names_the_serve_flags(
    runner: CliRunner, certs_dir: Path
) -> None:
    """Server issues name.pem for the given names and prints the serve and client options."""
    result = _run(
        runner, "server", "--dir", str(certs_dir), "--name", "coordinator",
        "--dns", "localhost", "--dns", "fl.example.org", "--ip", "127.0.0.1",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    cert = x509.load_pem_x509_certificate((certs_dir / "coordinator.pem").read_bytes())
    cert.verify_directly_issued_by(
        x509.load_pem_x509_certificate((certs_dir / "ca.pem").read_bytes())
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "fl.example.org"]
    key_mode = (certs_dir / "coordinator-key.pem").stat().st_mode
    assert stat.S_IMODE(key_mode) == 0o600
    output = " ".join(result.output.split())
    assert "fedloop federated serve" in output
    assert "--tls-cert" in output
    assert "--tls-key" in output
    assert "--ca-file" in output


def test_client_certificate(runner: CliRunner, certs_dir: Path) -> None:
    """Client issues a clientAuth certificate named after the client and says how to use it."""
    result = _run(runner, "client", "--dir", str(certs_dir), "--name", "bank-001")

    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "--tls-cert bank-001.pem --tls-key bank-001-key.pem" in output
    assert "--client-ca" in output
    shown = _run(runner, "show", str(certs_dir / "bank-001.pem"), "--format", "json")
    data = json.loads(shown.stdout)
    assert data["subject"] == "CN=bank-001"
    assert data["extended_key_usage"] == ["clientAuth"]


def test_default_folder_is_the_workspace_one_that_serve_uses(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --dir, the CA lives in <project.dir>/certs, where `federated serve` looks."""
    monkeypatch.chdir(tmp_path)

    init = _run(runner, "init")
    issued = _run(runner, "client", "--name", "bank-001")

    assert init.exit_code == 0, init.output
    assert issued.exit_code == 0, issued.output
    folder = tmp_path / ".fedloop" / "certs"
    assert {p.name for p in folder.iterdir()} >= {"ca.pem", "ca-key.pem", "bank-001.pem"}


def test_show_json_says_the_ca_is_a_ca(runner: CliRunner, certs_dir: Path) -> None:
    """Show --format json prints the description on stdout."""
    result = _run(runner, "show", str(certs_dir / "ca.pem"), "--format", "json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["is_ca"] is True
    assert data["self_signed"] is True


def test_show_table(runner: CliRunner, certs_dir: Path) -> None:
    """Show prints a table by default."""
    result = _run(runner, "show", str(certs_dir / "ca.pem"))

    assert result.exit_code == 0, result.output
    assert "fedloop dev CA" in result.output


@pytest.mark.parametrize(
    ("args", "field"),
    [
        pytest.param(["server", "--ip", "300.1.1.1"], "ip_addresses", id="bad-ip"),
        pytest.param(["server", "--days", "0"], "days", id="bad-days"),
        pytest.param(["client", "--name", " "], "common_name", id="empty-name"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    runner: CliRunner, certs_dir: Path, args: list[str], field: str
) -> None:
    """Malformed options raise InvalidInput with the field set."""
    result = _run(runner, *args, "--dir", str(certs_dir))

    assert isinstance(result.exception, InvalidInput)
    assert result.exception.field == field


def test_server_without_a_ca_says_to_run_init(runner: CliRunner, tmp_path: Path) -> None:
    """Issuing from a folder without a CA raises NotFound whose hint is the init command."""
    result = _run(runner, "server", "--dir", str(tmp_path / "none"))

    assert isinstance(result.exception, NotFound)
    assert "fedloop certs init" in (result.exception.hint or "")


def test_show_refuses_a_key_file(runner: CliRunner, certs_dir: Path) -> None:
    """Show on a private key fails as invalid input."""
    result = _run(runner, "show", str(certs_dir / "ca-key.pem"))

    assert isinstance(result.exception, InvalidInput)
    assert result.exception.field == "file"
