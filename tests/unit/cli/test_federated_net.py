"""`fedloop federated serve | client`: rounds over HTTP/2, option checks and model registration."""

from __future__ import annotations

import json
import shlex
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from _http_federation import TOKENS, Harness
from fedloop.cli import app
from fedloop.cli.federated_net import default_model_name, parse_model_spec
from fedloop.core import (
    ConfigError,
    FederatedConfig,
    InvalidInput,
    RoundTimeout,
    RunId,
    resolve,
)
from fedloop.federated.coordinator import Coordinator
from fedloop.federated.datafiles import load_table
from fedloop.federated.strategies import FedAvg
from fedloop.federated.transports import (
    issue_certificate,
    make_ca,
    run_http_client,
    write_pem_files,
)
from fedloop.registry import CHAMPION
from fedloop.store import Workspace, open_workspace


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()
    assert not h.errors, h.errors


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Callable[[str], Workspace]]:
    opened: list[Workspace] = []

    def make(name: str) -> Workspace:
        ws = open_workspace(resolve({"project": {"dir": str(tmp_path / name)}}, {}, {}).config)
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        ws.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _silo_csv(path: Path, seed: int, rows: int = 60) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    y = (x[:, 0] > 0).astype(int)
    header = "a,b,c,d,is_fraud"
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header=header, comments="")
    return path


def _torch_client(path: Path, client_id: str) -> Any:
    from fedloop.cli._federated_models import adapter_factory
    from fedloop.federated.client import AdapterClient

    _, make = adapter_factory("mlp:4,3")
    x, y = load_table(path, label="is_fraud")
    return AdapterClient(client_id, make, x, y)


def _serve(folder: Path, *extra: str) -> tuple[Result, RunId]:
    """Run `fedloop federated serve` (2 rounds, mlp:4,3) with clients c0 and c1 in threads."""
    tokens = {"c0": TOKENS["c0"], "c1": TOKENS["c1"]}
    (folder / "tokens.json").write_text(json.dumps(tokens))
    port = _free_port()
    stop = threading.Event()
    threads = []
    for i, client_id in enumerate(tokens):
        client = _torch_client(_silo_csv(folder / f"{client_id}.csv", seed=i), client_id)
        thread = threading.Thread(
            target=run_http_client,
            args=(f"http://127.0.0.1:{port}", client_id, tokens[client_id], client),
            kwargs={"stop_event": stop, "poll_wait_s": 1, "max_backoff_s": 0.2},
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    args = "federated serve --token-file tokens.json --rounds 2 --model mlp:4,3 --label is_fraud"
    args += f" --eval-data c0.csv --port {port} --wait-clients 2 --wait-timeout 60"
    result = CliRunner().invoke(app, [*args.split(), *extra])
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    assert result.exit_code == 0, result.output
    return result, RunId(result.stdout.strip().splitlines()[-1])


def _coordinator(ws: Workspace, transport: Any, **cfg: Any) -> Coordinator:
    config = FederatedConfig(**{"num_rounds": 2, "round_timeout_s": 30.0, **cfg})
    return Coordinator(
        transport, FedAvg(), config=config, metadata=ws.metadata, artifacts=ws.artifacts
    )


# -- model specs -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        pytest.param("mlp", id="no-dims"),
        pytest.param("cnn:3,4", id="kind"),
        pytest.param("mlp:3,x", id="not-int"),
        pytest.param("mlp:0,4", id="zero"),
    ],
)
def test_bad_model_spec_is_a_config_error(spec: str) -> None:
    """--model must be mlp:<inputs>,<hidden>,..."""
    with pytest.raises(ConfigError, match=r"mlp:<inputs>") as info:
        parse_model_spec(spec)
    assert info.value.field == "model"


def test_model_spec_is_parsed() -> None:
    """The first width is the input, the rest are hidden layers."""
    assert parse_model_spec("mlp:30,64,32") == (30, (64, 32))
    assert parse_model_spec("mlp:5") == (5, ())


def test_default_model_name_follows_the_spec() -> None:
    """The registered name is derived from the architecture, so equal specs share a model."""
    assert default_model_name("mlp:30,64,32") == "federated-mlp-30-64-32"
    assert default_model_name("mlp:5") == "federated-mlp-5"


# -- serve -------------------------------------------------------------------------------------
def test_serve_command_runs_rounds_and_registers_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve` runs the rounds, prints the run id and registers v1 as champion with lineage."""
    # Arrange
    monkeypatch.chdir(tmp_path)

    # Act
    result, run_id = _serve(tmp_path)

    # Assert
    with open_workspace(resolve({}, {}, {}).config) as ws:
        rounds = ws.metadata.list_fl_rounds(run_id)
        mv = ws.metadata.get_model_version("federated-mlp-4-3", 1)
        dataset = ws.metadata.find_dataset(mv.dataset_ids[0])
        profile = ws.metadata.find_profile(mv.id)
    assert [r.status for r in rounds] == ["completed"] * 3
    assert profile is not None
    assert (profile.source, profile.num_rows) == ("federated", 120)
    assert "eval_auc" in rounds[-1].metrics
    assert "round 2/2 completed: 2 clients" in result.stderr
    assert mv.run_id == run_id
    assert mv.aliases == (CHAMPION,)
    assert [(c.contributor, c.kind, c.rounds, c.num_examples) for c in mv.contributors] == [
        ("c0", "client", (1, 2), 60),
        ("c1", "client", (1, 2), 60),
    ]
    assert mv.metrics["auc"] == rounds[-1].metrics["eval_auc"]
    assert dataset is not None
    assert dataset.name == "c0.csv"
    assert mv.tags["transport"] == "http"
    assert "Registered federated-mlp-4-3 v1 (champion)" in result.stderr


def test_serve_command_adds_versions_under_model_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second `serve --model-name` run becomes v2; the champion stays v1."""
    # Arrange
    monkeypatch.chdir(tmp_path)
    _, first = _serve(tmp_path, "--model-name", "bank-fraud")

    # Act
    result, second = _serve(tmp_path, "--model-name", "bank-fraud")

    # Assert
    with open_workspace(resolve({}, {}, {}).config) as ws:
        versions = ws.metadata.list_model_versions("bank-fraud")
        champion = ws.metadata.find_alias("bank-fraud", CHAMPION)
    assert [(v.version, v.run_id) for v in versions] == [(2, second), (1, first)]
    assert champion is not None
    assert champion.version == 1
    assert "Registered bank-fraud v2 with lineage over 2 clients" in result.stderr


def test_serve_command_with_no_register_registers_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --no-register` records the run but no model."""
    # Arrange
    monkeypatch.chdir(tmp_path)

    # Act
    result, run_id = _serve(tmp_path, "--no-register")

    # Assert
    with open_workspace(resolve({}, {}, {}).config) as ws:
        run = ws.metadata.get_run(run_id)
        models = ws.metadata.list_registered_models(ws.project.id)
    assert run.status == "finished"
    assert models == []
    assert "Registered" not in result.stderr


def test_serve_command_refuses_a_bad_model_name_before_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An invalid --model-name fails at once, before any token file is written."""
    monkeypatch.chdir(tmp_path)
    args = "federated serve --model mlp:4,3 --port 0 --token-file t.json --enroll 2"
    result = CliRunner().invoke(app, [*args.split(), "--model-name", "no spaces!"])
    assert isinstance(result.exception, InvalidInput)
    assert result.exception.field == "model_name"
    assert not (tmp_path / "t.json").exists()


def test_serve_command_enrolls_and_refuses_contradicting_tls_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--enroll refuses an existing token file; --tls with --insecure-plaintext is refused."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.json").write_text("{}")
    base = "federated serve --model mlp:4,3 --port 0"
    existing = CliRunner().invoke(app, [*base.split(), "--token-file", "old.json", "--enroll", "2"])
    both = CliRunner().invoke(
        app,
        [
            *base.split(),
            "--token-file",
            "new.json",
            "--enroll",
            "2",
            "--tls",
            "--insecure-plaintext",
        ],
    )
    assert isinstance(existing.exception, ConfigError)
    assert existing.exception.field == "token_file"
    assert isinstance(both.exception, ConfigError)
    assert both.exception.field == "tls"
    assert not (tmp_path / "new.json").exists()


def test_serve_command_with_tls_makes_the_workspace_ca_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--tls on loopback makes .fedloop/certs/ca.pem and tells clients to pass it as --ca-file."""
    monkeypatch.chdir(tmp_path)
    write_pem_files(tmp_path / "clients", "ca", *make_ca("clients CA"))
    args = "federated serve --model mlp:4,3 --port 0 --token-file t.json --enroll 2 --tls"
    args += " --client-ca clients/ca.pem --wait-timeout 0.2"

    result = CliRunner().invoke(app, args.split())

    assert isinstance(result.exception, RoundTimeout)
    ca_file = tmp_path / ".fedloop" / "certs" / "ca.pem"
    assert ca_file.is_file()
    stderr = " ".join(result.stderr.split())  # rich wraps long lines
    assert f"--ca-file {ca_file}" in stderr
    assert "Coordinator at https://127.0.0.1:" in stderr
    assert "Clients must present a certificate from clients/ca.pem" in stderr


def test_serve_command_times_out_without_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --enroll and no client connecting, serve fails with RoundTimeout after writing 0600 tokens."""
    monkeypatch.chdir(tmp_path)
    args = "federated serve --model mlp:4,3 --port 0 --token-file t.json --enroll 2"
    result = CliRunner().invoke(app, [*args.split(), "--wait-timeout", "0.2"])
    assert isinstance(result.exception, RoundTimeout)
    assert stat.S_IMODE((tmp_path / "t.json").stat().st_mode) == 0o600
    tokens = json.loads((tmp_path / "t.json").read_text())
    assert set(tokens) == {"client-001", "client-002"}
    assert not any(token in result.output for token in tokens.values())


# -- client ------------------------------------------------------------------------------------
def test_client_command_trains_until_the_run_is_over(
    harness: Harness, tmp_path: Path, workspace: Callable[[str], Workspace]
) -> None:
    """`fedloop federated client` answers every round, then exits when the server finishes."""
    # Arrange
    data = _silo_csv(tmp_path / "silo.csv", seed=0)
    (tmp_path / "tokens.json").write_text(json.dumps(TOKENS))
    transport = harness.serve()
    ws = workspace("ws")
    initial = _torch_client(data, "c2").adapter_factory(0).get_parameters()

    def coordinate() -> None:
        transport.wait_for_clients(1, timeout_s=60)
        coordinator = _coordinator(ws, transport, num_rounds=2)
        coordinator.run(coordinator.start(ws.project.id, initial))
        transport.close()

    done = harness.pool.submit(coordinate)
    args = f"federated client --server {transport.url} --client-id c2 --token-file "
    args += f"{tmp_path / 'tokens.json'} --data {data} --model mlp:4,3 --poll-wait 1"

    # Act
    result = CliRunner().invoke(app, args.split())

    # Assert
    assert result.exit_code == 0, result.output
    done.result(timeout=30)
    assert "answered 2 tasks" in result.stderr
    assert "round 2: submitted, 60 examples" in result.stderr


def test_client_command_presents_its_certificate_to_an_mtls_coordinator(
    harness: Harness, tmp_path: Path, workspace: Callable[[str], Workspace]
) -> None:
    """`client --ca-file --tls-cert --tls-key` trains against a coordinator requiring mTLS."""
    # Arrange
    data = _silo_csv(tmp_path / "silo.csv", seed=0)
    (tmp_path / "tokens.json").write_text(json.dumps(TOKENS))
    ca = make_ca("clients CA")
    write_pem_files(tmp_path / "pki", "ca", *ca)
    cert, key = write_pem_files(
        tmp_path / "pki", "c2", *issue_certificate(*ca, common_name="c2", client=True)
    )
    transport = harness.serve(client_ca=tmp_path / "pki" / "ca.pem", tls_dir=tmp_path / "srv")
    ws = workspace("ws")
    initial = _torch_client(data, "c2").adapter_factory(0).get_parameters()

    def coordinate() -> None:
        transport.wait_for_clients(1, timeout_s=60)
        coordinator = _coordinator(ws, transport, num_rounds=1)
        coordinator.run(coordinator.start(ws.project.id, initial))
        transport.close()

    done = harness.pool.submit(coordinate)
    args = f"federated client --server {transport.url} --client-id c2 --token-file "
    args += f"{tmp_path / 'tokens.json'} --data {data} --model mlp:4,3 --poll-wait 1 "
    args += f"--ca-file {transport.ca_file} --tls-cert {cert} --tls-key {key}"

    # Act
    result = CliRunner().invoke(app, args.split())

    # Assert
    assert result.exit_code == 0, result.output
    done.result(timeout=30)
    assert "round 1: submitted, 60 examples" in result.stderr


@pytest.mark.parametrize(
    ("args", "error", "field"),
    [
        pytest.param("--token-file t.json --token abc", ConfigError, "token", id="both-tokens"),
        pytest.param("", ConfigError, "token", id="no-token"),
        pytest.param("--token abc --model mlp:5,3", InvalidInput, "model", id="width"),
        pytest.param("--token abc --client-id 'bad id'", ConfigError, "client_id", id="id"),
    ],
)
def test_client_command_refuses_bad_options(
    tmp_path: Path, args: str, error: type[Exception], field: str
) -> None:
    """Token options, model width and client id are checked before connecting."""
    data = _silo_csv(tmp_path / "silo.csv", seed=0)
    base = f"federated client --server http://127.0.0.1:9 --data {data} --model mlp:4,3"
    argv = [*base.split(), "--client-id", "c0", *shlex.split(args)]
    result = CliRunner().invoke(app, argv)
    assert isinstance(result.exception, error), result.output
    assert getattr(result.exception, "field", None) == field
