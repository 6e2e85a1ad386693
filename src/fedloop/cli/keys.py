"""``fedloop keys``: API keys of the control plane and the monitor (create, list, revoke)."""

from __future__ import annotations

import typer

from fedloop.cli import _credentials
from fedloop.cli._context import FORMAT_OPTION, OutputFormat

app = typer.Typer(
    help="API keys for the control plane (fedloop up) and the monitor: roles admin > "
    "operator > viewer, and client (payload logs only).",
    no_args_is_help=True,
)

ACTOR_OPTION = typer.Option("cli", "--actor", help="Who (audit log).")


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The key's name (letters, digits, _-.)."),
    role: str = typer.Option(
        ..., "--role", help="admin, operator (triggers), viewer (reads) or client (ingest)."
    ),
    actor: str = ACTOR_OPTION,
) -> None:
    """Create an API key and print it once on stdout (only its sha256 is stored)."""
    _credentials.create(ctx, "api", name, role, actor)


@app.command("list")
def list_keys(
    ctx: typer.Context,
    include_revoked: bool = typer.Option(False, "--all", help="Also list revoked keys."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """List API keys: name, role, creation, last use, revocation (never the keys)."""
    _credentials.list_(ctx, "api", include_revoked, fmt)


app.command("ls", hidden=True)(list_keys)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The key's name."),
    reason: str = typer.Option("", "--reason", help="Why (audit log)."),
    actor: str = ACTOR_OPTION,
) -> None:
    """Revoke an API key: running servers refuse it within 2 s."""
    _credentials.revoke(ctx, "api", name, actor, reason)
