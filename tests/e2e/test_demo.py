"""`fedloop demo --quick` in CI: the loop closes — a promoted new version whose lineage points at drift."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedloop.cli.app import app
from fedloop.core import resolve
from fedloop.registry import CHAMPION
from fedloop.store import open_workspace


def test_quick_demo_closes_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drift on the served champion leads, by itself, to a retrained, promoted v2 with lineage."""
    # Arrange
    monkeypatch.chdir(tmp_path)
    demo_dir = tmp_path / "demo"

    # Act
    result = CliRunner().invoke(
        app, ["demo", "--quick", "--dir", str(demo_dir), "--report", str(tmp_path / "r.html")]
    )

    # Assert
    assert result.exit_code == 0, result.output
    config = resolve({"project": {"dir": str(demo_dir), "name": "fraud-demo"}}, {}, {}).config
    with open_workspace(config) as ws:
        champion = ws.metadata.find_alias("bank-fraud", CHAMPION)
        assert champion is not None
        assert champion.version == 2
        trigger = champion.tags["trigger"]
        assert trigger.startswith("window:")
        window = next(
            w
            for w in ws.metadata.list_monitor_windows("bank-fraud", kind="drift", limit=10_000)
            if w.id == int(trigger.split(":")[1])
        )
        assert window.verdict == "drift"
        assert window.version == 1
        drift_events = ws.metadata.list_events(kind="monitor.drift_detected", limit=10_000)
        assert any(e.payload["window_id"] == window.id for e in drift_events)
        lineage_parent = ws.metadata.get_model_version_by_id(champion.parent_version_id)  # type: ignore[arg-type]
        assert lineage_parent.version == 1
        (action,) = ws.metadata.list_loop_actions(model_name="bank-fraud")
        assert (action.state, action.trigger_ref, action.challenger_version) == (
            "promoted",
            trigger,
            2,
        )
        assert ws.metadata.verify_audit().ok
    page = (tmp_path / "r.html").read_text()
    assert "Decisions and traffic split" in page
