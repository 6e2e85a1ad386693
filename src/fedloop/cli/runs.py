"""``fedloop runs``: list, search and show tracked runs."""

from __future__ import annotations

from dataclasses import asdict

import typer

from fedloop.cli._context import (
    FORMAT_OPTION,
    OutputFormat,
    fmt_time,
    print_json,
    print_table,
    state,
    stdout,
)
from fedloop.core import InvalidInput, NotFound, RunId
from fedloop.store import Workspace

app = typer.Typer(help="Tracked runs: params, metrics, status.", no_args_is_help=True)


@app.command("list")
def list_runs(
    ctx: typer.Context,
    filter: str = typer.Option(
        "", "--filter", help="E.g. \"metrics.auc > 0.9 and params.lr = '0.05'\"."
    ),
    order_by: str | None = typer.Option(None, "--order-by", help="E.g. 'metrics.auc desc'."),
    limit: int = typer.Option(50, "--limit", min=1, max=50_000, help="At most this many."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """List runs of the project, newest first, optionally filtered."""
    ws = state(ctx).workspace()
    runs = ws.metadata.search_runs(
        ws.project.id, filter=filter, order_by=order_by, max_results=limit
    )
    if fmt is OutputFormat.json:
        print_json([asdict(r) for r in runs])
        return
    print_table(
        f"Runs of {ws.project.name}",
        ["id", "name", "kind", "status", "created", "metrics"],
        [
            [
                r.id[:8],
                r.name,
                r.kind,
                r.status,
                fmt_time(r.created_at),
                ", ".join(f"{k}={v:.4g}" for k, v in sorted(r.latest_metrics.items())[:4]),
            ]
            for r in runs
        ],
    )


app.command("ls", hidden=True)(list_runs)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Run id (or a unique prefix of at least 6 characters)."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Show a run's params, tags, latest metrics and artifacts."""
    ws = state(ctx).workspace()
    run = ws.metadata.get_run(RunId(_expand(ws, run_id)))
    artifacts = ws.metadata.list_artifacts(run.id)
    if fmt is OutputFormat.json:
        print_json({**asdict(run), "artifacts": [asdict(a) for a in artifacts]})
        return
    rows = [
        ["id", run.id],
        ["name", run.name],
        ["kind", run.kind],
        ["status", run.status],
        ["created", fmt_time(run.created_at)],
        ["ended", fmt_time(run.ended_at)],
    ]
    if run.error:
        rows.append(["error", run.error])
    rows += [[f"param {k}", v] for k, v in sorted(run.params.items())]
    rows += [[f"tag {k}", v] for k, v in sorted(run.tags.items())]
    rows += [[f"metric {k}", f"{v:.6g}"] for k, v in sorted(run.latest_metrics.items())]
    rows += [[f"artifact {a.name}", f"{a.size_bytes} B sha256 {a.digest[:12]}…"] for a in artifacts]
    print_table(f"Run {run.name}", ["field", "value"], rows)
    stdout.print()


def _expand(ws: Workspace, run_id: str) -> str:
    if len(run_id) == 32:
        return run_id
    if len(run_id) < 6:
        raise InvalidInput(
            f"run id prefix {run_id!r} is too short.",
            field="run_id",
            hint="Give at least 6 characters of the id.",
        )
    matches = [
        r.id
        for r in ws.metadata.search_runs(ws.project.id, max_results=50_000)
        if r.id.startswith(run_id)
    ]
    if len(matches) != 1:
        raise NotFound(
            f"{len(matches)} runs match the prefix {run_id!r}.",
            field="run_id",
            value=run_id,
            hint="Give more characters of the id (see `fedloop runs list`).",
        )
    return matches[0]
