"""The [distributed] section: defaults, precedence and refused values naming their key."""

from __future__ import annotations

import pytest

from fedloop.core import ConfigError, DistributedConfig, parse_toml, resolve


def test_defaults_train_one_worker_on_this_machine() -> None:
    """By default one elastic worker, gloo or nccl by hardware, a free local rendezvous port."""
    # Act
    config = resolve({}, {}, {}).config.distributed

    # Assert
    assert (config.workers, config.launcher, config.backend) == (1, "elastic", "auto")
    assert (config.rendezvous_host, config.rendezvous_port) == ("127.0.0.1", 0)
    assert config.checkpoint_every_steps == 200


def test_environment_and_flags_set_distributed_keys() -> None:
    """FEDLOOP_DISTRIBUTED__WORKERS and a flag feed [distributed] like any section."""
    # Act
    resolved = resolve(
        {}, {"FEDLOOP_DISTRIBUTED__WORKERS": "2"}, {"distributed.checkpoint_every_steps": 50}
    )

    # Assert
    assert resolved.config.distributed.workers == 2
    assert resolved.config.distributed.checkpoint_every_steps == 50
    assert resolved.source_of(("distributed", "workers")) == "env"


def test_ipv6_rendezvous_is_split_into_host_and_port() -> None:
    """A bracketed IPv6 endpoint keeps its colons in the host."""
    # Act
    config = DistributedConfig(rendezvous="[::1]:29400")

    # Assert
    assert (config.rendezvous_host, config.rendezvous_port) == ("::1", 29400)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        pytest.param({"workers": 0}, "distributed.workers", id="no-workers"),
        pytest.param({"workers": 5000}, "distributed.workers", id="too-many-workers"),
        pytest.param({"launcher": "slurm"}, "distributed.launcher", id="launcher"),
        pytest.param({"backend": "mpi"}, "distributed.backend", id="backend"),
        pytest.param(
            {"checkpoint_every_steps": 0}, "distributed.checkpoint_every_steps", id="ckpt"
        ),
        pytest.param({"max_restarts": -1}, "distributed.max_restarts", id="restarts"),
        pytest.param({"rendezvous": "localhost"}, "distributed.rendezvous", id="no-port"),
        pytest.param({"rendezvous": "127.0.0.1:70000"}, "distributed.rendezvous", id="port"),
        pytest.param({"rendezvous_timeout_s": 0}, "distributed.rendezvous_timeout_s", id="timeout"),
        pytest.param({"ray_address": "auto"}, "distributed.ray_address", id="ray-address"),
        pytest.param({"workerz": 2}, "distributed.workerz", id="unknown-key"),
    ],
)
def test_bad_values_are_refused_naming_the_key(values: dict[str, object], field: str) -> None:
    """Each refused [distributed] value raises ConfigError with its dotted key as the field."""
    # Act / Assert
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as caught:
        resolve({"distributed": values}, {}, {})
    assert caught.value.field == field


def test_a_bad_value_in_the_file_names_its_line() -> None:
    """A worker count of 0 in fedloop.toml is reported with the file's line."""
    # Arrange
    doc = parse_toml("[project]\nname = 'x'\n\n[distributed]\nworkers = 0\n")

    # Act / Assert
    with pytest.raises(ConfigError, match=r"line 5") as caught:
        resolve(doc, {}, {})
    assert caught.value.field == "distributed.workers"
