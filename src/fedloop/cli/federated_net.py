"""``fedloop federated serve``: coordinate a federation over the network (clients: ``federated_client``)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from fedloop.cli import federated
from fedloop.cli._context import state, stderr
from fedloop.cli._federated_models import (
    MODEL_HELP,
    adapter_factory,
    default_model_name,
    load_table_for,
    parse_model_spec,
)
from fedloop.cli.certs import certs_dir
from fedloop.core import ConfigError, DatasetId, Parameters, RunId

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from fedloop.federated.coordinator import RoundReport
    from fedloop.federated.transports import HttpTransport
    from fedloop.learn import DataProfile, ModelAdapter
    from fedloop.store import StoreAuthenticator, Workspace

__all__ = ["default_model_name", "parse_model_spec", "serve"]


def _tokens(token_file: Path | None, enroll: int | None) -> tuple[dict[str, str] | None, bool]:
    """Return the token file's tokens (fresh ones with ``enroll``), or None: use the store's."""
    from fedloop.federated.transports import generate_tokens, read_token_file

    if token_file is None:
        if enroll is not None:
            raise ConfigError(
                "--enroll writes the new tokens to a file; --token-file is missing.",
                field="token_file",
                hint="Add --token-file tokens.json, or enroll clients in the store with "
                "`fedloop federated tokens create CLIENT_ID`.",
            )
        return None, False
    if enroll is None:
        return read_token_file(token_file), False
    if token_file.exists():
        raise ConfigError(
            f"token file {token_file} exists already; --enroll would replace every token.",
            field="token_file",
            hint="Drop --enroll to reuse it, or delete it first.",
        )
    return generate_tokens(f"client-{i:03d}" for i in range(1, enroll + 1)), True


def _store_authenticator(ws: Workspace) -> StoreAuthenticator:
    """Authenticate clients by the store's enrollment tokens (revocations apply while serving)."""
    from fedloop.store import DEFAULT_CACHE_S, StoreAuthenticator

    enrolled = ws.metadata.list_credentials(kind="client")
    stderr.print(
        f"Clients authenticate with the store's enrollment tokens ({len(enrolled)} enrolled; "
        f"`fedloop federated tokens create|revoke` apply within {DEFAULT_CACHE_S:g} s)."
    )
    if not enrolled:
        stderr.print(
            "[yellow]No client is enrolled yet:[/] `fedloop federated tokens create CLIENT_ID` "
            "prints a client's token."
        )
    return StoreAuthenticator(ws.metadata, "client")


def _round_line(report: RoundReport, num_rounds: int) -> str:
    metrics = report.metrics
    shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in ("eval_auc", "train_loss") if k in metrics)
    dropped = ", ".join(f"{c}: {why}" for c, why in sorted(report.dropped.items()))
    return (
        f"round {report.round_num}/{num_rounds} {report.status}: "
        f"{len(report.participants)} clients"
        + (f" ({len(report.dropped)} dropped — {dropped})" if dropped else "")
        + (f", {shown}" if shown else "")
        + f", {report.seconds:.1f} s"
    )


def _say_tls(transport: HttpTransport, *, insecure_plaintext: bool) -> None:
    """Tell the operator how clients verify the server, and what they must present."""
    if transport.certfile is None:
        if insecure_plaintext:
            stderr.print(
                "[bold red]WARNING: serving clear text (--insecure-plaintext).[/] Tokens and "
                "weights are readable on the network unless a proxy in front terminates TLS."
            )
        return
    if transport.ca_file is not None:
        from fedloop.federated.transports import describe_certificate

        info = describe_certificate(transport.certfile.read_bytes())
        names = ", ".join([*info["dns_names"], *info["ip_addresses"]])
        stderr.print(
            f"TLS with the workspace CA (certificate for {escape(names)}; more with "
            f"--tls-san). Clients verify it with --ca-file "
            f"{escape(str(transport.ca_file.resolve()))}"
        )
    if transport.client_ca is not None:
        stderr.print(
            f"Clients must present a certificate from {escape(str(transport.client_ca))} naming "
            "their client id (--tls-cert/--tls-key; `fedloop certs client --name CLIENT_ID`)."
        )


@federated.app.command("serve")
def serve(
    ctx: typer.Context,
    token_file: Path | None = typer.Option(
        None,
        "--token-file",
        help="JSON client id -> token (written 0600 with --enroll). Without it, clients "
        "enrolled in the store (fedloop federated tokens create) authenticate.",
    ),
    enroll: int | None = typer.Option(
        None, "--enroll", min=1, max=10_000, help="Enroll N clients: write fresh tokens."
    ),
    rounds: int | None = typer.Option(
        None, "--rounds", min=1, help="Overrides federated.num_rounds."
    ),
    clients_per_round: int | None = typer.Option(
        None, "--clients-per-round", min=1, help="Overrides federated.clients_per_round."
    ),
    min_clients: int | None = typer.Option(
        None, "--min-clients", min=1, help="Overrides federated.min_clients."
    ),
    round_timeout: float | None = typer.Option(
        None, "--round-timeout", min=0.1, help="Overrides federated.round_timeout_s (seconds)."
    ),
    local_epochs: int | None = typer.Option(
        None, "--local-epochs", min=1, help="Overrides federated.local_epochs."
    ),
    strategy: str | None = typer.Option(None, "--strategy", help="Overrides strategy.name."),
    seed: int | None = typer.Option(None, "--seed", min=0, help="Overrides federated.seed."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (TLS if public)."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="TCP port (0: any free)."),
    tls_cert: Path | None = typer.Option(
        None, "--tls-cert", help="PEM certificate (chain); default: one from the workspace CA."
    ),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="PEM private key."),
    tls: bool = typer.Option(False, "--tls", help="TLS on loopback too (always off loopback)."),
    tls_san: list[str] = typer.Option(
        [], "--tls-san", help="Host name or IP clients use, for the workspace certificate."
    ),
    client_ca: Path | None = typer.Option(
        None, "--client-ca", help="Require client certificates from this CA, named by client id."
    ),
    insecure_plaintext: bool = typer.Option(
        False, "--insecure-plaintext", help="No TLS off loopback: only behind a TLS proxy."
    ),
    model: str = typer.Option("mlp:30,64,32", "--model", help=MODEL_HELP),
    eval_data: Path | None = typer.Option(
        None, "--eval-data", help="CSV/Parquet evaluated centrally after each round."
    ),
    label: str = typer.Option("is_fraud", "--label", help="Label column of --eval-data."),
    wait_clients: int | None = typer.Option(
        None, "--wait-clients", min=1, help="Clients to wait for before round 1 (default: min)."
    ),
    wait_timeout: float = typer.Option(
        300.0, "--wait-timeout", min=0.0, help="Seconds to wait for them."
    ),
    heartbeat_timeout: float = typer.Option(
        30.0, "--heartbeat-timeout", min=1.0, max=3600.0, help="Drop a silent client after (s)."
    ),
    name: str = typer.Option("federated-net", "--name", help="Run name."),
    resume: str | None = typer.Option(
        None, "--resume", help="Continue this run from its last recorded round."
    ),
    model_name: str | None = typer.Option(
        None,
        "--model-name",
        help="Registered model name for the final model (default: federated-<model spec>).",
    ),
    register: bool = typer.Option(
        True, "--register/--no-register", help="Register the final model with its lineage."
    ),
) -> None:
    """Coordinate a federated run over HTTP/2 (TLS or h2c); clients connect to it from silos.

    The final model is registered with its contributors (clients and rounds); the model's
    first version becomes champion.
    """
    from fedloop.federated.coordinator import Coordinator
    from fedloop.federated.profiling import collect_profile
    from fedloop.federated.strategies import make_strategy
    from fedloop.federated.transports import HttpTransport, write_token_file
    from fedloop.store import check_name

    if tls and insecure_plaintext:
        raise ConfigError(
            "--tls and --insecure-plaintext contradict each other.",
            field="tls",
            hint="Drop one of them.",
        )
    cli_state = state(ctx)
    cli_state.overrides.update(
        {
            "federated.num_rounds": rounds,
            "federated.clients_per_round": clients_per_round,
            "federated.min_clients": min_clients,
            "federated.round_timeout_s": round_timeout,
            "federated.local_epochs": local_epochs,
            "federated.seed": seed,
            "strategy.name": strategy,
        }
    )
    config = cli_state.resolved().config
    fed = config.federated
    in_features, make_adapter = adapter_factory(model)
    registered_name = check_name(model_name or default_model_name(model), field="model_name")
    evaluate: Callable[[Parameters], Mapping[str, float]] | None = None
    eval_set: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None = None
    if eval_data is not None:
        eval_set = load_table_for(eval_data, label, in_features)
        x_eval, y_eval = eval_set
        evaluator = make_adapter(fed.seed)

        def evaluate(params: Parameters) -> Mapping[str, float]:
            evaluator.set_parameters(params)
            return evaluator.evaluate(x_eval, y_eval)

    strategy_obj = make_strategy(config.strategy.name, **config.strategy.params)
    tokens, fresh = _tokens(token_file, enroll)
    ws = cli_state.workspace()
    authenticator = None if tokens is not None else _store_authenticator(ws)
    datasets = _eval_dataset(ws, eval_data, eval_set, label)
    transport = HttpTransport(
        host=host,
        port=port,
        tokens=tokens,
        authenticator=authenticator,
        tls_certfile=tls_cert,
        tls_keyfile=tls_key,
        tls=False if insecure_plaintext else (True if tls else None),
        client_ca=client_ca,
        tls_dir=certs_dir(ctx),
        tls_sans=tls_san,
        heartbeat_timeout_s=heartbeat_timeout,
    )
    with contextlib.closing(transport):
        _say_tls(transport, insecure_plaintext=insecure_plaintext)
        if fresh and token_file is not None and tokens is not None:
            write_token_file(token_file, tokens)
            stderr.print(f"Enrolled {len(tokens)} clients; tokens in {escape(str(token_file))}")
        needed = wait_clients or fed.min_clients
        stderr.print(f"Coordinator at {transport.url}; waiting for {needed} clients…")
        transport.wait_for_clients(needed, timeout_s=wait_timeout)
        coordinator = Coordinator(
            transport,
            strategy_obj,
            config=fed,
            metadata=ws.metadata,
            artifacts=ws.artifacts,
            evaluate_fn=evaluate,
            on_round=lambda r: stderr.print(escape(_round_line(r, fed.num_rounds))),
        )
        run_id = (
            RunId(resume)
            if resume
            else coordinator.start(
                ws.project.id,
                make_adapter(fed.seed).get_parameters(),
                name=name,
                tags={"transport": "http", "model": model},
                dataset_ids=datasets,
            )
        )
        stderr.print(f"Run {run_id}: {fed.num_rounds} rounds")
        final = coordinator.run(run_id)
        adapter = make_adapter(fed.seed)
        adapter.set_parameters(final)
        profile = None
        if register:
            stderr.print("Collecting the reference profile from the clients' summaries…")
            profile = collect_profile(
                transport,
                final,
                signature=adapter.signature(),
                round_num=fed.num_rounds + 1,
                timeout_s=fed.round_timeout_s,
            )
    if register:
        _register(
            ws,
            registered_name,
            run_id,
            final,
            adapter,
            datasets=datasets,
            tags={"transport": "http", "model": model, "strategy": strategy_obj.name},
            profile=profile,
        )
    typer.echo(run_id)


def _eval_dataset(
    ws: Workspace,
    path: Path | None,
    arrays: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None,
    label: str,
) -> list[tuple[DatasetId, str]]:
    """Record the central evaluation set (by content) so that runs and versions link to it."""
    if path is None or arrays is None:
        return []
    from fedloop.core import fingerprint_arrays

    x, y = arrays
    dataset = ws.metadata.register_dataset(
        ws.project.id,
        re.sub(r"[^A-Za-z0-9_.-]", "_", path.name).lstrip("_.-") or "eval-data",
        fingerprint=fingerprint_arrays(x, y),
        num_rows=len(y),
        schema={"features": int(x.shape[1]), "label": label},
        uri=str(path.resolve()),
    )
    return [(dataset.id, "eval")]


def _register(
    ws: Workspace,
    name: str,
    run_id: RunId,
    final: Parameters,
    adapter: ModelAdapter,
    *,
    datasets: list[tuple[DatasetId, str]],
    tags: Mapping[str, str],
    profile: DataProfile | None,
) -> None:
    from fedloop.federated.registration import register_federated_model
    from fedloop.registry import CHAMPION

    mv = register_federated_model(
        ws,
        name,
        run_id=run_id,
        weights=final,
        onnx_model=adapter.to_onnx(),
        signature=adapter.signature(),
        tags=tags,
        datasets=datasets,
        description=f"{tags['model']}, {tags['strategy']} over HTTP/2",
        profile=profile,
    )
    alias = " (champion)" if CHAMPION in mv.aliases else ""
    stderr.print(
        f"Registered {escape(name)} v{mv.version}{alias} with lineage over "
        f"{len(mv.contributors)} clients"
    )
