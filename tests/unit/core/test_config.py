"""Configuration: precedence (flag > env > file > default), validation and TOML parsing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from fedloop.core import ConfigError, FedloopConfig, parse_toml, resolve

DEFAULT_BUSY_TIMEOUT_MS = 30_000

timeouts = st.one_of(st.none(), st.integers(min_value=0, max_value=3_600_000))
names = st.one_of(
    st.none(),
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
        min_size=1,
        max_size=200,
    ),
)


def _layers(
    section: str, key: str, file: Any, env: Any, flag: Any
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    file_values = {section: {key: file}} if file is not None else {}
    environ = {f"FEDLOOP_{section.upper()}__{key.upper()}": str(env)} if env is not None else {}
    overrides = {f"{section}.{key}": flag}
    return file_values, environ, overrides


def _expected(default: Any, file: Any, env: Any, flag: Any) -> tuple[Any, str]:
    for value, source in ((flag, "flag"), (env, "env"), (file, "file")):
        if value is not None:
            return value, source
    return default, "default"


@given(file=timeouts, env=timeouts, flag=timeouts)
def test_busy_timeout_precedence(file: int | None, env: int | None, flag: int | None) -> None:
    """store.busy_timeout_ms comes from the flag, else env, else file, else the default."""
    # Arrange
    layers = _layers("store", "busy_timeout_ms", file, env, flag)

    # Act
    resolved = resolve(*layers)

    # Assert
    value, source = _expected(DEFAULT_BUSY_TIMEOUT_MS, file, env, flag)
    assert resolved.config.store.busy_timeout_ms == value
    assert resolved.sources["store.busy_timeout_ms"] == source


@given(file=names, env=names, flag=names)
def test_project_name_precedence(file: str | None, env: str | None, flag: str | None) -> None:
    """project.name comes from the flag, else env, else file, else the default."""
    # Arrange
    layers = _layers("project", "name", file, env, flag)

    # Act
    resolved = resolve(*layers)

    # Assert
    value, source = _expected("default", file, env, flag)
    assert resolved.config.project.name == value
    assert resolved.sources["project.name"] == source


def test_defaults_need_no_source() -> None:
    """With no file, environment or flags every key has its default and source 'default'."""
    # Act
    resolved = resolve({}, {}, {})

    # Assert
    assert resolved.config == FedloopConfig()
    assert set(resolved.sources.values()) == {"default"}
    assert "tracking.flush_interval_ms" in resolved.sources


def test_nested_env_var_sets_store_url() -> None:
    """FEDLOOP_STORE__URL sets store.url."""
    # Act
    resolved = resolve({}, {"FEDLOOP_STORE__URL": "sqlite:///x.db"}, {})

    # Assert
    assert resolved.config.store.url == "sqlite:///x.db"
    assert resolved.sources["store.url"] == "env"


def test_store_url_alias_env_var_sets_store_url() -> None:
    """FEDLOOP_STORE_URL is an alias of FEDLOOP_STORE__URL."""
    # Act
    resolved = resolve({}, {"FEDLOOP_STORE_URL": "sqlite:///alias.db"}, {})

    # Assert
    assert resolved.config.store.url == "sqlite:///alias.db"
    assert resolved.sources["store.url"] == "env"


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param(
            {"FEDLOOP_STORE__URL": "sqlite:///nested.db", "FEDLOOP_STORE_URL": "sqlite:///a.db"},
            id="nested-first",
        ),
        pytest.param(
            {"FEDLOOP_STORE_URL": "sqlite:///a.db", "FEDLOOP_STORE__URL": "sqlite:///nested.db"},
            id="alias-first",
        ),
    ],
)
def test_nested_env_var_wins_over_alias_in_any_order(environ: dict[str, str]) -> None:
    """With both set, FEDLOOP_STORE__URL wins whatever the order of the environment."""
    # Act
    resolved = resolve({}, environ, {})

    # Assert
    assert resolved.config.store.url == "sqlite:///nested.db"


def test_env_var_value_is_coerced() -> None:
    """Environment strings are parsed into the key's type."""
    # Act
    resolved = resolve(
        {},
        {"FEDLOOP_STORE__AUTO_UPGRADE": "false", "FEDLOOP_STORE__CONNECT_TIMEOUT_S": "2.5"},
        {},
    )

    # Assert
    assert resolved.config.store.auto_upgrade is False
    assert resolved.config.store.connect_timeout_s == 2.5


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("FEDLOOP_PROJECT_NAME", id="single-underscore"),
        pytest.param("FEDLOOP_CONFIG", id="no-section"),
        pytest.param("OTHER_PROJECT__NAME", id="other-prefix"),
    ],
)
def test_unrelated_env_vars_are_ignored(name: str) -> None:
    """Variables that are not FEDLOOP_<SECTION>__<KEY> (or the alias) do not count."""
    # Act
    resolved = resolve({}, {name: "ignored"}, {})

    # Assert
    assert resolved.config.project.name == "default"


def test_none_flag_is_ignored() -> None:
    """A flag whose value is None does not override the file."""
    # Act
    resolved = resolve({"project": {"name": "fraud"}}, {}, {"project.name": None})

    # Assert
    assert resolved.config.project.name == "fraud"
    assert resolved.sources["project.name"] == "file"


@pytest.mark.parametrize(
    ("file_values", "environ", "overrides", "where"),
    [
        pytest.param(
            {"store": {"busy_timeout_ms": -1}}, {}, {}, r"in fedloop\.toml:", id="file-negative"
        ),
        pytest.param(
            {},
            {"FEDLOOP_STORE__BUSY_TIMEOUT_MS": "soon"},
            {},
            r"in the environment \(FEDLOOP_STORE__BUSY_TIMEOUT_MS\)",
            id="env-not-int",
        ),
        pytest.param(
            {},
            {},
            {"store.busy_timeout_ms": 3_600_001},
            r"on the command line:",
            id="flag-too-big",
        ),
    ],
)
def test_bad_value_names_key_and_source(
    file_values: dict[str, Any], environ: dict[str, str], overrides: dict[str, Any], where: str
) -> None:
    """A bad value raises ConfigError naming the key and where the value came from."""
    # Act / Assert
    with pytest.raises(ConfigError, match=r"store\.busy_timeout_ms") as info:
        resolve(file_values, environ, overrides)
    assert info.value.field == "store.busy_timeout_ms"
    info.match(rf"`store\.busy_timeout_ms` {where}")


def test_bad_value_error_has_hint_and_value() -> None:
    """The error carries the offending value and a hint naming the section."""
    # Act / Assert
    with pytest.raises(ConfigError, match=r"got -5") as info:
        resolve({"tracking": {"flush_interval_ms": -5}}, {}, {})
    assert info.value.value == -5
    assert info.value.hint is not None
    assert "[tracking]" in info.value.hint


FILE = r"in fedloop\.toml:"
ENV = r"in the environment"
FLAG = r"on the command line:"


@pytest.mark.parametrize(
    ("file_values", "environ", "overrides", "field", "where"),
    [
        pytest.param({"store": {"bogus": 1}}, {}, {}, "store.bogus", FILE, id="file-key"),
        pytest.param({}, {"FEDLOOP_STORE__BOGUS": "1"}, {}, "store.bogus", ENV, id="env-key"),
        pytest.param({}, {}, {"store.bogus": 1}, "store.bogus", FLAG, id="flag-key"),
        pytest.param({"nope": {"x": 1}}, {}, {}, "nope", FILE, id="file-section"),
        pytest.param({}, {"FEDLOOP_NOPE__X": "1"}, {}, "nope", ENV, id="env-section"),
        pytest.param({}, {}, {"nope.x": 1}, "nope", FLAG, id="flag-section"),
    ],
)
def test_unknown_key_is_refused(
    file_values: dict[str, Any],
    environ: dict[str, str],
    overrides: dict[str, Any],
    field: str,
    where: str,
) -> None:
    """An unknown key or section raises ConfigError naming it and its source."""
    # Act / Assert
    with pytest.raises(ConfigError, match=rf"`{re.escape(field)}` {where}") as info:
        resolve(file_values, environ, overrides)
    assert info.value.field == field


def test_malformed_env_var_name_is_refused() -> None:
    """FEDLOOP_ variables with an empty section or key raise ConfigError naming the variable."""
    # Act / Assert
    with pytest.raises(ConfigError, match=r"FEDLOOP_STORE____URL") as info:
        resolve({}, {"FEDLOOP_STORE____URL": "x"}, {})
    assert info.value.field == "FEDLOOP_STORE____URL"


def test_scalar_and_section_conflict_is_refused() -> None:
    """A flag below a key that is not a section raises ConfigError."""
    # Act / Assert
    with pytest.raises(ConfigError, match=r"store\.url\.x") as info:
        resolve({}, {}, {"store.url": "sqlite:///a.db", "store.url.x": 1})
    assert info.value.field == "store.url.x"


def test_bad_toml_reports_line() -> None:
    """Invalid TOML raises ConfigError with the line and column of the error."""
    # Act / Assert
    with pytest.raises(ConfigError, match=r"line 2, column 7") as info:
        parse_toml('[store]\nurl = \n[project]\nname = "x"\n', path="conf/fedloop.toml")
    assert info.value.field == "conf/fedloop.toml"
    assert info.value.hint


def test_parse_toml_returns_nested_sections() -> None:
    """Valid TOML parses into nested mappings."""
    # Act
    parsed = parse_toml('[store]\nbusy_timeout_ms = 10\n[project]\nname = "fraud"\n')

    # Assert
    assert parsed == {"store": {"busy_timeout_ms": 10}, "project": {"name": "fraud"}}


def test_config_is_frozen() -> None:
    """A resolved config cannot be changed."""
    # Arrange
    config = resolve({}, {}, {}).config

    # Act / Assert
    with pytest.raises(ValidationError, match=r"frozen"):
        config.store.url = "sqlite:///x.db"  # type: ignore[misc]


def test_default_store_url_is_sqlite_in_project_dir(tmp_path: Path) -> None:
    """Without store.url the store is <project.dir>/fedloop.db under the base folder."""
    # Arrange
    config = resolve({"project": {"dir": "state"}}, {}, {}).config

    # Act
    url = config.store_url(base=tmp_path)

    # Assert
    assert url == f"sqlite:///{(tmp_path / 'state' / 'fedloop.db').resolve()}"


def test_configured_store_url_wins_over_default(tmp_path: Path) -> None:
    """A configured store.url is returned unchanged."""
    # Arrange
    config = resolve({}, {"FEDLOOP_STORE__URL": "postgresql+psycopg://h/db"}, {}).config

    # Act / Assert
    assert config.store_url(base=tmp_path) == "postgresql+psycopg://h/db"


def test_default_artifacts_url_is_in_project_dir(tmp_path: Path) -> None:
    """Without store.artifacts_url artifacts live in <project.dir>/artifacts."""
    # Act
    url = FedloopConfig().artifacts_url(base=tmp_path)

    # Assert
    assert url == str((tmp_path / ".fedloop" / "artifacts").resolve())
