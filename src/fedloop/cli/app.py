"""The ``fedloop`` command: global options, sub-commands and error rendering."""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path

import typer
from rich.markup import escape

from fedloop import __version__
from fedloop.cli import (  # noqa: F401 - federated_net/_client add `federated serve|client`
    audit,
    certs,
    config,
    federated,
    federated_client,
    federated_net,
    federated_tokens,
    keys,
    loop,
    models,
    monitor,
    runs,
    serve,
    store,
    train,
    ui,
    up,
)
from fedloop.cli._context import state, stderr
from fedloop.core import FedloopError

app = typer.Typer(
    name="fedloop",
    help="fedloop: train across nodes, register, serve, watch for drift, retrain — one closed loop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(models.app, name="models")
app.add_typer(runs.app, name="runs")
app.add_typer(federated.app, name="federated")
app.add_typer(audit.app, name="audit")
app.add_typer(store.app, name="store")
app.add_typer(config.app, name="config")
app.add_typer(monitor.app, name="monitor")
app.add_typer(loop.app, name="loop")
app.add_typer(certs.app, name="certs")
app.add_typer(keys.app, name="keys")
federated.app.add_typer(federated_tokens.app, name="tokens")
app.command("serve")(serve.serve)
app.command("up")(up.up)
app.command("train")(train.train)
app.command("ui")(ui.ui)

#: Scenario flows, imported by name only when run (the scenarios layer sits above the CLI).
SCENARIOS = {
    "quickstart": "fedloop.scenarios.fraud.quickstart:run",
    "demo": "fedloop.scenarios.fraud.demo:run",
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fedloop {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config_file: Path | None = typer.Option(
        None,
        "--config",
        help="Config file (default: ./fedloop.toml if present).",
        envvar="FEDLOOP_CONFIG",
    ),
    store_url: str | None = typer.Option(
        None, "--store-url", help="Metadata store URL (overrides store.url)."
    ),
    artifacts_url: str | None = typer.Option(
        None, "--artifacts-url", help="Artifact store URL (overrides store.artifacts_url)."
    ),
    project: str | None = typer.Option(
        None, "--project", help="Project name (overrides project.name)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Global options; every command reads the same resolved config."""
    cli_state = state(ctx)
    cli_state.config_file = config_file
    cli_state.overrides = {
        "store.url": store_url,
        "store.artifacts_url": artifacts_url,
        "project.name": project,
    }
    ctx.call_on_close(cli_state.close)


@app.command("quickstart")
def quickstart(
    ctx: typer.Context,
    rows: int = typer.Option(
        40_000, "--rows", min=2_000, max=2_000_000, help="Synthetic transactions."
    ),
    epochs: int = typer.Option(3, "--epochs", min=1, max=100, help="Training epochs."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Train a fraud model, track it, register it with lineage, promote it and verify the audit log."""
    module_name, _, func_name = SCENARIOS["quickstart"].partition(":")
    flow = getattr(importlib.import_module(module_name), func_name)
    flow(state(ctx).workspace(), rows=rows, epochs=epochs, seed=seed)


@app.command("demo")
def demo(
    ctx: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="A smaller, faster run (about a minute)."),
    directory: Path = typer.Option(
        Path(".fedloop-demo"), "--dir", help="A fresh project folder for the demo (replaced)."
    ),
    report: Path = typer.Option(Path("demo-report.html"), "--report", help="The HTML report."),
) -> None:
    """Card fraud across 5 banks: federated training, serving, a shift, the loop closing itself."""
    module_name, _, func_name = SCENARIOS["demo"].partition(":")
    flow = getattr(importlib.import_module(module_name), func_name)
    result = flow(directory, quick=quick, report=report)
    if result.promoted_version is None:
        raise typer.Exit(1)


def main() -> None:
    """Run the CLI, rendering fedloop errors as one headline plus a hint (no traceback)."""
    try:
        # Standalone mode: typer/click render usage errors themselves (exit 2) and exit via
        # SystemExit; our own errors and bugs come out of app() as exceptions.
        app(prog_name="fedloop")
    except FedloopError as err:
        stderr.print(f"[bold red]Error ({err.code}):[/] {escape(err.message)}")
        if err.hint:
            stderr.print(f"[bold]Hint:[/] {escape(err.hint)}")
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        stderr.print("[bold red]Interrupted.[/]")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception:  # the last resort: show what happened
        stderr.print("[bold red]Internal error[/] — please report it with this traceback:")
        stderr.print(escape(traceback.format_exc()))
        sys.exit(1)
