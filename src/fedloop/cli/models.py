"""``fedloop models``: list, show, promote, rollback, lineage and export registered models."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from fedloop.cli._context import (
    FORMAT_OPTION,
    OutputFormat,
    fmt_time,
    print_json,
    print_table,
    state,
    stderr,
    stdout,
)
from fedloop.registry import CHAMPION, ModelRegistry, parse_ref, write_package
from fedloop.store import ModelVersion

app = typer.Typer(help="Registered models: versions, aliases, lineage.", no_args_is_help=True)


def _registry(ctx: typer.Context) -> ModelRegistry:
    ws = state(ctx).workspace()
    return ModelRegistry(ws.metadata, ws.artifacts, ws.project)


def _version_dict(mv: ModelVersion) -> dict[str, object]:
    data = asdict(mv)
    data["signature"] = mv.signature.model_dump(mode="json")
    return data


@app.command("list")
def list_models(ctx: typer.Context, fmt: OutputFormat = FORMAT_OPTION) -> None:
    """List registered models with their latest version and aliases."""
    models = _registry(ctx).list_models()
    if fmt is OutputFormat.json:
        print_json([asdict(m) for m in models])
        return
    print_table(
        "Registered models",
        ["name", "latest", "aliases", "created"],
        [
            [
                m.name,
                m.latest_version,
                ", ".join(f"{a}→v{v}" for a, v in m.aliases.items()),
                fmt_time(m.created_at),
            ]
            for m in models
        ],
    )


app.command("ls", hidden=True)(list_models)


@app.command("show")
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME (all versions), NAME:VERSION or NAME@ALIAS."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Show a model's versions, or one version in detail."""
    registry = _registry(ctx)
    parsed = parse_ref(ref)
    if parsed.alias is None and parsed.version is None:
        versions = registry.list_versions(parsed.name)
        if fmt is OutputFormat.json:
            print_json([_version_dict(v) for v in versions])
            return
        print_table(
            f"Model {parsed.name}",
            ["version", "aliases", "metrics", "run", "parent", "created"],
            [
                [
                    v.version,
                    ", ".join(v.aliases),
                    ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items())),
                    (v.run_id or "")[:8],
                    (v.parent_version_id or "")[:8],
                    fmt_time(v.created_at),
                ]
                for v in versions
            ],
        )
        return
    mv = registry.get(parsed)
    if fmt is OutputFormat.json:
        print_json(_version_dict(mv))
        return
    rows: list[list[Any]] = [
        ["model", mv.model_name],
        ["version", mv.version],
        ["id", mv.id],
        ["aliases", ", ".join(mv.aliases)],
        ["run", mv.run_id],
        ["created", fmt_time(mv.created_at)],
        ["weights sha256", mv.weights_digest],
        ["onnx sha256", mv.onnx_digest],
    ]
    rows += [[f"input {s.name}", f"{s.dtype} {list(s.shape)}"] for s in mv.signature.inputs]
    rows += [[f"output {s.name}", f"{s.dtype} {list(s.shape)}"] for s in mv.signature.outputs]
    rows += [[f"metric {k}", f"{v:.6g}"] for k, v in sorted(mv.metrics.items())]
    rows += [[f"tag {k}", v] for k, v in sorted(mv.tags.items())]
    if mv.privacy:
        rows += [[f"privacy {k}", v] for k, v in sorted(mv.privacy.items())]
    print_table(f"{mv.model_name} v{mv.version}", ["field", "value"], rows)


@app.command("promote")
def promote(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., min=1, help="Version to point the alias at."),
    alias: str = typer.Option(CHAMPION, "--alias", "-a", help="Alias to move."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the history and audit log)."),
    actor: str = typer.Option("cli", "--actor", help="Who is doing it."),
) -> None:
    """Point an alias (default: champion) at a version, atomically and with history."""
    change = _registry(ctx).promote(name, version, alias=alias, actor=actor, reason=reason)
    before = f"v{change.from_version}" if change.from_version is not None else "(unset)"
    stdout.print(f"[bold green]✓[/] {name}@{alias}: {before} → v{change.to_version}")


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name."),
    alias: str = typer.Option(CHAMPION, "--alias", "-a", help="Alias to roll back."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the history and audit log)."),
    actor: str = typer.Option("cli", "--actor", help="Who is doing it."),
) -> None:
    """Move an alias back to the version it pointed at before."""
    change = _registry(ctx).rollback(name, alias=alias, actor=actor, reason=reason)
    stdout.print(f"[bold yellow]↩[/] {name}@{alias}: v{change.from_version} → v{change.to_version}")


@app.command("history")
def history(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Model name."),
    alias: str | None = typer.Option(None, "--alias", "-a", help="Only this alias."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Show every alias move of a model."""
    moves = _registry(ctx).alias_history(name, alias)
    if fmt is OutputFormat.json:
        print_json([asdict(m) for m in moves])
        return
    print_table(
        f"Alias history of {name}",
        ["at", "alias", "from", "to", "action", "actor", "reason"],
        [
            [fmt_time(m.at), m.alias, m.from_version, m.to_version, m.action, m.actor, m.reason]
            for m in moves
        ],
    )


@app.command("lineage")
def lineage(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME:VERSION, NAME@ALIAS or NAME (latest)."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Show where a version came from: run, data sets, contributors, ancestors, alias moves."""
    registry = _registry(ctx)
    mv = registry.get(ref)
    info = registry.lineage(mv.model_name, mv.version).to_dict()
    if fmt is OutputFormat.json:
        print_json(info)
        return
    from rich.tree import Tree

    tree = Tree(f"[bold]{mv.model_name} v{mv.version}[/]  aliases: {', '.join(mv.aliases) or '-'}")
    run = info["run"]
    if run:
        node = tree.add(f"run [cyan]{run['name']}[/] ({run['kind']}, {run['status']}) {run['id']}")
        for key, value in sorted(run["params"].items()):
            node.add(f"{key} = {value}")
    data = tree.add("data sets")
    for d in info["datasets"]:
        data.add(f"{d['name']} ({d['role']}, {d['rows']} rows) sha256 {d['fingerprint'][:12]}…")
    if info["contributors"]:
        contrib = tree.add("contributors")
        for c in info["contributors"]:
            contrib.add(
                f"{c['id']} ({c['kind']}) rounds {c['rounds']} examples {c['num_examples']}"
            )
    if info["privacy"]:
        tree.add(f"privacy {info['privacy']}")
    anc = tree.add("ancestors")
    for a in info["ancestors"]:
        anc.add(f"v{a['version']}")
    moves = tree.add("alias moves")
    for h in info["alias_history"]:
        moves.add(
            f"{h['at'][:19]} {h['alias']}: {h['from']} → {h['to']} ({h['action']}, {h['actor']})"
        )
    stdout.print(tree)


@app.command("export")
def export(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME:VERSION, NAME@ALIAS or NAME (latest)."),
    folder: Path = typer.Argument(..., help="Folder to write the package to."),
) -> None:
    """Write a version's package (weights, ONNX graph, signature, manifest) to a folder."""
    package = _registry(ctx).package(ref)
    write_package(package, folder)
    stderr.print(f"[bold green]✓[/] wrote {folder}")
