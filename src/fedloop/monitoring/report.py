"""The monitor's HTML report: drift and performance over time, per-feature plots, latest findings."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np

from fedloop.learn import DataProfile, NumericSummary
from fedloop.store import AuditEvent, MonitorWindow

__all__ = ["ReportSummary", "render_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1200px;
color:#1f2933;padding:0 1rem}h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;
border-bottom:1px solid #d9e2ec;padding-bottom:.3rem}table{border-collapse:collapse;width:100%;
font-size:.9rem}th,td{padding:.3rem .6rem;border-bottom:1px solid #e4e7eb;text-align:left}
th{background:#f5f7fa}.drift{color:#b42318;font-weight:600}.ok{color:#067647}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{background:#f5f7fa;border-radius:8px;
padding:.8rem 1.2rem;min-width:10rem}.card b{display:block;font-size:1.3rem}
.muted{color:#7b8794;font-size:.85rem}.grid{display:grid;grid-template-columns:1fr 1fr;gap:.5rem}
"""


@dataclass(frozen=True)
class ReportSummary:
    """What a rendered report covers (for the CLI's one-line answer)."""

    model: str
    drift_windows: int
    performance_windows: int
    latest_verdict: str | None
    drifted_columns: tuple[str, ...]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 10**-digits or abs(value) >= 10**6):
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _figure_html(fig: Any) -> str:
    import plotly.io as pio

    fig.update_layout(margin={"l": 40, "r": 20, "t": 40, "b": 40}, template="plotly_white")
    out: str = pio.to_html(fig, full_html=False, include_plotlyjs=False)
    return out


def _timeline(drift: Sequence[MonitorWindow], perf: Sequence[MonitorWindow]) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        subplot_titles=("Drifted columns per window", "Live performance (labelled traffic)"),
        vertical_spacing=0.12,
    )
    if drift:
        fig.add_trace(
            go.Bar(
                x=[w.end_time for w in drift],
                y=[w.summary.get("num_drifted", 0) for w in drift],
                marker_color=["#d64545" if w.verdict == "drift" else "#3ebd93" for w in drift],
                text=[f"v{w.version}" for w in drift],
                name="drifted columns",
            ),
            row=1,
            col=1,
        )
    for metric, color in (("auc", "#2680c2"), ("precision", "#9446ed"), ("recall", "#f0b429")):
        points = [(w.end_time, w.summary.get(metric)) for w in perf]
        points = [(t, v) for t, v in points if v is not None]
        if points:
            fig.add_trace(
                go.Scatter(
                    x=[t for t, _ in points],
                    y=[v for _, v in points],
                    mode="lines+markers",
                    name=metric,
                    line={"color": color},
                ),
                row=2,
                col=1,
            )
    fig.update_layout(height=560, legend={"orientation": "h"})
    return _figure_html(fig)


def _heatmap(drift: Sequence[MonitorWindow]) -> str:
    import plotly.graph_objects as go

    columns: list[str] = []
    for w in drift:
        for c in w.summary.get("columns", []):
            if c["column"] not in columns:
                columns.append(c["column"])
    z = np.full((len(columns), len(drift)), np.nan)
    for j, w in enumerate(drift):
        for c in w.summary.get("columns", []):
            if c.get("effect") is not None:
                z[columns.index(c["column"]), j] = float(c["effect"])
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[w.end_time for w in drift],
            y=columns,
            colorscale="Reds",
            colorbar={"title": "effect"},
            hovertemplate="%{y}<br>%{x}<br>effect %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Effect size per column and window", height=max(300, 18 * len(columns) + 120)
    )
    return _figure_html(fig)


def _histograms(reference: DataProfile, latest: MonitorWindow, *, limit: int) -> str:
    import plotly.graph_objects as go

    current = latest.summary.get("current_counts", {})
    findings = {c["column"]: c for c in latest.summary.get("columns", [])}
    ordered = sorted(
        (name for name in reference.columns if name in current),
        key=lambda n: (not findings.get(n, {}).get("drifted", False), n),
    )
    parts = []
    for name in ordered[:limit]:
        summary = reference.columns[name]
        if not isinstance(summary, NumericSummary):
            continue
        ref = summary.counts / max(summary.count, 1)
        cur_counts = np.asarray(current[name], dtype=np.float64)
        if cur_counts.shape != ref.shape:
            continue
        cur = cur_counts / max(cur_counts.sum(), 1.0)
        labels = [f"≤ {e:.3g}" for e in summary.edges] + [f"> {summary.edges[-1]:.3g}"]
        finding = findings.get(name, {})
        flag = " &mdash; DRIFT" if finding.get("drifted") else ""
        fig = go.Figure(
            [
                go.Bar(x=labels, y=ref, name="reference", marker_color="#829ab1", opacity=0.7),
                go.Bar(x=labels, y=cur, name="current", marker_color="#d64545", opacity=0.6),
            ]
        )
        fig.update_layout(
            barmode="overlay",
            height=260,
            title=f"{name}{flag} ({finding.get('test') or '&ndash;'}, effect {_fmt(finding.get('effect'), 3)})",
            showlegend=False,
            xaxis={"showticklabels": False},
        )
        parts.append(f"<div>{_figure_html(fig)}</div>")
    return f'<div class="grid">{"".join(parts)}</div>'


def _findings_table(latest: MonitorWindow) -> str:
    rows = []
    for c in latest.summary.get("columns", []):
        cls = "drift" if c["drifted"] else ""
        rows.append(
            f'<tr class="{cls}"><td>{html.escape(c["column"])}</td><td>{_fmt(c.get("role"))}</td>'
            f"<td>{_fmt(c.get('test'))}</td><td>{_fmt(c.get('statistic'))}</td>"
            f"<td>{_fmt(c.get('p_value'))}</td><td>{_fmt(c.get('adjusted_p_value'))}</td>"
            f"<td>{_fmt(c.get('effect'), 3)} {_fmt(c.get('effect_name'))}</td>"
            f"<td>{_fmt(c.get('effect_threshold'), 3)}</td>"
            f"<td>{'yes' if c['drifted'] else 'no'}</td><td>{_fmt(c.get('reason'))}</td></tr>"
        )
    head = (
        "<tr><th>column</th><th>role</th><th>test</th><th>statistic</th><th>p-value</th>"
        "<th>corrected p</th><th>effect</th><th>threshold</th><th>drifted</th><th>why</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _traffic_split(events: Sequence[AuditEvent]) -> str:
    import plotly.graph_objects as go

    times, shares, labels = [], [], []
    for e in events:
        if e.kind != "deployment.changed":
            continue
        canary = (e.payload.get("spec") or {}).get("canary")
        times.append(e.at)
        shares.append(100.0 * float(canary["fraction"]) if canary else 0.0)
        labels.append(canary["ref"] if canary else "champion only")
    if not times:
        return ""
    fig = go.Figure(
        go.Scatter(x=times, y=shares, mode="lines+markers", line={"shape": "hv"}, text=labels)
    )
    fig.update_layout(title="Canary share of traffic (%)", height=300, yaxis={"range": [0, 105]})
    return _figure_html(fig)


def _timeline_table(events: Sequence[AuditEvent]) -> str:
    rows = []
    for e in events:
        p = e.payload
        what = p.get("reason") or p.get("state") or ""
        if e.kind == "monitor.drift_detected":
            what = "drift in " + ", ".join(f["column"] for f in p.get("findings", [])[:8])
        elif e.kind == "model.alias_moved":
            what = f"{p.get('from_version')} -> {p.get('to_version')} ({p.get('reason', '')})"
        rows.append(
            f"<tr><td>{e.at:%H:%M:%S}</td><td>{html.escape(e.kind)}</td>"
            f"<td>{html.escape(e.subject)}</td><td>{html.escape(str(what))}</td></tr>"
        )
    head = "<tr><th>time (UTC)</th><th>event</th><th>subject</th><th>why</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def render_report(
    model: str,
    windows: Sequence[MonitorWindow],
    *,
    reference: DataProfile | None,
    generated_at: datetime,
    plotlyjs: Literal["inline", "cdn"] = "inline",
    max_histograms: int = 30,
    timeline: Sequence[AuditEvent] = (),
) -> tuple[str, ReportSummary]:
    """Render the monitor's findings for one model as a self-contained HTML page.

    Parameters
    ----------
    model : str
        Registered model name.
    windows : sequence of MonitorWindow
        Its checked windows, oldest first (``SqlMetadataStore.list_monitor_windows``).
    reference : DataProfile or None
        The reference profile of the latest drift window's version (for the histograms).
    generated_at : datetime
        Shown in the header.
    plotlyjs : {"inline", "cdn"}, default "inline"
        Embed plotly.js (works offline, ~4.8 MB) or load it from the plotly CDN.
    max_histograms : int, default 30
        Per-column histograms drawn (flagged columns first).
    timeline : sequence of AuditEvent
        Decisions to show (drift detections, the closed loop's actions, alias moves and
        traffic-split changes): a table, and the canary's share of traffic over time.

    Returns
    -------
    (str, ReportSummary)
        The HTML and what it covers.
    """
    import plotly.offline

    drift = [w for w in windows if w.kind == "drift"]
    perf = [w for w in windows if w.kind == "performance"]
    latest = drift[-1] if drift else None
    summary = ReportSummary(
        model=model,
        drift_windows=len(drift),
        performance_windows=len(perf),
        latest_verdict=latest.verdict if latest else None,
        drifted_columns=tuple(latest.summary.get("drifted_columns", [])) if latest else (),
    )
    if plotlyjs == "inline":
        script = f"<script>{plotly.offline.get_plotlyjs()}</script>"
    else:
        script = '<script src="https://cdn.plot.ly/plotly-3.1.0.min.js"></script>'
    cards = [
        ("drift windows", str(len(drift))),
        ("performance windows", str(len(perf))),
        ("latest verdict", latest.verdict if latest else "&ndash;"),
        ("drifted columns", str(len(summary.drifted_columns)) if latest else "&ndash;"),
    ]
    if perf and perf[-1].summary.get("auc") is not None:
        cards.append(("latest AUC", _fmt(perf[-1].summary["auc"])))
    body = [
        f"<h1>fedloop monitor &mdash; {html.escape(model)}</h1>",
        f'<p class="muted">Generated {generated_at:%Y-%m-%d %H:%M:%S} UTC from '
        f"{len(windows)} windows.</p>",
        '<div class="cards">'
        + "".join(f'<div class="card">{html.escape(k)}<b>{v}</b></div>' for k, v in cards)
        + "</div>",
    ]
    if not windows:
        body.append("<p>No window has been checked yet: send traffic through the payload log.</p>")
    else:
        body += ["<h2>Over time</h2>", _timeline(drift, perf)]
    if drift:
        body += ["<h2>Drift per column</h2>", _heatmap(drift)]
    if timeline:
        body += [
            "<h2>Decisions and traffic split</h2>",
            _traffic_split(timeline),
            _timeline_table(timeline),
        ]
    if latest is not None:
        verdict_cls = "drift" if latest.verdict == "drift" else "ok"
        body += [
            f"<h2>Latest window: v{latest.version}, {latest.rows} rows, "
            f'<span class="{verdict_cls}">{html.escape(latest.verdict) if latest.verdict else "&ndash;"}</span></h2>',
            f'<p class="muted">{latest.start_time:%Y-%m-%d %H:%M:%S} &ndash; '
            f"{latest.end_time:%Y-%m-%d %H:%M:%S} UTC; correction "
            f"{_fmt(latest.summary.get('correction'))} at alpha {_fmt(latest.summary.get('alpha'), 3)}.</p>",
            _findings_table(latest),
        ]
        if reference is not None:
            body += [
                "<h2>Reference vs latest window</h2>",
                _histograms(reference, latest, limit=max_histograms),
            ]
    page = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>fedloop monitor &mdash; {html.escape(model)}</title><style>{_CSS}</style>{script}"
        f"</head><body>{''.join(body)}</body></html>"
    )
    return page, summary
