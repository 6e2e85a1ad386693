"""The dashboard's plotly figures, as JSON-ready ``{"data", "layout"}`` mappings for plotly.js."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from fedloop.store import AuditEvent, FlRound, MetricPoint, ModelVersion, MonitorWindow

__all__ = [
    "Figure",
    "drift_figure",
    "effect_heatmap",
    "effect_lines",
    "metric_figure",
    "performance_figure",
    "round_figures",
    "traffic_figure",
    "version_metrics_figure",
]

Figure = dict[str, Any]

_COLORS = ("#2680c2", "#d64545", "#3ebd93", "#9446ed", "#f0b429", "#627d98", "#e8368f", "#0f609b")
_FONT = {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12}
#: For charts of many lines: the legend in a column on the right.
_SIDE_LEGEND = {"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top"}


def _num(value: Any) -> float | None:
    """Return a finite float, or None (plotly.js draws a gap; JSON has no NaN)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _layout(title: str, *, height: int = 300, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
        "height": height,
        "margin": {"l": 55, "r": 55, "t": 45, "b": 45},
        "font": _FONT,
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "legend": {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
        "xaxis": {"gridcolor": "#e4e7eb", "zeroline": False},
        "yaxis": {"gridcolor": "#e4e7eb", "zeroline": False, "rangemode": "tozero"},
    }
    layout.update(extra)
    return layout


def _line(name: str, x: Sequence[Any], y: Iterable[Any], color: str, **extra: Any) -> Figure:
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "name": name,
        "x": list(x),
        "y": [_num(v) for v in y],
        "line": {"color": color},
        **extra,
    }


def round_figures(rounds: Sequence[FlRound]) -> dict[str, Figure]:
    """Return the federated round charts of a run (round 0, the initial model, is left out).

    Parameters
    ----------
    rounds : sequence of FlRound
        The run's recorded rounds, in order.

    Returns
    -------
    dict
        ``loss`` (train loss and evaluation AUC per round, AUC on a second axis),
        ``clients`` (participants and dropouts), ``bytes`` (up and down, kB or MB) and
        ``seconds``.
    """
    done = [r for r in rounds if r.round > 0]
    x = [r.round for r in done]
    quality = [
        _line("train loss", x, (r.metrics.get("train_loss") for r in done), _COLORS[1]),
        _line("eval loss", x, (r.metrics.get("eval_loss") for r in done), _COLORS[5]),
        _line("eval AUC", x, (r.metrics.get("eval_auc") for r in done), _COLORS[0], yaxis="y2"),
    ]
    axis = {"title": {"text": "round"}, "dtick": 1, "gridcolor": "#e4e7eb"}
    big = max((max(r.bytes_up, r.bytes_down) for r in done), default=0) >= 1e6
    unit, scale = ("MB", 1e6) if big else ("kB", 1e3)
    return {
        "loss": {
            "data": [t for t in quality if any(v is not None for v in t["y"])] or quality[:1],
            "layout": _layout(
                "Loss and AUC per round",
                xaxis=axis,
                yaxis={"title": {"text": "loss"}, "gridcolor": "#e4e7eb", "rangemode": "tozero"},
                yaxis2={
                    "title": {"text": "AUC"},
                    "overlaying": "y",
                    "side": "right",
                    "range": [0, 1],
                    "tickformat": ".2f",
                    "showgrid": False,
                },
            ),
        },
        "clients": {
            "data": [
                {
                    "type": "bar",
                    "name": "participants",
                    "x": x,
                    "y": [r.num_succeeded for r in done],
                    "marker": {"color": _COLORS[2]},
                },
                {
                    "type": "bar",
                    "name": "dropouts",
                    "x": x,
                    "y": [r.num_failed for r in done],
                    "marker": {"color": _COLORS[1]},
                },
            ],
            "layout": _layout("Participants and dropouts", barmode="stack", xaxis=axis),
        },
        "bytes": {
            "data": [
                _line(f"{unit} up", x, (r.bytes_up / scale for r in done), _COLORS[3]),
                _line(f"{unit} down", x, (r.bytes_down / scale for r in done), _COLORS[4]),
            ],
            "layout": _layout(f"Bytes per round ({unit}, all clients)", xaxis=axis),
        },
        "seconds": {
            "data": [
                {
                    "type": "bar",
                    "name": "seconds",
                    "x": x,
                    "y": [_num(r.seconds) for r in done],
                    "marker": {"color": _COLORS[5]},
                }
            ],
            "layout": _layout("Seconds per round", xaxis=axis, showlegend=False),
        },
    }


def metric_figure(key: str, points: Sequence[MetricPoint]) -> Figure:
    """Return one metric's history over its steps."""
    return {
        "data": [_line(key, [p.step for p in points], (p.value for p in points), _COLORS[0])],
        "layout": _layout(key, height=260, showlegend=False, xaxis={"title": {"text": "step"}}),
    }


def version_metrics_figure(versions: Sequence[ModelVersion], *, limit: int = 6) -> Figure:
    """Return the registered metrics of a model's versions, one line per metric (oldest first)."""
    versions = sorted(versions, key=lambda v: v.version)
    keys: list[str] = []
    for v in versions:
        keys.extend(k for k in v.metrics if k not in keys)
    x = [f"v{v.version}" for v in versions]
    data = [
        _line(k, x, (v.metrics.get(k) for v in versions), _COLORS[i % len(_COLORS)])
        for i, k in enumerate(keys[:limit])
    ]
    return {
        "data": data,
        "layout": _layout(
            "Registered metrics per version",
            legend=_SIDE_LEGEND,
            margin={"l": 50, "r": 20, "t": 45, "b": 40},
        ),
    }


def drift_figure(drift: Sequence[MonitorWindow]) -> Figure:
    """Return the drifted columns per window (red: the window's verdict is drift)."""
    return {
        "data": [
            {
                "type": "bar",
                "name": "drifted columns",
                "x": [w.end_time.isoformat() for w in drift],
                "y": [w.summary.get("num_drifted", 0) for w in drift],
                "text": [f"v{w.version}" for w in drift],
                "marker": {
                    "color": ["#d64545" if w.verdict == "drift" else "#3ebd93" for w in drift]
                },
            }
        ],
        "layout": _layout("Drifted columns per window", showlegend=False),
    }


def performance_figure(perf: Sequence[MonitorWindow]) -> Figure:
    """Return live AUC, precision and recall per performance window (delayed labels)."""
    x = [w.end_time.isoformat() for w in perf]
    data = [
        _line(metric, x, (w.summary.get(metric) for w in perf), color)
        for metric, color in (
            ("auc", _COLORS[0]),
            ("precision", _COLORS[3]),
            ("recall", _COLORS[4]),
        )
    ]
    return {"data": data, "layout": _layout("Live performance (labelled traffic)")}


def _columns(drift: Sequence[MonitorWindow]) -> list[str]:
    names: list[str] = []
    for w in drift:
        for c in w.summary.get("columns", []):
            if c.get("column") not in names:
                names.append(c["column"])
    return names


def _effects(w: MonitorWindow) -> dict[str, float | None]:
    return {c["column"]: _num(c.get("effect")) for c in w.summary.get("columns", [])}


def effect_heatmap(drift: Sequence[MonitorWindow]) -> Figure:
    """Return the effect size per feature (rows) and window (columns)."""
    names = _columns(drift)
    effects = [_effects(w) for w in drift]
    return {
        "data": [
            {
                "type": "heatmap",
                "x": [w.end_time.isoformat() for w in drift],
                "y": names,
                "z": [[e.get(name) for e in effects] for name in names],
                "colorscale": "Reds",
                "colorbar": {"title": {"text": "effect"}},
                "hovertemplate": "%{y}<br>%{x}<br>effect %{z:.3f}<extra></extra>",
            }
        ],
        "layout": _layout(
            "Drift effect per feature and window", height=max(300, 18 * len(names) + 120)
        ),
    }


def effect_lines(drift: Sequence[MonitorWindow], *, limit: int = 8) -> Figure:
    """Return the effect of the most drifted features over time (most flagged windows first)."""
    names = _columns(drift)
    flagged = {name: 0 for name in names}
    peak = {name: 0.0 for name in names}
    for w in drift:
        for c in w.summary.get("columns", []):
            flagged[c["column"]] += bool(c.get("drifted"))
            peak[c["column"]] = max(peak[c["column"]], _num(c.get("effect")) or 0.0)
    top = sorted(names, key=lambda n: (-flagged[n], -peak[n], n))[:limit]
    x = [w.end_time.isoformat() for w in drift]
    effects = [_effects(w) for w in drift]
    data = [
        _line(name, x, (e.get(name) for e in effects), _COLORS[i % len(_COLORS)])
        for i, name in enumerate(top)
    ]
    return {
        "data": data,
        "layout": _layout(
            "Effect over time, most drifted features",
            legend=_SIDE_LEGEND,
            margin={"l": 50, "r": 20, "t": 45, "b": 40},
        ),
    }


def traffic_figure(events: Sequence[AuditEvent], *, now: datetime) -> Figure | None:
    """Return the canary's share of traffic over time from ``deployment.changed`` events.

    The last split holds until ``now``, where the line ends.
    """
    times, shares, labels = [], [], []
    for e in events:
        if e.kind != "deployment.changed":
            continue
        canary = (e.payload.get("spec") or {}).get("canary")
        times.append(e.at.isoformat())
        shares.append(100.0 * float(canary["fraction"]) if canary else 0.0)
        labels.append(canary["ref"] if canary else "champion only")
    if not times:
        return None
    times.append(max(now, events[-1].at).isoformat())
    shares.append(shares[-1])
    labels.append(f"{labels[-1]} (now)")
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": times,
                "y": shares,
                "text": labels,
                "line": {"shape": "hv", "color": _COLORS[3]},
                "name": "canary %",
            }
        ],
        "layout": _layout(
            "Canary share of traffic (%)",
            height=260,
            showlegend=False,
            yaxis={"range": [0, 105], "gridcolor": "#e4e7eb"},
        ),
    }
