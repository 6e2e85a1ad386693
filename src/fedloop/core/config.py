"""Configuration models and the pure precedence resolver (flag > env > fedloop.toml > default)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from fedloop.core.api_config import ApiConfig, SecretText
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


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ProjectConfig(_Section):
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


class StoreConfig(_Section):
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


class TrackingConfig(_Section):
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


class SecureAggregationConfig(_Section):
    """Secure aggregation of client updates (Bonawitz et al. 2017; SecAgg+ with ``neighbours``).

    The coordinator learns only the sum of the surviving clients' updates: each client masks
    its update with pairwise masks agreed over X25519 and a self mask, and the masks of
    clients that drop out mid-round are removed with Shamir-shared secrets.

    Parameters
    ----------
    enabled : bool, default False
        Aggregate with secure aggregation (four exchanges per round instead of one).
    threshold : float, default 0.5
        Fraction of the round's clients (of each neighbourhood with ``neighbours``) whose
        shares reconstruct a secret: ``floor(threshold * n) + 1``, at least 2. Up to
        ``n - that`` clients may drop out after sharing keys; fewer survivors skip the round.
    neighbours : int or None, default None
        SecAgg+: each client masks with only this many neighbours (even, >= 2) on a random
        ring graph, so a round costs O(n log n) instead of O(n^2). None masks every pair.
    scale_bits : int, default 20
        Fixed-point precision: values are rounded to multiples of ``2**-scale_bits``.
    clip : float, default 2097152.0
        Largest magnitude of one client's encoded value (its example count times its update
        for example-weighted rules); a client whose update exceeds it drops out of the round
        with that reason instead of being silently clipped.
    stage_timeout_s : float, default 60
        Deadline of each key-exchange stage (training uses ``round_timeout_s``).
    """

    enabled: bool = False
    threshold: float = Field(default=0.5, ge=0.0, lt=1.0)
    neighbours: int | None = Field(default=None, ge=2, le=10_000)
    scale_bits: int = Field(default=20, ge=4, le=40)
    clip: float = Field(default=float(2**21), gt=0)
    stage_timeout_s: float = Field(default=60.0, gt=0, le=86_400)

    @field_validator("neighbours")
    @classmethod
    def _even_neighbours(cls, value: int | None) -> int | None:
        if value is not None and value % 2:
            raise ValueError("must be an even number (neighbours on both sides of the ring)")
        return value


class FederatedConfig(_Section):
    """How the coordinator runs rounds.

    Parameters
    ----------
    num_rounds : int, default 10
        Rounds to run.
    clients_per_round : int or None, default None
        Updates aggregated per round; None means ``fraction_train`` of the available clients.
        With an asynchronous strategy (FedBuff): how many clients train at once.
    fraction_train : float, default 1.0
        Fraction of available clients aggregated per round when ``clients_per_round`` is None.
    min_clients : int, default 1
        A round with fewer accepted updates is skipped (the model does not change).
    over_selection : float, default 0.0
        Extra fraction of clients selected so that stragglers and failures do not stall a round;
        the first ``clients_per_round`` accepted updates (by client id) are aggregated.
    round_timeout_s : float, default 600
        Deadline of a round; clients that have not answered by then are dropped from it.
    local_epochs : int, default 1
        Epochs each client trains per round.
    max_update_norm : float or None, default None
        Updates whose change (L2 norm of client minus global weights) exceeds this are rejected.
    max_skipped_rounds : int, default 3
        Consecutive skipped rounds after which the run fails.
    seed : int, default 0
        Seeds client sampling and client training (the run is reproducible bit for bit).
    secure_aggregation : SecureAggregationConfig
        ``[federated.secure_aggregation]``: the coordinator sees only the sum of the updates.
    """

    num_rounds: int = Field(default=10, ge=1, le=100_000)
    clients_per_round: int | None = Field(default=None, ge=1)
    fraction_train: float = Field(default=1.0, gt=0, le=1)
    min_clients: int = Field(default=1, ge=1)
    over_selection: float = Field(default=0.0, ge=0, le=10)
    round_timeout_s: float = Field(default=600.0, gt=0, le=86_400)
    local_epochs: int = Field(default=1, ge=1, le=1_000)
    max_update_norm: float | None = Field(default=None, gt=0)
    max_skipped_rounds: int = Field(default=3, ge=0)
    seed: int = Field(default=0, ge=0)
    secure_aggregation: SecureAggregationConfig = Field(default_factory=SecureAggregationConfig)

    @model_validator(mode="after")
    def _norm_check_needs_updates(self) -> FederatedConfig:
        if self.secure_aggregation.enabled and self.max_update_norm is not None:
            raise ValueError(
                "max_update_norm cannot be checked with secure aggregation: the coordinator "
                "never sees an individual update. Unset it, and bound updates with the "
                "dpfedavg strategy's clip_norm (clients clip before masking)."
            )
        return self


class StrategyConfig(_Section):
    """Which aggregation rule to use and its hyperparameters.

    Parameters
    ----------
    name : str, default "fedavg"
        fedavg, fedprox, fedadam, fedyogi, fedadagrad, median, trimmed_mean, krum, multikrum, fedbuff.
    params : dict, default {}
        Constructor arguments of the strategy (e.g. ``proximal_mu = 0.01``).
    """

    name: str = "fedavg"
    params: dict[str, Any] = Field(default_factory=dict)


_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-.]{0,199}([@:/][^@:/]+)?$"


class BatchingConfig(_Section):
    """Adaptive batching of concurrent inference requests.

    Parameters
    ----------
    enabled : bool, default True
        Coalesce concurrent requests into one onnxruntime call.
    max_batch_size : int, default 256
        Most rows one onnxruntime call takes (a single bigger request still runs alone).
    max_wait_ms : float, default 2.0
        Longest a request waits for others that are known to be on their way.
    """

    enabled: bool = True
    max_batch_size: int = Field(default=256, ge=1, le=1_000_000)
    max_wait_ms: float = Field(default=2.0, ge=0, le=1_000)


class PayloadLogConfig(_Section):
    """Where sampled (request, prediction) records and late labels are sent.

    Parameters
    ----------
    url : str or None, default None
        The monitor's ingest URL, e.g. ``http://127.0.0.1:8500/v1/monitor/ingest`` (HTTP POST
        of ``{"predictions": [...], "feedback": [...]}``); None turns the log off.
    fraction_sampled : float, default 1.0
        Fraction of requests logged, in [0, 1].
    queue_size : int, default 10000
        Records held while the monitor is slow; further records are dropped (and counted).
    max_records_per_post : int, default 500
        Pending records that trigger a POST before ``flush_interval_s`` is up.
    timeout_s : float, default 2.0
        Timeout of one POST to the monitor.
    flush_interval_s : float, default 0.2
        Longest a record waits before it is sent.
    api_key : str or None, default None
        API key (role ``client`` or above) sent as ``Authorization: Bearer`` when the monitor
        asks for one (``[api] auth``); set it with ``FEDLOOP_SERVING__PAYLOAD_LOG__API_KEY``
        rather than in a file. ``fedloop up`` gives its own server a key itself.
    """

    url: str | None = Field(default=None, pattern=r"^https?://")
    fraction_sampled: float = Field(default=1.0, ge=0, le=1)
    queue_size: int = Field(default=10_000, ge=1, le=10_000_000)
    max_records_per_post: int = Field(default=500, ge=1, le=100_000)
    timeout_s: float = Field(default=2.0, gt=0, le=300)
    flush_interval_s: float = Field(default=0.2, gt=0, le=60)
    api_key: SecretText | None = None


class CanaryConfig(_Section):
    """A weighted split of one served model's traffic onto a second version.

    Parameters
    ----------
    ref : str
        The canary version: ``NAME@ALIAS`` (followed when it moves) or ``NAME:VERSION``.
    fraction : float
        Fraction of requests sent to the canary, in [0, 1].
    sticky_header : str or None, default None
        A request header (e.g. ``x-user-id``) whose value pins a caller to one side of the split.
    """

    ref: str = Field(pattern=_REF_PATTERN)
    fraction: float = Field(ge=0, le=1)
    sticky_header: str | None = Field(default=None, min_length=1, max_length=100)


class ServingConfig(_Section):
    """The inference server (``fedloop serve``).

    Parameters
    ----------
    host : str, default "127.0.0.1"
        Interface to listen on.
    port : int, default 8080
        TCP port (0 picks a free one).
    workers : int, default 1
        Worker processes sharing the port.
    models : tuple of str, default ("fraud-fl@champion",)
        Model references served, each at ``/v2/models/<NAME>``; aliases are followed when they move.
    canary : dict, default {}
        Per served model name, a :class:`CanaryConfig`.
    shadow : dict, default {}
        Per served model name, the reference of a challenger that gets a copy of every request
        (its answer is logged, never returned).
    max_body_bytes : int, default 8 MiB
        Larger request bodies are refused with 413.
    alias_poll_s : float, default 2.0
        How often the registry is asked whether a served alias moved or the stored traffic
        split (canary, shadow) changed; 0 turns watching off (both are read at start only).
    intra_op_threads : int, default 1
        onnxruntime threads per model version.
    access_log : bool, default False
        One structured (JSON) log line per request on the ``fedloop.serving.access`` logger.
    batching : BatchingConfig
        Adaptive batching.
    payload_log : PayloadLogConfig
        The sampled stream of predictions to the monitor.
    """

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8080, ge=0, le=65_535)
    workers: int = Field(default=1, ge=1, le=256)
    models: tuple[str, ...] = Field(default=("fraud-fl@champion",), min_length=1)
    canary: dict[str, CanaryConfig] = Field(default_factory=dict)
    shadow: dict[str, str] = Field(default_factory=dict)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=2**31)
    alias_poll_s: float = Field(default=2.0, ge=0, le=3_600)
    intra_op_threads: int = Field(default=1, ge=0, le=256)
    access_log: bool = False
    batching: BatchingConfig = BatchingConfig()
    payload_log: PayloadLogConfig = PayloadLogConfig()

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        # The environment can only hold strings: FEDLOOP_SERVING__MODELS="a@champion,b@champion".
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("models")
    @classmethod
    def _check_models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names: set[str] = set()
        for ref in value:
            if not re.fullmatch(_REF_PATTERN, ref):
                raise ValueError(
                    f"each model must be NAME@ALIAS, NAME:VERSION or NAME; got {ref!r}"
                )
            name = re.split(r"[@:/]", ref, maxsplit=1)[0]
            if name in names:
                raise ValueError(f"model {name!r} is listed twice; serve each name once")
            names.add(name)
        return value

    @field_validator("shadow")
    @classmethod
    def _check_shadow(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            if not re.fullmatch(_REF_PATTERN, ref):
                raise ValueError(f"shadow of {name!r} must be a model reference; got {ref!r}")
        return value

    def served_names(self) -> tuple[str, ...]:
        """Return the model names served (the NAME part of each reference).

        Returns
        -------
        tuple of str
            One name per entry of ``models``.
        """
        return tuple(re.split(r"[@:/]", ref, maxsplit=1)[0] for ref in self.models)


_NumericDriftTest = Literal["auto", "ks", "psi", "wasserstein", "jensen_shannon", "chi2"]
_CategoricalDriftTest = Literal["auto", "chi2", "psi", "jensen_shannon"]
_BinaryDriftTest = Literal["auto", "ztest", "chi2", "psi", "jensen_shannon"]


class DriftConfig(_Section):
    """How drift between a reference profile and a current window is tested.

    A column is flagged when its multiple-testing-corrected p-value is below ``alpha`` AND its
    effect size reaches the practical floor of its kind plus the effect's sampling-noise level
    at the two sample sizes; distance-only tests (PSI, Jensen-Shannon, Wasserstein as the
    test) flag on their threshold (plus noise) alone. See ``fedloop.monitoring.drift.select``
    for the default choice of test per column kind and sample size.

    Parameters
    ----------
    alpha : float, default 0.05
        Significance level applied to the corrected p-values, in [0, 1].
    correction : {"bh", "bonferroni", "holm", "none"}, default "bh"
        Multiple-testing correction across all p-value tests of one check (Benjamini-Hochberg
        controls the false discovery rate; Bonferroni and Holm the family-wise error rate).
    numeric_test : {"auto", "ks", "psi", "wasserstein", "jensen_shannon", "chi2"}, default "auto"
        Test for numeric columns; "auto" is Kolmogorov-Smirnov with a Wasserstein floor.
    categorical_test : {"auto", "chi2", "psi", "jensen_shannon"}, default "auto"
        Test for categorical columns with more than two categories; "auto" is chi-square with
        a Jensen-Shannon floor.
    binary_test : {"auto", "ztest", "chi2", "psi", "jensen_shannon"}, default "auto"
        Test for two-valued columns (numeric or categorical); "auto" is the two-proportion
        Z-test with a Cohen's h floor.
    min_effect_numeric : float, default 0.1
        Practical floor (and the threshold of ``numeric_test="wasserstein"``): Wasserstein
        distance in reference standard deviations.
    min_effect_categorical : float, default 0.1
        Practical floor (and the threshold wherever Jensen-Shannon is the test):
        Jensen-Shannon distance (base 2), in [0, 1].
    min_effect_binary : float, default 0.1
        Practical floor of the Z-test: Cohen's h between the two proportions, in [0, pi].
    psi_threshold : float, default 0.2
        Population stability index at or above which a PSI-tested column is flagged.
    distance_bins : int, default 10
        PSI and Jensen-Shannon merge a numeric column's bins into this many groups of equal
        reference mass (with 100 bins both are dominated by sampling noise below ~10k rows).
    min_rows : int, default 30
        Columns with fewer rows in the reference or the current profile are reported, not tested.
    multivariate : bool, default True
        Run the domain-classifier test when both profiles carry a row sample.
    multivariate_max_rows : int, default 2000
        Rows per side the domain classifier uses at most.
    multivariate_min_auc : float, default 0.55
        Practical floor of the domain classifier's held-out AUC, in [0.5, 1].
    seed : int, default 0
        Seeds the domain classifier's subsampling, split and model.
    """

    alpha: float = Field(default=0.05, ge=0, le=1, description="Significance level, in [0, 1].")
    correction: Literal["bh", "bonferroni", "holm", "none"] = Field(
        default="bh", description="Multiple-testing correction across the p-values of a check."
    )
    numeric_test: _NumericDriftTest = Field(default="auto", description="Test of numeric columns.")
    categorical_test: _CategoricalDriftTest = Field(
        default="auto", description="Test of categorical columns with more than two categories."
    )
    binary_test: _BinaryDriftTest = Field(default="auto", description="Test of two-valued columns.")
    min_effect_numeric: float = Field(
        default=0.1,
        ge=0,
        le=100,
        description="Wasserstein floor, in reference standard deviations.",
    )
    min_effect_categorical: float = Field(
        default=0.1, ge=0, le=1, description="Jensen-Shannon distance floor (base 2), in [0, 1]."
    )
    min_effect_binary: float = Field(
        default=0.1, ge=0, le=3.1416, description="Cohen's h floor of the Z-test, in [0, pi]."
    )
    psi_threshold: float = Field(
        default=0.2, ge=0, le=100, description="PSI at or above which a column is flagged."
    )
    distance_bins: int = Field(
        default=10, ge=2, le=10_000, description="Groups PSI and Jensen-Shannon merge bins into."
    )
    min_rows: int = Field(
        default=30, ge=1, le=1_000_000_000, description="Fewer rows: reported, not tested."
    )
    multivariate: bool = Field(default=True, description="Run the domain-classifier test.")
    multivariate_max_rows: int = Field(
        default=2_000, ge=20, le=10_000_000, description="Rows per side the classifier uses."
    )
    multivariate_min_auc: float = Field(
        default=0.55, ge=0.5, le=1, description="Held-out AUC floor of the domain classifier."
    )
    seed: int = Field(default=0, ge=0, description="Seed of the domain classifier.")


_URL_PATTERN = r"^https?://\S+$"


class MonitoringConfig(_Section):
    """The monitor: windows of served predictions, drift, delayed labels and alerts.

    Parameters
    ----------
    drift : DriftConfig
        How drift is tested.
    window_rows : int, default 10000
        A window closes (and is checked) after this many predictions.
    window_seconds : float or None, default None
        When set, windows are by time instead: aligned spans of this many seconds.
    reference_bins : int, default 100
        Bins per numeric column of a reference profile (at reference quantiles).
    reference_sample_rows : int, default 2000
        Rows a reference profile keeps as a uniform sample for the multivariate test
        (0 keeps none).
    label_ttl_s : float, default 86400
        How long a prediction waits for its delayed label before it is dropped.
    max_pending_predictions : int, default 1000000
        Predictions held while waiting for labels; the oldest are dropped beyond this.
    webhooks : tuple of str, default ()
        URLs (http or https) that alerts are POSTed to; the environment takes a
        comma-separated list.
    performance_window_labels : int, default 1000
        A performance window closes after this many labelled predictions.
    performance_tolerance : float, default 0.05
        A window whose AUC is more than this below the version's registered ``auc`` metric
        is ``degraded``.
    host : str, default "127.0.0.1"
        Interface of ``fedloop monitor serve``.
    port : int, default 8500
        Its TCP port.
    max_body_bytes : int, default 64 MiB
        Largest ingest body taken.
    """

    drift: DriftConfig = DriftConfig()
    window_rows: int = Field(
        default=10_000, ge=1, le=1_000_000_000, description="Predictions per window."
    )
    window_seconds: float | None = Field(
        default=None, gt=0, le=31_536_000, description="Seconds after which a window closes."
    )
    reference_bins: int = Field(
        default=100, ge=2, le=100_000, description="Bins per numeric reference column."
    )
    reference_sample_rows: int = Field(
        default=2_000,
        ge=0,
        le=10_000_000,
        description="Reference rows kept for multivariate tests.",
    )
    label_ttl_s: float = Field(
        default=86_400.0, gt=0, le=31_536_000, description="Seconds a prediction waits for a label."
    )
    max_pending_predictions: int = Field(
        default=1_000_000, ge=1, le=1_000_000_000, description="Predictions held awaiting labels."
    )
    webhooks: tuple[str, ...] = Field(default=(), description="Alert webhook URLs.")
    performance_window_labels: int = Field(
        default=1_000, ge=1, le=100_000_000, description="Labelled predictions per window."
    )
    performance_tolerance: float = Field(
        default=0.05, ge=0, le=1, description="AUC drop below the registered AUC that degrades."
    )
    host: str = Field(default="127.0.0.1", min_length=1, description="Monitor interface.")
    port: int = Field(default=8500, ge=0, le=65535, description="Monitor TCP port.")
    max_body_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, le=2**31, description="Largest ingest body."
    )

    @field_validator("webhooks", mode="before")
    @classmethod
    def _split_webhooks(cls, value: Any) -> Any:
        # The environment can only hold strings: FEDLOOP_MONITORING__WEBHOOKS="https://a,https://b".
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("webhooks")
    @classmethod
    def _check_webhooks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not re.fullmatch(_URL_PATTERN, url):
                raise ValueError(f"each webhook must be an http(s) URL; got {url!r}")
        return value


class FedloopConfig(_Section):
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
