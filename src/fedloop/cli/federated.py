"""``fedloop federated``: simulate federated training, inspect rounds and clients."""

from __future__ import annotations

import importlib
from dataclasses import asdict

import typer

from fedloop.cli._context import (
    FORMAT_OPTION,
    OutputFormat,
    fmt_time,
    print_json,
    print_table,
    state,
)
from fedloop.core import RunId

app = typer.Typer(help="Federated training: simulate, rounds, clients.", no_args_is_help=True)

#: Flows of the scenarios layer, imported by name on use (that layer sits above the CLI).
SIMULATIONS = {"fraud": "fedloop.scenarios.fraud.federated:simulate"}


@app.command("simulate")
def simulate(
    ctx: typer.Context,
    scenario: str = typer.Option("fraud", "--scenario", help=f"One of: {', '.join(SIMULATIONS)}."),
    clients: int = typer.Option(
        10, "--clients", min=1, max=100_000, help="Virtual clients (silos)."
    ),
    rounds: int | None = typer.Option(
        None, "--rounds", min=1, help="Overrides federated.num_rounds."
    ),
    clients_per_round: int | None = typer.Option(
        None, "--clients-per-round", min=1, help="Overrides federated.clients_per_round."
    ),
    strategy: str | None = typer.Option(
        None, "--strategy", help="Overrides strategy.name (fedavg, fedprox, …)."
    ),
    rows: int = typer.Option(200_000, "--rows", min=1_000, help="Synthetic rows before the split."),
    partition: str = typer.Option("dirichlet", "--partition", help="dirichlet or iid."),
    alpha: float = typer.Option(0.5, "--alpha", min=1e-6, help="Dirichlet concentration."),
    seed: int | None = typer.Option(None, "--seed", min=0, help="Overrides federated.seed."),
    resume: str | None = typer.Option(
        None, "--resume", help="Continue this run from its last round."
    ),
    register: bool = typer.Option(
        True, "--register/--no-register", help="Register the final model."
    ),
    backend: str = typer.Option(
        "local",
        "--backend",
        help="local (worker processes), inprocess (one process) or ray (extra `ray`).",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        max=512,
        help="Worker processes (local) or actors (ray); default one per CPU.",
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="Join this Ray cluster (auto or ray://host:10001) instead of starting Ray here.",
    ),
) -> None:
    """Run a federated simulation with the coordinator checkpointing every round."""
    if scenario not in SIMULATIONS:
        raise typer.BadParameter(
            f"unknown scenario {scenario!r}; choose from {', '.join(SIMULATIONS)}"
        )
    if partition not in ("dirichlet", "iid"):
        raise typer.BadParameter("--partition must be dirichlet or iid")
    if backend not in ("local", "inprocess", "ray"):
        raise typer.BadParameter("--backend must be local, inprocess or ray")
    if ray_address is not None and backend != "ray":
        raise typer.BadParameter("--ray-address needs --backend ray")
    cli_state = state(ctx)
    cli_state.overrides.update(
        {
            "federated.num_rounds": rounds,
            "federated.clients_per_round": clients_per_round,
            "federated.seed": seed,
            "strategy.name": strategy,
        }
    )
    module_name, _, func_name = SIMULATIONS[scenario].partition(":")
    flow = getattr(importlib.import_module(module_name), func_name)
    flow(
        cli_state.workspace(),
        cli_state.resolved().config,
        num_clients=clients,
        rows=rows,
        partition=partition,
        alpha=alpha,
        resume=RunId(resume) if resume else None,
        register=register,
        backend=backend,
        num_workers=workers,
        ray_address=ray_address,
    )


@app.command("rounds")
def rounds_cmd(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Federated run id."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Show every round of a federated run: participants, dropouts, bytes, time, metrics."""
    ws = state(ctx).workspace()
    found = ws.metadata.list_fl_rounds(RunId(run_id))
    if fmt is OutputFormat.json:
        print_json([asdict(r) for r in found])
        return
    print_table(
        f"Rounds of {run_id}",
        ["round", "status", "ok", "failed", "MB up", "MB down", "s", "metrics", "at"],
        [
            [
                r.round,
                r.status,
                r.num_succeeded,
                r.num_failed,
                f"{r.bytes_up / 1e6:.2f}",
                f"{r.bytes_down / 1e6:.2f}",
                f"{r.seconds:.2f}",
                ", ".join(
                    f"{k}={v:.4g}"
                    for k, v in sorted(r.metrics.items())
                    if k in ("train_loss", "eval_auc")
                ),
                fmt_time(r.created_at),
            ]
            for r in found
        ],
    )


@app.command("clients")
def clients_cmd(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="Federated run id."),
    round_num: int | None = typer.Option(None, "--round", min=0, help="Only this round."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Show per-client summaries of a federated run (never data or raw updates)."""
    ws = state(ctx).workspace()
    found = ws.metadata.list_fl_client_rounds(RunId(run_id), round_num=round_num)
    if fmt is OutputFormat.json:
        print_json([{"round": r, **asdict(c)} for r, c in found])
        return
    print_table(
        f"Clients of {run_id}",
        ["round", "client", "status", "examples", "loss", "s", "reason"],
        [
            [
                r,
                c.client_id,
                c.status,
                c.num_examples,
                f"{c.metrics.get('loss', float('nan')):.4f}",
                f"{c.seconds:.2f}",
                c.reason or "",
            ]
            for r, c in found
        ],
    )
