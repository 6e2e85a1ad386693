"""Throwaway PostgreSQL for the tests: a private cluster and one fresh database per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL, make_url

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = REPO_ROOT / "scripts" / "postgres-server"
ENV_URL = "FEDLOOP_TEST_POSTGRES_URL"
MISSING_BINARIES = "PostgreSQL binaries not found: apt-get install postgresql"


def _run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SERVER_SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )


def find_bindir() -> Path | None:
    """Return the directory holding ``initdb`` and ``pg_ctl``, or ``None`` if there is none."""
    result = _run_script("bindir")
    if result.returncode != 0:
        return None
    return Path(result.stdout.strip())


@contextmanager
def private_cluster(base_dir: Path) -> Iterator[str]:
    """Start a throwaway cluster under `base_dir`, yield its URL, and stop it on exit.

    Parameters
    ----------
    base_dir : Path
        A directory for the cluster (created if missing). As root the server runs as the
        ``postgres`` user, which cannot enter pytest's private (0700) base temp directory,
        so a fresh directory under the system temp directory is used instead and removed
        afterwards.

    Yields
    ------
    str
        The SQLAlchemy URL of the database ``fedloop_test`` on the new cluster.

    Raises
    ------
    RuntimeError
        If the cluster does not start; the message carries the script's output.
    """
    owned_tmp = os.geteuid() == 0
    cluster_dir = Path(tempfile.mkdtemp(prefix="fedloop-pg-")) if owned_tmp else base_dir
    result = _run_script("start", str(cluster_dir))
    try:
        if result.returncode != 0:
            raise RuntimeError(
                f"scripts/postgres-server start {cluster_dir} failed "
                f"(exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )
        yield result.stdout.strip().splitlines()[-1]
    finally:
        stopped = _run_script("stop", str(cluster_dir))
        if stopped.returncode == 0:
            shutil.rmtree(cluster_dir, ignore_errors=True)


def _conninfo(url: URL) -> str:
    """Return a libpq connection string for `url` (any SQLAlchemy driver suffix is ignored)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """Create an empty database on the server of `server_url`, yield its URL, then drop it.

    Parameters
    ----------
    server_url : str
        A SQLAlchemy URL of any database on the server; the new database is created
        through the server's ``postgres`` maintenance database.

    Yields
    ------
    str
        The SQLAlchemy URL of the new database, named ``t_<uuid hex>``.
    """
    import psycopg  # the `postgres` extra; imported here so that the rest runs without it

    url = make_url(server_url)
    maintenance = _conninfo(url.set(database="postgres"))
    name = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
