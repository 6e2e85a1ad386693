"""What ``fedloop keys`` and ``fedloop federated tokens`` share: create, list and revoke."""

from __future__ import annotations

import typer
from rich.markup import escape

from fedloop.cli._context import (
    OutputFormat,
    fmt_time,
    print_json,
    print_table,
    state,
    stderr,
)
from fedloop.core import CredentialKind
from fedloop.store import DEFAULT_CACHE_S

_WHAT = {"client": "enrollment token", "api": "API key"}


def create(
    ctx: typer.Context, kind: CredentialKind, name: str, role: str | None, actor: str
) -> None:
    """Create a credential and print its token on stdout, once."""
    credential, token = (
        state(ctx).workspace().metadata.create_credential(kind, name, role=role, actor=actor)
    )
    typer.echo(token)
    stderr.print(
        f"[bold green]✓[/] {_WHAT[kind]} for {escape(credential.name)} (role {credential.role}) "
        "created. [bold]Store it now:[/] it is not shown again, only its sha256 is kept."
    )


def list_(
    ctx: typer.Context, kind: CredentialKind, include_revoked: bool, fmt: OutputFormat
) -> None:
    """Print the credentials of ``kind`` as a table or JSON."""
    found = (
        state(ctx).workspace().metadata.list_credentials(kind=kind, include_revoked=include_revoked)
    )
    if fmt is OutputFormat.json:
        print_json([c.to_dict() for c in found])
        return
    rows = [
        [
            c.name,
            c.role,
            fmt_time(c.created_at),
            c.created_by,
            fmt_time(c.last_used_at) or "never",
            f"{fmt_time(c.revoked_at)} by {c.revoked_by}" if c.revoked_at else "",
        ]
        for c in found
    ]
    print_table(f"{_WHAT[kind]}s", ["name", "role", "created", "by", "last used", "revoked"], rows)


def revoke(ctx: typer.Context, kind: CredentialKind, name: str, actor: str, reason: str) -> None:
    """Revoke the active credential of ``kind`` named ``name``."""
    credential = (
        state(ctx).workspace().metadata.revoke_credential(kind, name, actor=actor, reason=reason)
    )
    stderr.print(
        f"[bold green]✓[/] {_WHAT[kind]} of {escape(credential.name)} revoked; running servers "
        f"refuse it within {DEFAULT_CACHE_S:g} s."
    )
