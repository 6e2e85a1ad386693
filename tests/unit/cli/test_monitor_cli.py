"""`fedloop monitor`: attach a reference, check a file, list windows, write the HTML report."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from _cli import store_args
from typer.testing import CliRunner

from _graphs import NUM_FEATURES, make_graph
from _payloads import ingest_rows
from fedloop.cli.app import app
from fedloop.core import InvalidInput, MonitoringConfig, NotFound, resolve
from fedloop.monitoring import Monitor
from fedloop.registry import ModelRegistry
from fedloop.store import Workspace, open_workspace

MODEL = "fraud"


def _workspace(root: Path) -> Workspace:
    config = resolve(
        {
            "store": {
                "url": f"sqlite:///{root / '.fedloop' / 'fedloop.db'}",
                "artifacts_url": str(root / ".fedloop" / "artifacts"),
            }
        },
        {},
        {},
    ).config
    return open_workspace(config)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Return a folder with ``fraud`` v1 registered and reference/current row files."""
    with _workspace(tmp_path) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        w = OrderedDict([("w", np.zeros((NUM_FEATURES, 1), dtype=np.float32))])
        registry.register(MODEL, weights=w, onnx_model=make_graph(1))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "ref.npz", x=rng.normal(size=(5_000, NUM_FEATURES)))
    np.savez(tmp_path / "same.npz", x=rng.normal(size=(5_000, NUM_FEATURES)))
    shifted = rng.normal(size=(5_000, NUM_FEATURES))
    shifted[:, 2] *= 2.0
    np.savez(tmp_path / "shifted.npz", x=shifted)
    return tmp_path


def _run(project: Path, *args: str) -> object:
    return CliRunner().invoke(app, [*store_args(project), "monitor", *args])


def test_profile_then_check_flags_only_the_changed_feature(project: Path) -> None:
    """A reference attached from rows; a file with feature 2 scaled drifts there (exit 4)."""
    # Act
    attached = _run(project, "profile", f"{MODEL}:1", "--data", str(project / "ref.npz"))
    same = _run(project, "check", f"{MODEL}:1", "--data", str(project / "same.npz"))
    shifted = _run(
        project, "check", MODEL, "--data", str(project / "shifted.npz"), "--format", "json"
    )

    # Assert
    assert attached.exit_code == 0, attached.output  # type: ignore[attr-defined]
    assert "reference of 5000 rows, 5 columns" in attached.output  # type: ignore[attr-defined]
    assert same.exit_code == 0, same.output  # type: ignore[attr-defined]
    assert "no_drift" in same.output  # type: ignore[attr-defined]
    assert shifted.exit_code == 4  # type: ignore[attr-defined]
    report = json.loads(shifted.stdout)  # type: ignore[attr-defined]
    assert report["verdict"] == "drift"
    assert "features[2]" in report["drifted_columns"]
    assert not {"features[0]", "features[1]", "features[3]"} & set(report["drifted_columns"])


def test_check_without_a_reference_says_how_to_attach_one(project: Path) -> None:
    """A version without a profile is a NotFound with the profile command as the hint."""
    # Act
    result = _run(project, "check", f"{MODEL}:1", "--data", str(project / "same.npz"))

    # Assert
    error = result.exception  # type: ignore[attr-defined]
    assert isinstance(error, NotFound)
    assert error.hint is not None
    assert "fedloop monitor profile fraud:1" in error.hint


def test_windows_and_report_show_what_the_monitor_found(project: Path) -> None:
    """Windows list in a table; the HTML report has the timeline, findings and histograms."""
    # Arrange
    assert _run(project, "profile", MODEL, "--data", str(project / "ref.npz")).exit_code == 0  # type: ignore[attr-defined]
    with _workspace(project) as ws:
        monitor = Monitor(ws, MonitoringConfig(window_rows=1_000))
        ingest_rows(monitor, np.load(project / "same.npz")["x"][:1_000], start_id=0)
        ingest_rows(monitor, np.load(project / "shifted.npz")["x"][:1_000], start_id=1_000)

    # Act
    listed = _run(project, "windows", MODEL)
    out = project / "report.html"
    written = _run(project, "report", MODEL, "--out", str(out), "--cdn")

    # Assert
    assert listed.exit_code == 0, listed.output  # type: ignore[attr-defined]
    assert "no_drift" in listed.output  # type: ignore[attr-defined]
    assert "features[2]" in listed.output  # type: ignore[attr-defined]
    assert written.exit_code == 0, written.output  # type: ignore[attr-defined]
    page = out.read_text()
    assert "cdn.plot.ly" in page
    assert "Drift per column" in page
    assert "Reference vs latest window" in page
    assert "features[2] &mdash; DRIFT" in page


def test_bad_arguments_are_refused(project: Path) -> None:
    """An unknown model or --kind value is refused with a message naming it."""
    # Act
    unknown = _run(project, "windows", "nope")
    kind = _run(project, "windows", MODEL, "--kind", "vibes")

    # Assert
    assert isinstance(unknown.exception, NotFound)  # type: ignore[attr-defined]
    assert unknown.exception.field == "model"  # type: ignore[attr-defined]
    assert isinstance(kind.exception, InvalidInput)  # type: ignore[attr-defined]
    assert kind.exception.field == "kind"  # type: ignore[attr-defined]


def test_serve_hands_its_config_to_the_api_factory_under_the_same_name() -> None:
    """The CLI and the API do not import each other; the variable name is the contract."""
    # Arrange
    from fedloop.api import monitor as api_monitor
    from fedloop.cli import monitor as cli_monitor

    # Assert
    assert cli_monitor._CONFIG_ENV == api_monitor.CONFIG_ENV
