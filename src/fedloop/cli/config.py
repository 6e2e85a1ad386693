"""``fedloop config``: show every effective setting and where it came from."""

from __future__ import annotations

import typer

from fedloop.cli._context import FORMAT_OPTION, OutputFormat, print_json, print_table, state
from fedloop.core import flatten_config

app = typer.Typer(
    help="Configuration (flag > FEDLOOP_* env > fedloop.toml > default).", no_args_is_help=True
)


@app.command("show")
def show(ctx: typer.Context, fmt: OutputFormat = FORMAT_OPTION) -> None:
    """Print every effective config value and its source.

    Lists of tables show one row per key of each entry: ``automation.policies[0].name``.
    """
    resolved = state(ctx).resolved()
    values = flatten_config(resolved.config.model_dump(mode="json"))
    if fmt is OutputFormat.json:
        print_json(
            {
                k: {"value": v, "source": resolved.sources.get(k, "default")}
                for k, v in values.items()
            }
        )
        return
    print_table(
        "Effective configuration",
        ["key", "value", "source"],
        [[k, v, resolved.sources.get(k, "default")] for k, v in sorted(values.items())],
    )
