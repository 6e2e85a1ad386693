"""``fedloop store``: inspect and migrate the metadata store."""

from __future__ import annotations

import typer

from fedloop.cli._context import FORMAT_OPTION, OutputFormat, print_json, print_table, state, stdout
from fedloop.store import SCHEMA_HEAD, SqlMetadataStore

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
