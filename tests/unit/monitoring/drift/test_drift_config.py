"""[monitoring] and [monitoring.drift] settings: defaults, precedence and validation."""

from __future__ import annotations

import pytest

from fedloop.core import ConfigError, resolve
from fedloop.monitoring import DriftConfig, MonitoringConfig


def test_defaults() -> None:
    """The defaults are BH at 0.05 with 'auto' tests, 10k-row windows and no webhooks."""
    # Act
    monitoring = resolve({}, {}, {}).config.monitoring

    # Assert
    assert isinstance(monitoring, MonitoringConfig)
    assert monitoring.drift == DriftConfig()
    assert (monitoring.drift.alpha, monitoring.drift.correction) == (0.05, "bh")
    assert monitoring.drift.numeric_test == "auto"
    assert (monitoring.window_rows, monitoring.window_seconds) == (10_000, None)
    assert monitoring.webhooks == ()


def test_environment_and_flags_reach_nested_drift_keys() -> None:
    """FEDLOOP_MONITORING__DRIFT__ALPHA is read, and a flag beats it."""
    # Act
    resolved = resolve(
        {"monitoring": {"drift": {"correction": "holm"}}},
        {"FEDLOOP_MONITORING__DRIFT__ALPHA": "0.01"},
        {"monitoring.drift.min_effect_numeric": 0.2},
    )

    # Assert
    drift = resolved.config.monitoring.drift
    assert (drift.alpha, drift.correction, drift.min_effect_numeric) == (0.01, "holm", 0.2)
    assert resolved.sources["monitoring.drift.alpha"] == "env"
    assert resolved.sources["monitoring.drift.min_effect_numeric"] == "flag"


def test_webhooks_from_the_environment_are_comma_separated() -> None:
    """FEDLOOP_MONITORING__WEBHOOKS takes a comma-separated list of URLs."""
    # Act
    monitoring = resolve(
        {}, {"FEDLOOP_MONITORING__WEBHOOKS": "https://a.example/x, http://b:9000/y"}, {}
    ).config.monitoring

    # Assert
    assert monitoring.webhooks == ("https://a.example/x", "http://b:9000/y")


@pytest.mark.parametrize(
    ("values", "field"),
    [
        pytest.param({"drift": {"alpha": 1.5}}, "monitoring.drift.alpha", id="alpha"),
        pytest.param({"drift": {"correction": "sidak"}}, "monitoring.drift.correction", id="corr"),
        pytest.param({"drift": {"numeric_test": "t"}}, "monitoring.drift.numeric_test", id="test"),
        pytest.param(
            {"drift": {"min_effect_categorical": 2}},
            "monitoring.drift.min_effect_categorical",
            id="js-floor",
        ),
        pytest.param({"drift": {"nope": 1}}, "monitoring.drift.nope", id="extra"),
        pytest.param({"window_rows": 0}, "monitoring.window_rows", id="window"),
        pytest.param({"webhooks": ["ftp://x"]}, "monitoring.webhooks", id="webhook"),
    ],
)
def test_bad_values_name_the_key(values: dict[str, object], field: str) -> None:
    """An out-of-range or unknown key raises ConfigError naming it."""
    # Act / Assert
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as err:
        resolve({"monitoring": values}, {}, {})
    assert err.value.field == field
