"""``fedloop federated client``: a silo that trains whenever the coordinator asks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from fedloop.cli import federated
from fedloop.cli._context import stderr
from fedloop.cli._federated_models import MODEL_HELP, adapter_factory, load_table_for
from fedloop.core import ConfigError

if TYPE_CHECKING:
    from fedloop.federated.transports import ClientReport

__all__ = ["client"]


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
        None, "--ca-file", help="PEM bundle to verify the coordinator (its ca.pem)."
    ),
    tls_cert: Path | None = typer.Option(
        None,
        "--tls-cert",
        help="This client's certificate, for a coordinator that requires one (--client-ca).",
    ),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="Its private key (PEM)."),
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
    in_features, make_adapter = adapter_factory(model)
    x, y = load_table_for(data, label, in_features)
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
        tls_certfile=tls_cert,
        tls_keyfile=tls_key,
        poll_wait_s=poll_wait,
        give_up_after_s=give_up_after,
        on_round=lambda r: stderr.print(escape(_client_line(r))),
    )
    stderr.print(f"The run is over; answered {answered} tasks.")
