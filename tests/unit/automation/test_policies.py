"""Policy helpers for the controller: enabled policies, lookup, trigger kinds and trainers."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fedloop.automation import (
    check_trainer_path,
    find_policy,
    get_policy,
    improvement,
    load_policies,
    trainer_callable,
    trigger_kinds,
)
from fedloop.core import ConfigError, FedloopConfig, NotFound, Policy, resolve
from fedloop.store import load_config


def _policy(name: str, trainer: str = "json:dumps", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "model": "fraud-fl",
        "trigger": {"on_drift": True},
        "action": {"kind": "federated", "trainer": trainer},
        **fields,
    }


def _config(*policies: dict[str, Any], **automation: Any) -> FedloopConfig:
    return resolve({"automation": {"policies": list(policies), **automation}}, {}, {}).config


@pytest.fixture
def trainer_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Return the name of a fresh importable module defining ``retrain`` (and a non-callable)."""
    name = f"trainer_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("def retrain(request):\n    return 1\n\nRATE = 0.1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_load_policies_keeps_enabled_in_file_order() -> None:
    """Only enabled policies are returned, in the order of the file."""
    # Arrange
    config = _config(_policy("a"), _policy("b", enabled=False), _policy("c"))

    # Act
    policies = load_policies(config)

    # Assert
    assert [p.name for p in policies] == ["a", "c"]


def test_load_policies_is_empty_when_automation_is_off() -> None:
    """automation.enabled = false turns every policy off."""
    # Arrange
    config = _config(_policy("a"), enabled=False)

    # Act
    policies = load_policies(config)

    # Assert
    assert policies == ()


def test_load_policies_refuses_missing_trainer_module_with_line(tmp_path: Path) -> None:
    """A trainer whose module does not exist is refused at load, naming the field and line."""
    # Arrange
    (tmp_path / "fedloop.toml").write_text(
        "[[automation.policies]]\n"
        'name = "p"\n'
        'model = "fraud-fl"\n'
        "trigger = { on_drift = true }\n"
        "[automation.policies.action]\n"
        'kind = "federated"\n'
        'trainer = "no_such_module_here:retrain"\n'
    )
    resolved = load_config(cwd=tmp_path, environ={}, overrides={})

    # Act / Assert
    with pytest.raises(
        ConfigError, match=r"fedloop\.toml line 7: module 'no_such_module_here'"
    ) as info:
        load_policies(resolved)
    assert info.value.field == "automation.policies[0].action.trainer"
    assert info.value.value == "no_such_module_here:retrain"


def test_load_policies_can_skip_the_trainer_check() -> None:
    """check_trainers=False returns policies whose trainers do not exist."""
    # Arrange
    config = _config(_policy("a", trainer="no_such_module_here:retrain"))

    # Act
    policies = load_policies(config, check_trainers=False)

    # Assert
    assert [p.name for p in policies] == ["a"]


def test_get_policy_returns_it_by_name() -> None:
    """get_policy finds a policy by name."""
    # Arrange
    policies = load_policies(_config(_policy("a"), _policy("b")))

    # Act
    found = get_policy(policies, "b")

    # Assert
    assert found is policies[1]


def test_get_policy_refuses_unknown_name() -> None:
    """An unknown name raises NotFound naming it and listing the policies there are."""
    # Arrange
    policies = load_policies(_config(_policy("a")))

    # Act / Assert
    with pytest.raises(NotFound, match=r"'nope'") as info:
        get_policy(policies, "nope")
    assert info.value.field == "policy"
    assert info.value.hint is not None
    assert "'a'" in info.value.hint


def test_find_policy_returns_none_for_unknown_name() -> None:
    """find_policy returns None when no policy has the name."""
    # Act
    found = find_policy(load_policies(_config(_policy("a"))), "nope")

    # Assert
    assert found is None


@pytest.mark.parametrize(
    ("trigger", "kinds"),
    [
        pytest.param({"on_drift": True}, ("drift", "manual"), id="drift"),
        pytest.param(
            {"on_drift": True, "metric": "auc", "below": 0.8, "every_s": 3600},
            ("drift", "metric", "schedule", "manual"),
            id="all",
        ),
        pytest.param({"metric": "ece", "above": 0.1}, ("metric", "manual"), id="metric"),
        pytest.param({"manual_only": True}, ("manual",), id="manual-only"),
    ],
)
def test_trigger_kinds(trigger: dict[str, Any], kinds: tuple[str, ...]) -> None:
    """trigger_kinds lists the automatic sources in a fixed order, then manual."""
    # Arrange
    policy = Policy.model_validate(_policy("a", trigger=trigger))

    # Act
    found = trigger_kinds(policy)

    # Assert
    assert found == kinds


@pytest.mark.parametrize(
    ("metric", "challenger", "champion", "expected"),
    [
        pytest.param("auc", 0.90, 0.85, 0.05, id="higher-is-better"),
        pytest.param("brier", 0.10, 0.12, 0.02, id="lower-is-better"),
        pytest.param("ece", 0.05, 0.02, -0.03, id="lower-is-better-worse"),
    ],
)
def test_improvement_is_positive_when_better(
    metric: str, challenger: float, champion: float, expected: float
) -> None:
    """The improvement is positive when the challenger is better, whatever the direction."""
    # Act
    delta = improvement(metric, challenger=challenger, champion=champion)

    # Assert
    assert delta == pytest.approx(expected)


def test_check_trainer_path_does_not_import_the_module(trainer_module: str) -> None:
    """The check finds the module without importing it."""
    # Arrange
    policy = Policy.model_validate(_policy("a", trainer=f"{trainer_module}:retrain"))

    # Act
    check_trainer_path(policy)

    # Assert
    assert trainer_module not in sys.modules


def test_check_trainer_path_refuses_missing_parent_package() -> None:
    """A dotted module below a package that does not exist is refused."""
    # Arrange
    policy = Policy.model_validate(_policy("a", trainer="no_such_pkg_here.loop:retrain"))

    # Act / Assert
    with pytest.raises(ConfigError, match=r"no_such_pkg_here\.loop") as info:
        check_trainer_path(policy)
    assert info.value.field == "action.trainer"


def test_trainer_callable_imports_the_function(trainer_module: str) -> None:
    """trainer_callable imports the module and returns the named function."""
    # Arrange
    policy = Policy.model_validate(_policy("a", trainer=f"{trainer_module}:retrain"))

    # Act
    trainer = trainer_callable(policy)

    # Assert
    assert trainer(None) == 1
    assert trainer_module in sys.modules


@pytest.mark.parametrize("function", ["missing", "RATE"])
def test_trainer_callable_refuses_missing_function(trainer_module: str, function: str) -> None:
    """A name the module lacks, or one that is not callable, is refused with the indexed field."""
    # Arrange
    config = _config(_policy("a"), _policy("b", trainer=f"{trainer_module}:{function}"))
    policy = config.automation.policies[1]

    # Act / Assert
    with pytest.raises(ConfigError, match=rf"has no function '{function}'") as info:
        trainer_callable(policy, config=config)
    assert info.value.field == "automation.policies[1].action.trainer"
