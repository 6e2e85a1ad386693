"""``fedloop loop``: the closed loop's actions — list them, trigger a policy by hand."""

from __future__ import annotations

import typer
from rich.markup import escape

from fedloop.cli._context import (
    FORMAT_OPTION,
    OutputFormat,
    fmt_time,
    print_json,
    print_table,
    state,
    stdout,
)

app = typer.Typer(
    help="The closed loop: policies' actions and manual triggers.", no_args_is_help=True
)


@app.command("list")
def list_actions(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", help="One model only."),
    policy: str | None = typer.Option(None, "--policy", help="One policy only."),
    open_only: bool = typer.Option(False, "--open", help="Only actions in progress."),
    limit: int = typer.Option(50, "--limit", min=1, help="Newest actions shown."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """List the loop's actions: trigger, state, versions, last reason (newest last)."""
    ws = state(ctx).workspace()
    found = ws.metadata.list_loop_actions(
        model_name=model, policy=policy, open_only=open_only, limit=limit
    )
    if fmt is OutputFormat.json:
        print_json([a.to_dict() for a in found])
        return
    rows = [
        [
            a.id[:8],
            a.policy,
            a.model_name,
            f"{a.trigger_kind} ({a.trigger_ref})",
            a.state,
            f"v{a.champion_version}" if a.champion_version else "-",
            f"v{a.challenger_version}" if a.challenger_version else "-",
            fmt_time(a.updated_at),
        ]
        for a in found
    ]
    print_table(
        "loop actions",
        ["id", "policy", "model", "trigger", "state", "champion", "challenger", "updated"],
        rows,
    )


@app.command("trigger")
def trigger(
    ctx: typer.Context,
    policy: str = typer.Argument(..., help="Policy name ([[automation.policies]] name)."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit log)."),
    actor: str = typer.Option("cli", "--actor", help="Who (audit)."),
) -> None:
    """Trigger a policy now; the running controller (fedloop up) carries the action out."""
    from fedloop.automation import trigger_policy

    cli_state = state(ctx)
    config = cli_state.resolved().config
    policies = {p.name: p for p in config.automation.policies if p.enabled}
    action = trigger_policy(
        cli_state.workspace(), policies, policy, reason=reason or "manual trigger", actor=actor
    )
    stdout.print(
        f"[bold green]✓[/] {escape(policy)}: action {action.id[:8]} triggered "
        f"(champion v{action.champion_version})"
    )
