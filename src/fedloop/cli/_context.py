"""What every CLI command shares: the resolved config, the open workspace and output helpers."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from fedloop.core import FedloopConfig, ResolvedConfig
from fedloop.store import Workspace, load_config, open_workspace

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


class OutputFormat(StrEnum):
    """How read commands print their result."""

    table = "table"
    json = "json"


FORMAT_OPTION = typer.Option(OutputFormat.table, "--format", "-f", help="table or json (stdout).")


@dataclass
class CliState:
    """Global options, turned into a config and a workspace on first use."""

    config_file: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    _resolved: ResolvedConfig | None = None
    _workspace: Workspace | None = None

    def resolved(self) -> ResolvedConfig:
        """Return the effective config (read once)."""
        if self._resolved is None:
            self._resolved = load_config(
                cwd=Path.cwd(),
                environ=os.environ,
                overrides=self.overrides,
                config_file=self.config_file,
            )
        return self._resolved

    def workspace(self) -> Workspace:
        """Return the open workspace (opened once, closed at exit)."""
        if self._workspace is None:
            self._workspace = open_workspace(self.resolved().config)
        return self._workspace

    def close(self) -> None:
        """Close the workspace if it was opened."""
        if self._workspace is not None:
            self._workspace.close()
            self._workspace = None


def state(ctx: typer.Context) -> CliState:
    """Return the CLI state stored on the root context."""
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = CliState()
        ctx.find_root().obj = obj
    return obj


def print_json(data: Any) -> None:
    """Print JSON on stdout (machine-readable output)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print a rich table on stdout."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    stdout.print(table)


def fmt_time(value: Any) -> str:
    """Format a datetime for tables (seconds precision, UTC)."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def absolute_paths(config: FedloopConfig) -> FedloopConfig:
    """Return ``config`` with the store and artifact locations made absolute.

    For configs handed to another process (server workers, an app factory), whose working
    directory may differ.
    """
    store = config.store.model_copy(
        update={"url": config.store_url(), "artifacts_url": config.artifacts_url()}
    )
    return config.model_copy(update={"store": store})
