"""``fedloop monitor``: the ingest server, reference profiles, ad-hoc drift checks and the HTML report."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from fedloop.cli._context import (
    FORMAT_OPTION,
    OutputFormat,
    absolute_paths,
    fmt_time,
    print_json,
    print_table,
    state,
    stderr,
    stdout,
)

app = typer.Typer(
    help="Watch served models: drift, live performance, alerts.", no_args_is_help=True
)

#: Where ``serve`` hands the resolved config to the API's app factory (``fedloop.api.monitor``).
_CONFIG_ENV = "_FEDLOOP_MONITOR_CONFIG"

_LABEL = typer.Option(
    None, "--label", help="Label column to drop from the data file (not a model input)."
)


def _rows(path: Path, label: str | None) -> Any:
    """Read the feature rows of a .npz (array ``x``), .csv or .parquet file."""
    import numpy as np

    from fedloop.core import InvalidInput, NotFound

    if not path.is_file():
        raise NotFound(f"data file {path} does not exist.", field="data", value=str(path))
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data:
                raise InvalidInput(
                    f"{path} has no array named 'x'.",
                    field="data",
                    hint="Save the feature rows with np.savez(path, x=rows).",
                )
            return np.asarray(data["x"])
    from fedloop.federated.datafiles import load_table

    if label is None:
        raise InvalidInput(
            "a CSV or Parquet file needs --label to tell the label column apart.",
            field="label",
            hint="Pass --label is_fraud (or whatever the column is called).",
        )
    x, _ = load_table(path, label=label)
    return x


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Interface (monitoring.host)."),
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="TCP port (monitoring.port)."
    ),
    webhook: list[str] | None = typer.Option(
        None, "--webhook", help="URL that gets drift and degradation alerts (repeatable)."
    ),
) -> None:
    """Receive inference servers' payload logs: window, check and record drift and performance.

    Point `fedloop serve --payload-log-url http://HOST:PORT/v1/monitor/ingest` here.
    """
    cli_state = state(ctx)
    cli_state.overrides.update(
        {"monitoring.host": host, "monitoring.port": port, "monitoring.webhooks": webhook or None}
    )
    full = absolute_paths(cli_state.resolved().config)
    config = full.monitoring
    cli_state.workspace()  # fail here, with a clear message, if the store cannot be opened
    full.api.auth_required(config.host, keys_exist=False)  # api.auth = "off" off loopback: refuse
    os.environ[_CONFIG_ENV] = full.model_dump_json()

    import uvicorn

    uv_config = uvicorn.Config(
        "fedloop.api.monitor:app_from_environ",
        factory=True,
        host=config.host,
        port=config.port,
        log_level="warning",
        access_log=False,
    )
    sock = uv_config.bind_socket()
    bound = sock.getsockname()[1]
    unit = f"{config.window_seconds} s" if config.window_seconds else f"{config.window_rows} rows"
    stderr.print(
        f"fedloop monitor: ingest at http://{config.host}:{bound}/v1/monitor/ingest "
        f"(windows of {unit})"
    )
    uvicorn.Server(uv_config).run(sockets=[sock])


@app.command("profile")
def profile(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME@ALIAS, NAME:VERSION or NAME."),
    data: Path = typer.Option(..., "--data", help="Reference rows: .npz (x=rows), .csv, .parquet."),
    label: str | None = _LABEL,
    bins: int | None = typer.Option(None, "--bins", min=2, max=10_000, help="Bins per column."),
) -> None:
    """Attach a reference profile to a version, built from the rows it was trained on."""
    ws = state(ctx).workspace()
    config = state(ctx).resolved().config.monitoring
    from fedloop.monitoring import attach_reference
    from fedloop.registry import ModelRegistry

    registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
    mv = registry.get(ref)
    with stderr.status("profiling reference rows…"):
        prof = attach_reference(
            registry,
            mv,
            _rows(data, label),
            num_bins=bins or config.reference_bins,
            sample_size=config.reference_sample_rows,
            actor="cli",
        )
    stdout.print(
        f"[bold green]✓[/] {escape(mv.model_name)} v{mv.version}: reference of "
        f"{prof.num_rows} rows, {len(prof.columns)} columns"
    )


@app.command("check")
def check(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME@ALIAS, NAME:VERSION or NAME."),
    data: Path = typer.Option(..., "--data", help="Current rows: .npz (x=rows), .csv, .parquet."),
    label: str | None = _LABEL,
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Check a file of current rows against a version's stored reference profile."""
    from fedloop.core import NotFound
    from fedloop.learn import profile_like
    from fedloop.monitoring import check_drift, model_columns, predict_onnx, prediction_columns
    from fedloop.registry import ModelRegistry

    ws = state(ctx).workspace()
    config = state(ctx).resolved().config.monitoring
    registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
    mv = registry.get(ref)
    reference = registry.find_profile(mv)
    if reference is None:
        raise NotFound(
            f"{mv.model_name} v{mv.version} has no reference profile.",
            field="model",
            hint=f"Attach one: fedloop monitor profile {mv.model_name}:{mv.version} --data ROWS.",
        )
    x = _rows(data, label)
    predictions = predict_onnx(registry.load_onnx(mv), x)
    current = profile_like(reference, model_columns(mv, x, predictions))
    report = check_drift(
        reference,
        current,
        config=config.drift,
        prediction_columns=prediction_columns(mv, reference.columns),
    )
    if fmt is OutputFormat.json:
        print_json(report.to_dict())
    else:
        rows = [
            [
                c.column,
                c.test or "",
                _num(c.statistic),
                _num(c.adjusted_p_value),
                _num(c.effect),
                "DRIFT" if c.drifted else "",
            ]
            for c in report.columns
        ]
        print_table(
            f"{mv.model_name} v{mv.version}: {report.verdict} "
            f"({report.num_drifted} of {report.num_tested} columns)",
            ["column", "test", "statistic", "corrected p", "effect", ""],
            rows,
        )
    if report.verdict == "drift":
        raise typer.Exit(4)


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.3g}"


@app.command("windows")
def windows(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name."),
    kind: str | None = typer.Option(None, "--kind", help="drift or performance."),
    version: int | None = typer.Option(None, "--version", min=1, help="One version only."),
    limit: int = typer.Option(50, "--limit", min=1, help="Newest windows shown."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """List a model's checked windows (newest last)."""
    from fedloop.core import InvalidInput

    if kind not in (None, "drift", "performance"):
        raise InvalidInput(
            f"--kind must be drift or performance; got {kind!r}.", field="kind", value=kind
        )
    ws = state(ctx).workspace()
    ws.metadata.list_model_versions(name)  # NotFound for an unknown model
    found = ws.metadata.list_monitor_windows(name, version=version, kind=kind, limit=limit)
    if fmt is OutputFormat.json:
        print_json([w.to_dict() for w in found])
        return
    rows = []
    for w in found:
        if w.kind == "drift":
            detail = ", ".join(w.summary.get("drifted_columns", [])) or "-"
        else:
            auc = w.summary.get("auc")
            detail = f"AUC {auc:.4f}" if auc is not None else "AUC -"
        rows.append(
            [w.id, f"v{w.version}", w.kind, fmt_time(w.end_time), w.rows, w.verdict, detail]
        )
    print_table(
        f"monitor windows of {name}",
        ["id", "version", "kind", "ended", "rows", "verdict", "detail"],
        rows,
    )


@app.command("report")
def report(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name."),
    out: Path = typer.Option(Path("monitor-report.html"), "--out", "-o", help="HTML file."),
    version: int | None = typer.Option(None, "--version", min=1, help="One version only."),
    limit: int = typer.Option(500, "--limit", min=1, help="Newest windows included."),
    cdn: bool = typer.Option(
        False, "--cdn", help="Load plotly.js from its CDN instead of embedding it (~4.8 MB)."
    ),
) -> None:
    """Write an HTML report: drift and performance over time, per-column plots, findings."""
    from fedloop.monitoring import render_report
    from fedloop.registry import ModelRegistry

    ws = state(ctx).workspace()
    ws.metadata.list_model_versions(name)  # NotFound for an unknown model
    found = ws.metadata.list_monitor_windows(name, version=version, limit=limit)
    drift = [w for w in found if w.kind == "drift"]
    reference = None
    if drift:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        reference = registry.find_profile(ws.metadata.get_model_version(name, drift[-1].version))
    page, summary = render_report(
        name,
        found,
        reference=reference,
        generated_at=datetime.now(UTC),
        plotlyjs="cdn" if cdn else "inline",
    )
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    verdict = summary.latest_verdict or "no window yet"
    stdout.print(
        f"[bold green]✓[/] wrote {escape(str(out))}: {summary.drift_windows} drift and "
        f"{summary.performance_windows} performance windows; latest: {verdict}"
    )
