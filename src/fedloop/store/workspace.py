"""A project's stores opened together from configuration: metadata, artifacts and the project row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedloop.core import Clock, ConfigError, FedloopConfig, ResolvedConfig, parse_toml, resolve
from fedloop.store.artifacts import FsspecArtifactStore
from fedloop.store.metadata.records import Project
from fedloop.store.metadata.sql import SqlMetadataStore

__all__ = ["CONFIG_FILE", "Workspace", "load_config", "open_workspace"]

CONFIG_FILE = "fedloop.toml"


def load_config(
    *,
    cwd: Path,
    environ: Mapping[str, str],
    overrides: Mapping[str, Any],
    config_file: Path | None = None,
) -> ResolvedConfig:
    """Read fedloop.toml (if any) and resolve it with the environment and flags.

    Parameters
    ----------
    cwd : Path
        Folder searched for ``fedloop.toml``.
    environ : Mapping[str, str]
        Environment variables (``FEDLOOP_<SECTION>__<KEY>``; ``FEDLOOP_CONFIG`` names a file).
    overrides : Mapping
        Dotted keys from command-line flags.
    config_file : Path or None
        An explicit config file; it must exist.

    Returns
    -------
    ResolvedConfig
        The effective config and where each value came from.

    Raises
    ------
    ConfigError
        For an unreadable file or an invalid value.
    """
    explicit = config_file or (
        Path(environ["FEDLOOP_CONFIG"]) if environ.get("FEDLOOP_CONFIG") else None
    )
    path = explicit if explicit is not None else cwd / CONFIG_FILE
    file_values: dict[str, Any] = {}
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(
                f"cannot read {path}: {err}.", field=str(path), hint="Check the file's permissions."
            ) from err
        file_values = parse_toml(text, path=str(path))
    elif explicit is not None:
        raise ConfigError(
            f"config file {path} does not exist.",
            field="config",
            value=str(path),
            hint="Pass an existing file with --config or unset FEDLOOP_CONFIG.",
        )
    env = {k: v for k, v in environ.items() if k != "FEDLOOP_CONFIG"}
    return resolve(file_values, env, overrides)


@dataclass
class Workspace:
    """The open stores of one project.

    Attributes
    ----------
    config : FedloopConfig
        The effective configuration.
    metadata : SqlMetadataStore
        Runs, models, aliases, events.
    artifacts : FsspecArtifactStore
        Content-addressed bytes.
    project : Project
        The configured project row.
    """

    config: FedloopConfig
    metadata: SqlMetadataStore
    artifacts: FsspecArtifactStore
    project: Project

    def close(self) -> None:
        """Release the metadata store's connections."""
        self.metadata.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_workspace(
    config: FedloopConfig, *, base: Path | None = None, clock: Clock | None = None
) -> Workspace:
    """Open (and migrate) the metadata store, the artifact store and the project.

    Parameters
    ----------
    config : FedloopConfig
        The effective configuration.
    base : Path or None
        Folder relative paths start from (default: the working directory).
    clock : Clock or None
        Time source.

    Returns
    -------
    Workspace
        Ready to use; close it when done.

    Raises
    ------
    ConfigError, StoreUnavailable, SchemaTooNew, MissingExtraError
        When a store cannot be opened.
    """
    metadata = SqlMetadataStore(
        config.store_url(base=base),
        busy_timeout_ms=config.store.busy_timeout_ms,
        connect_timeout_s=config.store.connect_timeout_s,
        auto_upgrade=config.store.auto_upgrade,
        clock=clock,
    )
    try:
        artifacts = FsspecArtifactStore(config.artifacts_url(base=base))
        project = metadata.ensure_project(config.project.name)
    except BaseException:
        metadata.close()
        raise
    return Workspace(config=config, metadata=metadata, artifacts=artifacts, project=project)
