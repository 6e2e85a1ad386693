"""``fedloop audit``: verify and list the hash-chained audit log."""

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
from fedloop.core import AuditChainBroken

app = typer.Typer(help="The append-only audit log.", no_args_is_help=True)


@app.command("verify")
def verify(
    ctx: typer.Context,
    expect_head: str | None = typer.Option(
        None,
        "--expect-head",
        help="A head hash recorded earlier; also fail if the chain no longer ends there.",
    ),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Recompute every event hash; fail (exit 5) on any edited, inserted or deleted event."""
    report = state(ctx).workspace().metadata.verify_audit()
    if fmt is OutputFormat.json:
        print_json(asdict(report))
    if not report.ok:
        raise AuditChainBroken(
            f"the audit log is broken at event {report.first_bad_seq}: {report.reason}.",
            field="events",
            value=report.first_bad_seq,
            hint="Restore the database from a backup; events from this one on cannot be trusted.",
        )
    if expect_head is not None and expect_head != report.head_hash:
        raise AuditChainBroken(
            f"the audit log ends at {report.head_hash[:16]}…, not at the expected {expect_head[:16]}….",
            field="expect_head",
            hint="Events after the recorded head were removed or the log was rewritten.",
        )
    if fmt is OutputFormat.table:
        stdout.print(
            f"[bold green]✓[/] audit log intact: {report.checked} events, head {report.head_hash}"
        )


@app.command("list")
def list_events(
    ctx: typer.Context,
    kind: str | None = typer.Option(
        None, "--kind", help="Event kind; a trailing * matches a prefix."
    ),
    subject: str | None = typer.Option(None, "--subject", help="Only events about this subject."),
    after: int = typer.Option(0, "--after", min=0, help="Only events after this sequence number."),
    limit: int = typer.Option(100, "--limit", min=1, max=100_000, help="At most this many."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """List audit events, oldest first."""
    events = (
        state(ctx)
        .workspace()
        .metadata.list_events(kind=kind, subject=subject, after_seq=after, limit=limit)
    )
    if fmt is OutputFormat.json:
        print_json([asdict(e) for e in events])
        return
    print_table(
        "Audit events",
        ["seq", "at", "kind", "subject", "actor", "hash"],
        [[e.seq, fmt_time(e.at), e.kind, e.subject, e.actor, e.hash[:12]] for e in events],
    )


app.command("ls", hidden=True)(list_events)
