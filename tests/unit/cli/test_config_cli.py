"""`fedloop config show` with [[automation.policies]]: every value listed, bad policies refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedloop.cli import app, main
from fedloop.core import ConfigError

POLICY = """\
[automation]
tick_s = 2.0

[[automation.policies]]
name = "fraud-drift"
model = "fraud-fl"

[automation.policies.trigger]
on_drift = true

[automation.policies.action]
kind = "federated"
trainer = "fedloop.scenarios.fraud.loop:retrain"

[automation.policies.rollout]
steps = [0.2, 1.0]
"""
BAD = POLICY.replace("steps = [0.2, 1.0]", "steps = [1.0, 0.2]")
BAD_LINE = 16


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Return a working directory for the CLI."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_config_show_lists_each_policy_key(project: Path) -> None:
    """Every key of every policy is listed with its source, file or default."""
    # Arrange
    (project / "fedloop.toml").write_text(POLICY)

    # Act
    result = CliRunner().invoke(app, ["config", "show", "--format", "json"])

    # Assert
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["automation.tick_s"] == {"value": 2.0, "source": "file"}
    assert data["automation.policies[0].name"] == {"value": "fraud-drift", "source": "file"}
    assert data["automation.policies[0].rollout.steps"] == {"value": [0.2, 1.0], "source": "file"}
    assert data["automation.policies[0].gate.metric"] == {"value": "auc", "source": "default"}
    assert data["automation.policies[0].action.params"] == {"value": {}, "source": "default"}


def test_config_show_lists_no_policies_by_default(project: Path) -> None:
    """Without policies, the empty list is shown as one value."""
    # Act
    result = CliRunner().invoke(app, ["config", "show", "--format", "json"])

    # Assert
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["automation.policies"] == {"value": [], "source": "default"}


def test_config_show_refuses_bad_policy_naming_the_line(project: Path) -> None:
    """A malformed policy fails the command with a ConfigError naming the field and line."""
    # Arrange
    (project / "fedloop.toml").write_text(BAD)

    # Act
    result = CliRunner().invoke(app, ["config", "show"])

    # Assert
    assert isinstance(result.exception, ConfigError)
    assert result.exception.field == "automation.policies[0].rollout.steps"
    assert f"fedloop.toml line {BAD_LINE}:" in result.exception.message


def test_main_prints_the_line_of_a_bad_policy(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fedloop config show` exits 2 and its error and hint give the file's line."""
    # Arrange
    (project / "fedloop.toml").write_text(BAD)
    monkeypatch.setattr(sys, "argv", ["fedloop", "config", "show"])

    # Act
    with pytest.raises(SystemExit) as exited:
        main()

    # Assert
    assert exited.value.code == 2
    headline, hint = capsys.readouterr().err.strip().splitlines()
    assert headline.startswith("Error (config_error): `automation.policies[0].rollout.steps`")
    assert f"line {BAD_LINE}:" in headline
    assert hint.startswith("Hint: Fix `steps` under [automation.policies.rollout]")
    assert "(policy 'fraud-drift')" in hint
