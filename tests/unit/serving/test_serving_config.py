"""[serving] settings: defaults, validation naming the key, environment and flag precedence."""

from __future__ import annotations

import pytest

from fedloop.core import ConfigError, ServingConfig, resolve


def test_defaults_work_on_a_laptop() -> None:
    """The defaults serve fraud-fl@champion on loopback with batching on and no payload log."""
    # Act
    serving = resolve({}, {}, {}).config.serving

    # Assert
    assert serving.models == ("fraud-fl@champion",)
    assert (serving.host, serving.port, serving.workers) == ("127.0.0.1", 8080, 1)
    assert serving.batching.enabled
    assert serving.payload_log.url is None


def test_models_from_the_environment_are_comma_separated() -> None:
    """FEDLOOP_SERVING__MODELS takes a comma-separated list."""
    # Act
    serving = resolve({}, {"FEDLOOP_SERVING__MODELS": "a@champion, b:2"}, {}).config.serving

    # Assert
    assert serving.models == ("a@champion", "b:2")
    assert serving.served_names() == ("a", "b")


def test_flag_beats_file() -> None:
    """A flag overrides fedloop.toml for a nested serving key."""
    # Act
    resolved = resolve(
        {"serving": {"batching": {"max_wait_ms": 5}}}, {}, {"serving.batching.max_wait_ms": 1}
    )

    # Assert
    assert resolved.config.serving.batching.max_wait_ms == 1
    assert resolved.sources["serving.batching.max_wait_ms"] == "flag"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        pytest.param({"port": 70000}, "serving.port", id="port"),
        pytest.param({"models": ["a@x", "a:2"]}, "serving.models", id="duplicate-name"),
        pytest.param({"models": ["bad ref!"]}, "serving.models", id="bad-ref"),
        pytest.param({"models": []}, "serving.models", id="no-models"),
        pytest.param({"payload_log": {"url": "ftp://x"}}, "serving.payload_log.url", id="url"),
        pytest.param(
            {"payload_log": {"fraction_sampled": 1.5}},
            "serving.payload_log.fraction_sampled",
            id="fraction",
        ),
        pytest.param(
            {"canary": {"a": {"ref": "a@c", "fraction": 2}}},
            "serving.canary.a.fraction",
            id="canary-fraction",
        ),
        pytest.param({"shadow": {"a": "?"}}, "serving.shadow", id="shadow-ref"),
        pytest.param(
            {"batching": {"max_batch_size": 0}}, "serving.batching.max_batch_size", id="batch"
        ),
        pytest.param({"max_body_bytes": 10}, "serving.max_body_bytes", id="body"),
        pytest.param({"colour": "red"}, "serving.colour", id="unknown-key"),
    ],
)
def test_bad_values_name_the_key(values: dict[str, object], field: str) -> None:
    """Each invalid [serving] value is a ConfigError naming its dotted key."""
    # Act / Assert
    with pytest.raises(ConfigError) as info:
        resolve({"serving": values}, {}, {})
    assert info.value.field == field


def test_config_is_frozen() -> None:
    """ServingConfig cannot be changed after validation."""
    # Arrange
    serving = ServingConfig()

    # Act / Assert
    with pytest.raises(ValueError, match="frozen"):
        serving.port = 1  # type: ignore[misc]
