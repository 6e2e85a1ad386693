"""Configuration models and the pure precedence resolver (flag > env > fedloop.toml > default)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedloop.core.api_config import ApiConfig
from fedloop.core.automation_config import (
    LOWER_IS_BETTER,
    ActionPolicy,
    AutomationConfig,
    GatePolicy,
    LiveMetric,
    Policy,
    RolloutPolicy,
    TriggerPolicy,
)
from fedloop.core.config_section import Section
from fedloop.core.config_sources import (
    ENV_PREFIX,
    Source,
    TomlDocument,
    config_error,
    describe_source,
    env_tree,
    flag_tree,
    flatten_config,
    merge_layers,
    source_of,
)
from fedloop.core.distributed_config import DistributedConfig
from fedloop.core.errors import ConfigError
from fedloop.core.federated_config import FederatedConfig, SecureAggregationConfig, StrategyConfig
from fedloop.core.monitoring_config import DriftConfig, MonitoringConfig
from fedloop.core.serving_config import (
    BatchingConfig,
    CanaryConfig,
    PayloadLogConfig,
    ServingConfig,
)
from fedloop.core.toml_lines import key_line

__all__ = [
    "ENV_PREFIX",
    "LOWER_IS_BETTER",
    "ActionPolicy",
    "ApiConfig",
    "AutomationConfig",
    "BatchingConfig",
    "CanaryConfig",
    "DistributedConfig",
    "DriftConfig",
    "FederatedConfig",
    "FedloopConfig",
    "GatePolicy",
    "LiveMetric",
    "MonitoringConfig",
    "PayloadLogConfig",
    "Policy",
    "ProjectConfig",
    "ResolvedConfig",
    "RolloutPolicy",
    "SecureAggregationConfig",
    "ServingConfig",
    "StoreConfig",
    "StrategyConfig",
    "TomlDocument",
    "TrackingConfig",
    "TriggerPolicy",
    "flatten_config",
    "parse_toml",
    "resolve",
]


class ProjectConfig(Section):
    """Where the project's embedded state lives.

    Parameters
    ----------
    name : str, default "default"
        Project name recorded on runs.
    dir : str, default ".fedloop"
        Folder for the SQLite file and local artifacts, relative to the working directory.
    """

    name: str = Field(default="default", min_length=1, max_length=200)
    dir: str = Field(default=".fedloop", min_length=1)


class StoreConfig(Section):
    """Metadata and artifact store settings.

    Parameters
    ----------
    url : str or None, default None
        SQLAlchemy URL of the metadata store; ``None`` means ``sqlite:///<project.dir>/fedloop.db``.
        PostgreSQL: ``postgresql+psycopg://user:pass@host:5432/db`` (extra ``postgres``).
    artifacts_url : str or None, default None
        fsspec URL of the artifact store; ``None`` means ``<project.dir>/artifacts``.
    busy_timeout_ms : int, default 30000
        How long SQLite waits for a lock before failing.
    connect_timeout_s : float, default 5.0
        How long to wait for a PostgreSQL server.
    auto_upgrade : bool, default True
        Apply pending migrations when a store is opened.
    """

    url: str | None = None
    artifacts_url: str | None = None
    busy_timeout_ms: int = Field(default=30_000, ge=0, le=3_600_000)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=600)
    auto_upgrade: bool = True


class TrackingConfig(Section):
    """Buffered metric logging.

    Parameters
    ----------
    flush_interval_ms : int, default 500
        A background flush happens at least this often while points are pending.
    max_buffered_points : int, default 5000
        A flush is started when this many points are pending.
    """

    flush_interval_ms: int = Field(default=500, ge=1, le=600_000)
    max_buffered_points: int = Field(default=5_000, ge=1, le=10_000_000)


class FedloopConfig(Section):
    """The whole effective configuration, one section per package."""

    project: ProjectConfig = ProjectConfig()
    store: StoreConfig = StoreConfig()
    tracking: TrackingConfig = TrackingConfig()
    federated: FederatedConfig = FederatedConfig()
    strategy: StrategyConfig = StrategyConfig()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    automation: AutomationConfig = AutomationConfig()
    distributed: DistributedConfig = DistributedConfig()
    api: ApiConfig = ApiConfig()

    def store_url(self, *, base: Path | None = None) -> str:
        """Return the metadata store URL, defaulting to SQLite in the project folder.

        Parameters
        ----------
        base : Path or None
            Folder that relative paths are taken from (default: the working directory).

        Returns
        -------
        str
            A SQLAlchemy URL.
        """
        if self.store.url:
            return self.store.url
        folder = (base or Path.cwd()) / self.project.dir
        return f"sqlite:///{(folder / 'fedloop.db').resolve()}"

    def artifacts_url(self, *, base: Path | None = None) -> str:
        """Return the artifact store URL, defaulting to ``<project.dir>/artifacts``.

        Parameters
        ----------
        base : Path or None
            Folder that relative paths are taken from (default: the working directory).

        Returns
        -------
        str
            An fsspec URL or a local path.
        """
        if self.store.artifacts_url:
            return self.store.artifacts_url
        return str(((base or Path.cwd()) / self.project.dir / "artifacts").resolve())


class ResolvedConfig(BaseModel):
    """A config plus, for every key, where its value came from.

    The keys of ``sources`` are dotted paths as :func:`flatten_config` writes them
    (``serving.port``, ``automation.policies[0].trigger.on_drift``). ``file_path`` and
    ``file_text`` are the fedloop.toml read, when ``resolve`` got a :class:`TomlDocument`.
    """

    model_config = ConfigDict(frozen=True)

    config: FedloopConfig
    sources: dict[str, Source]
    file_path: str | None = None
    file_text: str | None = Field(default=None, repr=False)

    def source_of(self, path: Sequence[str | int]) -> Source:
        """Return where the value at ``path`` came from (a table: its highest-precedence key).

        Parameters
        ----------
        path : sequence of str or int
            Names and list indices, e.g. ``("automation", "policies", 0, "action")``.

        Returns
        -------
        {"default", "file", "env", "flag"}
            The source.
        """
        return source_of(path, self.sources)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """Return the line of fedloop.toml that sets ``path`` (or the table that holds it).

        Parameters
        ----------
        path : sequence of str or int
            Names and list indices.

        Returns
        -------
        int or None
            The 1-based line; None when no file was read or the value did not come from it.
        """
        if self.file_text is None or self.source_of(path) != "file":
            return None
        return key_line(self.file_text, path)

    def where(self, path: Sequence[str | int]) -> str:
        """Return where the value at ``path`` was set, worded for messages.

        Parameters
        ----------
        path : sequence of str or int
            Names and list indices.

        Returns
        -------
        str
            ``"in fedloop.toml line 14"``, ``"in the environment (FEDLOOP_SERVING__PORT)"``,
            ``"on the command line"`` or ``"by default"``.
        """
        return describe_source(
            self.source_of(path),
            tuple(path),
            file_path=self.file_path or "fedloop.toml",
            file_text=self.file_text,
        )


def parse_toml(text: str, *, path: str = "fedloop.toml") -> TomlDocument:
    """Parse a fedloop.toml text into nested mappings that remember the text.

    Parameters
    ----------
    text : str
        File content.
    path : str
        Shown in errors.

    Returns
    -------
    TomlDocument
        The parsed document (a dict), with ``text`` and ``path``.

    Raises
    ------
    ConfigError
        With the line and column of a syntax error.
    """
    try:
        return TomlDocument(tomllib.loads(text), text=text, path=path)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(
            f"{path} is not valid TOML: {err}.",
            field=path,
            hint="Fix the syntax at the line shown (strings need quotes, sections need [brackets]).",
        ) from err


def resolve(
    file_values: Mapping[str, Any],
    environ: Mapping[str, str],
    overrides: Mapping[str, Any],
) -> ResolvedConfig:
    r"""Build the effective config from its three sources; a pure function.

    Parameters
    ----------
    file_values : Mapping
        The parsed fedloop.toml (nested sections). When it is the :class:`TomlDocument` that
        :func:`parse_toml` returns, errors name the file and line of a refused value.
    environ : Mapping[str, str]
        Environment variables; only ``FEDLOOP_<SECTION>__<KEY>`` (and ``FEDLOOP_STORE_URL``) count.
        An index addresses an item of a list of tables: ``FEDLOOP_AUTOMATION__POLICIES__0__ENABLED``.
    overrides : Mapping
        Command-line values as dotted keys (``{"store.url": "..."}``); ``None`` values are ignored.

    Returns
    -------
    ResolvedConfig
        The frozen config and the source of each key.

    Raises
    ------
    ConfigError
        Naming the offending key, its source (with the line, for fedloop.toml) and what is allowed.

    Examples
    --------
    >>> doc = parse_toml("[serving]\nport = 9000\n")
    >>> resolve(doc, {"FEDLOOP_SERVING__WORKERS": "2"}, {}).config.serving.workers
    2
    """
    layers: list[tuple[Source, Mapping[str, Any]]] = [
        ("file", file_values),
        ("env", env_tree(environ)),
        ("flag", flag_tree(overrides)),
    ]
    merged, sources = merge_layers(layers)
    document = file_values if isinstance(file_values, TomlDocument) else None
    try:
        config = FedloopConfig.model_validate(merged)
    except ValidationError as err:
        raise config_error(err, sources=sources, merged=merged, document=document) from err
    for key in flatten_config(config.model_dump()):
        sources.setdefault(key, "default")
    return ResolvedConfig(
        config=config,
        sources=sources,
        file_path=document.path if document is not None else None,
        file_text=document.text if document is not None else None,
    )
