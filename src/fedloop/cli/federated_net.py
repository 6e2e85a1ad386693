"""``fedloop federated serve`` and ``fedloop federated client``: a federation over the network."""

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
from fedloop.core import ConfigError, DatasetId, InvalidInput, Parameters, RunId

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from fedloop.federated.coordinator import RoundReport
    from fedloop.federated.transports import ClientReport
    from fedloop.learn import DataProfile, ModelAdapter
    from fedloop.store import Workspace

__all__ = ["client", "default_model_name", "parse_model_spec", "serve"]

MODEL_HELP = "Model spec: mlp:<inputs>,<hidden>,... (e.g. mlp:30,64,32)."


def parse_model_spec(spec: str) -> tuple[int, tuple[int, ...]]:
    """Parse ``mlp:<inputs>,<hidden>,...`` into the input width and the hidden widths.

    Raises
    ------
    ConfigError
        When the spec is not of that form.
    """
    kind, _, dims = spec.partition(":")
    try:
        widths = tuple(int(d) for d in dims.split(",")) if dims else ()
    except ValueError:
        widths = ()
    if kind != "mlp" or not widths or min(widths) < 1:
        raise ConfigError(
            f"`--model` must look like mlp:<inputs>,<hidden>,...; got {spec!r}.",
            field="model",
            value=spec,
            hint="For the fraud data: --model mlp:30,64,32.",
        )
    return widths[0], widths[1:]


def default_model_name(spec: str) -> str:
    """Return the registered model name ``serve`` uses for a model spec (``federated-mlp-30-64``).

    Raises
    ------
    ConfigError
        When the spec is malformed (see :func:`parse_model_spec`).
    """
    in_features, hidden = parse_model_spec(spec)
    return "-".join(["federated-mlp", *(str(w) for w in (in_features, *hidden))])


def _adapter_factory(spec: str) -> tuple[int, Callable[[int], ModelAdapter]]:
    in_features, hidden = parse_model_spec(spec)
    from fedloop.learn import TorchAdapter, mlp

    def make(seed: int) -> ModelAdapter:
        return TorchAdapter(lambda: mlp(in_features, hidden), num_features=in_features, seed=seed)

    return in_features, make


def _load(
    path: Path, label: str, in_features: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    from fedloop.federated.datafiles import load_table

    x, y = load_table(path, label=label)
    if x.shape[1] != in_features:
        raise InvalidInput(
            f"{path} has {x.shape[1]} feature columns but the model takes {in_features}.",
            field="model",
            hint=f"Use --model mlp:{x.shape[1]},... or drop the extra columns.",
        )
    return x, y


def _tokens(token_file: Path, enroll: int | None) -> tuple[dict[str, str], bool]:
    from fedloop.federated.transports import generate_tokens, read_token_file

    if enroll is None:
        return read_token_file(token_file), False
    if token_file.exists():
        raise ConfigError(
            f"token file {token_file} exists already; --enroll would replace every token.",
            field="token_file",
            hint="Drop --enroll to reuse it, or delete it first.",
        )
    return generate_tokens(f"client-{i:03d}" for i in range(1, enroll + 1)), True


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


@federated.app.command("serve")
def serve(
    ctx: typer.Context,
    token_file: Path = typer.Option(
        ..., "--token-file", help="JSON client id -> token (written 0600 with --enroll)."
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
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="PEM certificate (chain)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="PEM private key."),
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
    in_features, make_adapter = _adapter_factory(model)
    registered_name = check_name(model_name or default_model_name(model), field="model_name")
    evaluate: Callable[[Parameters], Mapping[str, float]] | None = None
    eval_set: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]] | None = None
    if eval_data is not None:
        eval_set = _load(eval_data, label, in_features)
        x_eval, y_eval = eval_set
        evaluator = make_adapter(fed.seed)

        def evaluate(params: Parameters) -> Mapping[str, float]:
            evaluator.set_parameters(params)
            return evaluator.evaluate(x_eval, y_eval)

    strategy_obj = make_strategy(config.strategy.name, **config.strategy.params)
    tokens, fresh = _tokens(token_file, enroll)
    ws = cli_state.workspace()
    datasets = _eval_dataset(ws, eval_data, eval_set, label)
    transport = HttpTransport(
        host=host,
        port=port,
        tokens=tokens,
        tls_certfile=tls_cert,
        tls_keyfile=tls_key,
        heartbeat_timeout_s=heartbeat_timeout,
    )
    with contextlib.closing(transport):
        if fresh:
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


def _client_line(report: ClientReport) -> str:
    text = f"round {report.round_num}: {report.status}"
    if report.num_examples is not None:
        text += f", {report.num_examples} examples"
    text += f", {report.bytes_down / 1e3:.1f} kB down, {report.bytes_up / 1e3:.1f} kB up"
    text += f", {report.seconds:.1f} s"
    return text + (f" ({report.message})" if report.message else "")


@federated.app.command("client")
def client(
    server: str = typer.Option(..., "--server", help="Coordinator URL (https://host:port)."),
    client_id: str = typer.Option(..., "--client-id", help="This silo's enrolled id."),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="File with the token alone, or the JSON id -> token map."
    ),
    token: str | None = typer.Option(
        None, "--token", help="The token itself (visible to other local users; prefer a file)."
    ),
    data: Path = typer.Option(..., "--data", help="Local training data (CSV or Parquet)."),
    label: str = typer.Option("is_fraud", "--label", help="Label column."),
    model: str = typer.Option("mlp:30,64,32", "--model", help=MODEL_HELP),
    ca_file: Path | None = typer.Option(
        None, "--ca-file", help="PEM bundle to verify the coordinator."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="The run's seed (federated.seed)."),
    poll_wait: int = typer.Option(20, "--poll-wait", min=1, max=300, help="Long-poll seconds."),
    give_up_after: float = typer.Option(
        600.0, "--give-up-after", min=1.0, help="Fail when the coordinator is gone this long (s)."
    ),
) -> None:
    """Train on local data whenever the coordinator asks, until the run is over."""
    from fedloop.federated.client import AdapterClient
    from fedloop.federated.transports import check_client_id, read_client_token, run_http_client

    check_client_id(client_id, field="client_id")
    if (token_file is None) == (token is None):
        raise ConfigError(
            "pass exactly one of --token-file and --token.",
            field="token",
            hint="Use the token file the coordinator wrote with --enroll.",
        )
    secret = read_client_token(token_file, client_id) if token_file is not None else str(token)
    in_features, make_adapter = _adapter_factory(model)
    x, y = _load(data, label, in_features)
    positives = int(y.sum()) if len(y) else 0
    stderr.print(
        f"Client {escape(client_id)}: {len(y)} rows ({positives} positive) from "
        f"{escape(str(data))}; connecting to {escape(server)}"
    )
    answered = run_http_client(
        server,
        client_id,
        secret,
        AdapterClient(client_id, make_adapter, x, y, seed=seed),
        ca_file=ca_file,
        poll_wait_s=poll_wait,
        give_up_after_s=give_up_after,
        on_round=lambda r: stderr.print(escape(_client_line(r))),
    )
    stderr.print(f"The run is over; answered {answered} tasks.")
