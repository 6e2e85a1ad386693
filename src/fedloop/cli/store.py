"""``fedloop store``: inspect and migrate the metadata store, collect artifact garbage."""

from __future__ import annotations

from dataclasses import asdict

import typer

from fedloop.cli._context import FORMAT_OPTION, OutputFormat, print_json, print_table, state, stdout
from fedloop.store import SCHEMA_HEAD, SqlMetadataStore, collect_garbage

app = typer.Typer(help="The metadata and artifact stores.", no_args_is_help=True)


@app.command("info")
def info(ctx: typer.Context, fmt: OutputFormat = FORMAT_OPTION) -> None:
    """Show where the stores are, the schema revision and object counts."""
    ws = state(ctx).workspace()
    data = {
        "metadata_url": ws.metadata.safe_url,
        "dialect": ws.metadata.dialect,
        "schema_revision": ws.metadata.current_revision(),
        "schema_head": SCHEMA_HEAD,
        "artifacts_url": ws.artifacts.uri_for("0" * 64).rsplit("/sha256/", 1)[0],
        "project": ws.project.name,
        "runs": ws.metadata.count_runs(ws.project.id),
        "models": len(ws.metadata.list_registered_models(ws.project.id)),
        "audit_events": ws.metadata.verify_audit().head_seq,
    }
    if fmt is OutputFormat.json:
        print_json(data)
        return
    print_table("fedloop store", ["field", "value"], [[k, v] for k, v in data.items()])


@app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Apply pending schema migrations (refuses a database from a newer fedloop)."""
    config = state(ctx).resolved().config
    store = SqlMetadataStore(
        config.store_url(),
        busy_timeout_ms=config.store.busy_timeout_ms,
        connect_timeout_s=config.store.connect_timeout_s,
        auto_upgrade=True,
    )
    try:
        stdout.print(
            f"[bold green]✓[/] {store.safe_url} is at schema revision {store.current_revision()}"
        )
    finally:
        store.close()


@app.command("gc")
def gc(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Only report what would be deleted; delete nothing."
    ),
    min_age_s: float = typer.Option(
        3600.0,
        "--min-age-s",
        min=0.0,
        help="Keep anything modified less than this many seconds ago (uploads not yet committed).",
    ),
    actor: str = typer.Option("cli", "--actor", help="Who is doing it (audit event)."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Delete artifacts no record refers to and partial writes left under tmp/ by a crash."""
    report = collect_garbage(
        state(ctx).workspace(), min_age_s=min_age_s, dry_run=dry_run, actor=actor
    )
    if fmt is OutputFormat.json:
        print_json({**asdict(report), "digests": list(report.digests), "min_age_s": min_age_s})
        return
    verb = "to delete" if dry_run else "deleted"
    rows = [
        [f"artifacts {verb}", report.blobs_deleted],
        [f"tmp/ leftovers {verb}", report.tmp_deleted],
        [f"bytes {'to free' if dry_run else 'freed'}", report.bytes_freed],
        ["kept (referenced)", report.kept_referenced],
        ["kept (younger than --min-age-s)", report.kept_young],
    ]
    title = "fedloop store gc" + (" (dry run: nothing deleted)" if dry_run else "")
    print_table(title, ["", "count"], rows)
