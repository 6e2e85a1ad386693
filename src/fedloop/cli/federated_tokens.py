"""``fedloop federated tokens``: federated clients' enrollment tokens in the store."""

from __future__ import annotations

import typer

from fedloop.cli import _credentials
from fedloop.cli._context import FORMAT_OPTION, OutputFormat

app = typer.Typer(
    help="Enrollment tokens of federated clients, kept in the store; `fedloop federated serve` "
    "without --token-file authenticates clients with them.",
    no_args_is_help=True,
)

ACTOR_OPTION = typer.Option("cli", "--actor", help="Who (audit log).")


@app.command("create")
def create(
    ctx: typer.Context,
    client_id: str = typer.Argument(..., help="The client's id (letters, digits, _-.)."),
    actor: str = ACTOR_OPTION,
) -> None:
    """Enroll a client: print its token once on stdout (only its sha256 is stored)."""
    _credentials.create(ctx, "client", client_id, None, actor)


@app.command("list")
def list_tokens(
    ctx: typer.Context,
    include_revoked: bool = typer.Option(False, "--all", help="Also list revoked tokens."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """List enrolled clients: creation, last use, revocation (never the tokens)."""
    _credentials.list_(ctx, "client", include_revoked, fmt)


app.command("ls", hidden=True)(list_tokens)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    client_id: str = typer.Argument(..., help="The client's id."),
    reason: str = typer.Option("", "--reason", help="Why (audit log)."),
    actor: str = ACTOR_OPTION,
) -> None:
    """Revoke a client's token: a running coordinator refuses it within 2 s (401)."""
    _credentials.revoke(ctx, "client", client_id, actor, reason)
