"""``fedloop train``: data-parallel training (PyTorch DDP) across worker processes, elastically."""

from __future__ import annotations

import importlib

import typer

from fedloop.cli._context import state
from fedloop.core import RunId

#: Flows of the scenarios layer, imported by name on use (that layer sits above the CLI).
TRAININGS = {"fraud": "fedloop.scenarios.fraud.distributed:train"}


def train(
    ctx: typer.Context,
    scenario: str = typer.Option("fraud", "--scenario", help=f"One of: {', '.join(TRAININGS)}."),
    workers: int | None = typer.Option(
        None, "--workers", help="Worker processes (DDP ranks); overrides distributed.workers."
    ),
    epochs: int = typer.Option(3, "--epochs", min=1, max=10_000, help="Passes over the data."),
    rows: int = typer.Option(200_000, "--rows", min=1_000, help="Synthetic rows before the split."),
    seed: int = typer.Option(0, "--seed", min=0, help="Data, initialization and sampler seed."),
    checkpoint_every: int | None = typer.Option(
        None,
        "--checkpoint-every",
        help="Steps between checkpoints (distributed.checkpoint_every_steps).",
    ),
    max_restarts: int | None = typer.Option(
        None, "--max-restarts", help="Group restarts after a failure (distributed.max_restarts)."
    ),
    launcher: str | None = typer.Option(
        None, "--launcher", help="elastic (this machine) or ray (extra `ray`)."
    ),
    backend: str | None = typer.Option(None, "--backend", help="auto, gloo or nccl."),
    rendezvous: str | None = typer.Option(
        None, "--rendezvous", help="c10d host:port (default 127.0.0.1:0, a free local port)."
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster to join with --launcher ray (auto, ray://…)."
    ),
    resume: str | None = typer.Option(
        None, "--resume", help="Continue this run from its last checkpoint."
    ),
    register: bool = typer.Option(
        True, "--register/--no-register", help="Register the final model."
    ),
) -> None:
    """Train data-parallel with PyTorch DDP; a killed worker restarts the group from a checkpoint."""
    if scenario not in TRAININGS:
        raise typer.BadParameter(
            f"unknown scenario {scenario!r}; choose from {', '.join(TRAININGS)}"
        )
    cli_state = state(ctx)
    cli_state.overrides.update(
        {
            "distributed.workers": workers,
            "distributed.checkpoint_every_steps": checkpoint_every,
            "distributed.max_restarts": max_restarts,
            "distributed.launcher": launcher,
            "distributed.backend": backend,
            "distributed.rendezvous": rendezvous,
            "distributed.ray_address": ray_address,
        }
    )
    config = cli_state.resolved().config
    module_name, _, func_name = TRAININGS[scenario].partition(":")
    flow = getattr(importlib.import_module(module_name), func_name)
    flow(
        cli_state.workspace(),
        config,
        rows=rows,
        epochs=epochs,
        seed=seed,
        resume=RunId(resume) if resume else None,
        register=register,
    )
