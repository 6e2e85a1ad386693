"""`fedloop loop`: list the closed loop's actions and trigger a policy by hand."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _graphs import NUM_FEATURES, make_graph
from fedloop.cli.app import app
from fedloop.core import Conflict, NotFound, resolve
from fedloop.registry import ModelRegistry
from fedloop.store import open_workspace

TOML = """
[project]
dir = ".fedloop"

[[automation.policies]]
name = "nightly"
model = "fraud"
[automation.policies.trigger]
manual_only = true
[automation.policies.action]
kind = "federated"
trainer = "json:dumps"
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Return a project folder with a policy and ``fraud`` v1 registered; cwd is it."""
    (tmp_path / "fedloop.toml").write_text(TOML)
    monkeypatch.chdir(tmp_path)
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        w = OrderedDict([("w", np.zeros((NUM_FEATURES, 1), dtype=np.float32))])
        registry.register("fraud", weights=w, onnx_model=make_graph(1))
    return tmp_path


def test_trigger_then_list(project: Path) -> None:
    """A manual trigger is an action in state triggered, listed in table and JSON form."""
    # Act
    triggered = CliRunner().invoke(app, ["loop", "trigger", "nightly", "--reason", "new data"])
    table = CliRunner().invoke(app, ["loop", "list"])
    listed = CliRunner().invoke(app, ["loop", "list", "--format", "json"])

    # Assert
    assert triggered.exit_code == 0, triggered.output
    assert "nightly" in table.output
    (action,) = json.loads(listed.stdout)
    assert (action["policy"], action["state"], action["trigger"]) == (
        "nightly",
        "triggered",
        "manual",
    )


def test_trigger_refuses_unknown_and_busy_policies(project: Path) -> None:
    """An unknown policy is NotFound; a second trigger while one is open is a Conflict."""
    # Act
    unknown = CliRunner().invoke(app, ["loop", "trigger", "weekly"])
    CliRunner().invoke(app, ["loop", "trigger", "nightly"])
    busy = CliRunner().invoke(app, ["loop", "trigger", "nightly"])

    # Assert
    assert isinstance(unknown.exception, NotFound)
    assert isinstance(busy.exception, Conflict)


def test_up_hands_its_config_to_the_control_plane_under_the_same_names() -> None:
    """The CLI and the API do not import each other; the variable names are the contract."""
    # Arrange
    from fedloop.api import control
    from fedloop.cli import up

    # Assert
    assert (up._CONTROL_CONFIG_ENV, up._SERVING_URL_ENV, up._SERVING_KEY_ENV) == (
        control.CONTROL_CONFIG_ENV,
        control.SERVING_URL_ENV,
        control.SERVING_KEY_ENV,
    )
