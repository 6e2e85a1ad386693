"""`fedloop federated simulate`: backends, options and what lands in the store."""

from __future__ import annotations

from pathlib import Path

import pytest
from _cli import store_args
from typer.testing import CliRunner

from fedloop.cli.app import app
from fedloop.core import resolve
from fedloop.scenarios.fraud.federated import MODEL_NAME
from fedloop.store import open_workspace


def test_simulate_on_ray_runs_rounds_and_registers_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--backend ray trains the banks in Ray actors; the run and its model land in the store."""
    # Arrange
    monkeypatch.chdir(tmp_path)
    args = [
        *store_args(tmp_path),
        "federated",
        "simulate",
        "--clients",
        "3",
        "--rounds",
        "2",
        "--rows",
        "3000",
        "--partition",
        "iid",
        "--backend",
        "ray",
        "--workers",
        "2",
    ]

    # Act
    result = CliRunner().invoke(app, args)

    # Assert
    assert result.exit_code == 0, result.output
    config = resolve(
        {
            "store": {
                "url": f"sqlite:///{tmp_path / '.fedloop' / 'fedloop.db'}",
                "artifacts_url": str(tmp_path / ".fedloop" / "artifacts"),
            }
        },
        {},
        {},
    ).config
    with open_workspace(config) as ws:
        runs = ws.metadata.search_runs(ws.project.id)
        assert [r.status for r in runs] == ["finished"]
        rounds = ws.metadata.list_fl_rounds(runs[0].id)
        assert [r.round for r in rounds] == [0, 1, 2]
        assert all(r.num_succeeded == 3 for r in rounds[1:])
        version = ws.metadata.find_alias(MODEL_NAME, "champion")
        assert version is not None
        profile = ws.metadata.find_profile(version.id)
        assert profile is not None
        assert (profile.source, profile.num_rows) == ("federated", 2400)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backend", "threads"], "--backend must be local, inprocess or ray"),
        (["--ray-address", "auto"], "--ray-address needs --backend ray"),
    ],
)
def test_simulate_refuses_bad_backend_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str
) -> None:
    """A wrong --backend or a --ray-address without Ray is refused before anything runs."""
    # Arrange
    monkeypatch.chdir(tmp_path)

    # Act
    result = CliRunner().invoke(app, [*store_args(tmp_path), "federated", "simulate", *argv])

    # Assert
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / ".fedloop" / "fedloop.db").exists()
