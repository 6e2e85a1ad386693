"""``fedloop certs``: a development CA and the certificates that put the HTTP transport on TLS."""

from __future__ import annotations

import shlex
from pathlib import Path
from types import ModuleType

import typer
from rich.markup import escape

from fedloop.cli._context import (
    FORMAT_OPTION,
    OutputFormat,
    print_json,
    print_table,
    state,
    stderr,
)
from fedloop.core import InvalidInput, NotFound

app = typer.Typer(
    help="A development CA and TLS certificates for `fedloop federated serve|client`.",
    no_args_is_help=True,
)

_DIR_OPTION = typer.Option(
    None,
    "--dir",
    help="Folder holding ca.pem and ca-key.pem (default: <project.dir>/certs, the CA that "
    "`fedloop federated serve` uses when it makes its own certificate).",
)
_OVERWRITE_OPTION = typer.Option(False, "--overwrite", help="Replace existing files.")


def certs_dir(ctx: typer.Context, folder: Path | None = None) -> Path:
    """Return ``folder``, or the workspace's certificate folder ``<project.dir>/certs``."""
    if folder is not None:
        return folder
    return Path(state(ctx).resolved().config.project.dir) / "certs"


def _lib() -> ModuleType:
    # Imported on use: `fedloop --help` should not load cryptography's x509 stack.
    from fedloop.federated.transports import certs

    return certs


def _q(path: Path) -> str:
    return escape(shlex.quote(str(path)))


def _read_ca(folder: Path) -> tuple[bytes, bytes]:
    cert_file, key_file = folder / "ca.pem", folder / "ca-key.pem"
    for path in (cert_file, key_file):
        if not path.is_file():
            raise NotFound(
                f"no CA in {folder}: {path} is missing.",
                field="dir",
                value=str(folder),
                hint=f"Run `fedloop certs init --dir {shlex.quote(str(folder))}` first.",
            )
    return cert_file.read_bytes(), key_file.read_bytes()


def _wrote(cert_file: Path, key_file: Path, what: str) -> None:
    stderr.print(f"[bold green]✓[/] {what}: {_q(cert_file)} (key {_q(key_file)}, mode 0600)")


@app.command("init")
def init(
    ctx: typer.Context,
    folder: Path | None = _DIR_OPTION,
    common_name: str = typer.Option("fedloop dev CA", "--name", help="The CA's common name."),
    days: int = typer.Option(365, "--days", help="Validity in days."),
    overwrite: bool = _OVERWRITE_OPTION,
) -> None:
    """Make a development CA (ca.pem, ca-key.pem); keep ca-key.pem on the coordinator's side."""
    folder = certs_dir(ctx, folder)
    cert_pem, key_pem = _lib().make_ca(common_name, days=days)
    cert_file, key_file = _lib().write_pem_files(
        folder, "ca", cert_pem, key_pem, overwrite=overwrite
    )
    _wrote(cert_file, key_file, "CA")
    stderr.print(
        "Next: fedloop certs server --dir "
        f"{_q(folder)} --name coordinator --dns localhost --ip 127.0.0.1"
    )


@app.command("server")
def server(
    ctx: typer.Context,
    folder: Path | None = _DIR_OPTION,
    name: str = typer.Option("coordinator", "--name", help="Common name and file stem."),
    dns: list[str] = typer.Option(
        [], "--dns", help="DNS name clients connect to (repeatable; default localhost)."
    ),
    ip: list[str] = typer.Option(
        [], "--ip", help="IP address clients connect to (repeatable; default 127.0.0.1)."
    ),
    days: int = typer.Option(90, "--days", help="Validity in days."),
    overwrite: bool = _OVERWRITE_OPTION,
) -> None:
    """Issue the coordinator's TLS certificate, signed by the CA in --dir."""
    folder = certs_dir(ctx, folder)
    ca_cert, ca_key = _read_ca(folder)
    cert_pem, key_pem = _lib().issue_certificate(
        ca_cert, ca_key, common_name=name, dns_names=dns, ip_addresses=ip, days=days
    )
    cert_file, key_file = _lib().write_pem_files(
        folder, name, cert_pem, key_pem, overwrite=overwrite
    )
    info = _lib().describe_certificate(cert_pem)
    names = ", ".join([*info["dns_names"], *info["ip_addresses"]])
    _wrote(cert_file, key_file, f"server certificate for {escape(names)}")
    stderr.print(
        f"Serve:   fedloop federated serve --host 0.0.0.0 --tls-cert {_q(cert_file)} "
        f"--tls-key {_q(key_file)} ..."
    )
    stderr.print(
        f"Clients: fedloop federated client --server https://HOST:PORT --ca-file "
        f"{_q(folder / 'ca.pem')} ...  (HOST must be one of: {escape(names)})"
    )


@app.command("client")
def client(
    ctx: typer.Context,
    folder: Path | None = _DIR_OPTION,
    name: str = typer.Option(..., "--name", help="The client's id, used as common name and stem."),
    days: int = typer.Option(90, "--days", help="Validity in days."),
    overwrite: bool = _OVERWRITE_OPTION,
) -> None:
    """Issue a client certificate (clientAuth), signed by the CA in --dir."""
    folder = certs_dir(ctx, folder)
    ca_cert, ca_key = _read_ca(folder)
    cert_pem, key_pem = _lib().issue_certificate(
        ca_cert, ca_key, common_name=name, days=days, client=True
    )
    cert_file, key_file = _lib().write_pem_files(
        folder, name, cert_pem, key_pem, overwrite=overwrite
    )
    _wrote(cert_file, key_file, f"client certificate for {escape(name)}")
    stderr.print(
        f"Give the silo {_q(cert_file)}, {_q(key_file)} and {_q(folder / 'ca.pem')}: "
        f"fedloop federated client --client-id {escape(shlex.quote(name))} --ca-file ca.pem "
        f"--tls-cert {escape(shlex.quote(cert_file.name))} "
        f"--tls-key {escape(shlex.quote(key_file.name))} ...  A coordinator started with "
        f"`fedloop federated serve --client-ca {_q(folder / 'ca.pem')}` requires the "
        "certificate and checks that it names the client its token belongs to."
    )


@app.command("show")
def show(
    file: Path = typer.Argument(..., help="A PEM certificate file."),
    fmt: OutputFormat = FORMAT_OPTION,
) -> None:
    """Show a certificate's subject, issuer, names, validity and whether it is a CA."""
    if not file.is_file():
        raise NotFound(
            f"no certificate file at {file}.",
            field="file",
            value=str(file),
            hint="Pass a file written by `fedloop certs`, e.g. .fedloop/certs/ca.pem.",
        )
    try:
        data = {"file": str(file), **_lib().describe_certificate(file.read_bytes())}
    except InvalidInput as err:
        err.field, err.value = "file", str(file)
        raise
    if fmt is OutputFormat.json:
        print_json(data)
        return
    rows = [[k, ", ".join(v) if isinstance(v, list) else v] for k, v in data.items()]
    print_table("certificate", ["field", "value"], rows)
