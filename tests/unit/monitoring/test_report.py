"""The monitor's HTML report renders what the store holds, with or without windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fedloop.monitoring import render_report
from fedloop.store import MonitorWindow

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def _performance(i: int, auc: float) -> MonitorWindow:
    return MonitorWindow(
        id=i,
        model_name="fraud",
        version=1,
        kind="performance",
        start_time=T0 + timedelta(minutes=i),
        end_time=T0 + timedelta(minutes=i + 1),
        rows=500,
        verdict="ok",
        summary={"auc": auc, "precision": 0.5, "recall": 0.4},
        created_at=T0,
    )


def test_report_without_windows_says_what_to_do() -> None:
    """No window yet: the page says to send traffic, and embeds plotly.js for offline use."""
    # Act
    page, summary = render_report("fraud", [], reference=None, generated_at=T0)

    # Assert
    assert "No window has been checked yet" in page
    assert "plotly" in page.lower()
    assert len(page) > 1_000_000  # plotly.js inline: the report works without a network
    assert (summary.drift_windows, summary.latest_verdict) == (0, None)


def test_report_shows_live_performance() -> None:
    """Performance windows give the latest-AUC card and the over-time chart."""
    # Act
    page, summary = render_report(
        "fraud",
        [_performance(1, 0.91), _performance(2, 0.87)],
        reference=None,
        generated_at=T0,
        plotlyjs="cdn",
    )

    # Assert
    assert summary.performance_windows == 2
    assert "latest AUC<b>0.8700</b>" in page
    assert "Over time" in page
