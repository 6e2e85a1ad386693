"""[automation] policies in fedloop.toml: parsing, validation, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedloop.core import ConfigError, Policy, ResolvedConfig, TriggerPolicy
from fedloop.store import load_config

MARK = "# <-"

FULL = """\
[automation]
tick_s = 5.0                       # controller reconciliation interval

[[automation.policies]]
name = "fraud-drift"
model = "fraud-fl"
enabled = true

[automation.policies.trigger]
on_drift = true
metric = "auc"
below = 0.85
min_windows = 2
every_s = 86400
cooldown_s = 600

[automation.policies.action]
kind = "federated"
trainer = "fedloop.scenarios.fraud.loop:retrain"
warm_start = true
rounds = 5
params = { local_epochs = 1 }

[automation.policies.gate]
holdout = true
metric = "auc"
min_improvement = 0.0
shadow_labels = 50

[automation.policies.rollout]
steps = [0.1, 0.5, 1.0]
step_min_requests = 200
step_min_s = 10.0
max_error_rate = 0.02
max_p99_ms = 500.0
max_metric_drop = 0.02

[[automation.policies]]
name = "fraud-nightly"
model = "fraud-fl"
trigger = { every_s = 86400 }
action = { kind = "data_parallel", trainer = "fedloop.scenarios.fraud.loop:retrain_dp" }
"""

#: A valid policy in one table, for cases to extend.
ONE = """\
[[automation.policies]]
name = "p"
model = "fraud-fl"
"""
ACTION = 'action = { kind = "federated", trainer = "pkg.loop:retrain" }\n'


def _load(tmp_path: Path, text: str, **environ: str) -> ResolvedConfig:
    (tmp_path / "fedloop.toml").write_text(text, encoding="utf-8")
    return load_config(cwd=tmp_path, environ=environ, overrides={})


def _marked_line(text: str) -> int:
    """Return the 1-based line that carries the ``# <-`` marker."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if MARK in line)


def test_full_policy_parses(tmp_path: Path) -> None:
    """Every documented key of a policy is read, and the second policy keeps its defaults."""
    # Act
    automation = _load(tmp_path, FULL).config.automation

    # Assert
    first, second = automation.policies
    assert automation.tick_s == 5.0
    assert (first.name, first.model, first.enabled) == ("fraud-drift", "fraud-fl", True)
    assert first.trigger.bound == 0.85
    assert (first.trigger.min_windows, first.trigger.every_s) == (2, 86400)
    assert first.action.params == {"local_epochs": 1}
    assert first.gate.shadow_labels == 50
    assert first.rollout.steps == (0.1, 0.5, 1.0)
    assert second.action.kind == "data_parallel"
    assert second.rollout == first.rollout


def test_no_automation_section_means_no_policies(tmp_path: Path) -> None:
    """Without [automation] the controller is on, ticks every 5 s and has no policies."""
    # Act
    automation = _load(tmp_path, '[project]\nname = "x"\n').config.automation

    # Assert
    assert (automation.enabled, automation.tick_s, automation.policies) == (True, 5.0, ())


def test_policy_sources_are_indexed(tmp_path: Path) -> None:
    """Keys of a list of tables have indexed sources: file where written, default elsewhere."""
    # Act
    sources = _load(tmp_path, FULL).sources

    # Assert
    assert sources["automation.policies[0].rollout.steps"] == "file"
    assert sources["automation.policies[1].trigger.every_s"] == "file"
    assert sources["automation.policies[1].rollout.steps"] == "default"


def test_lower_is_better_metric_takes_above(tmp_path: Path) -> None:
    """A trigger on brier is bounded with `above`."""
    # Act
    policy = _load(tmp_path, ONE + ACTION + 'trigger = { metric = "brier", above = 0.2 }\n')

    # Assert
    assert policy.config.automation.policies[0].trigger.bound == 0.2


def test_manual_only_policy_parses(tmp_path: Path) -> None:
    """A trigger with manual_only = true and no automatic source is valid."""
    # Act
    resolved = _load(tmp_path, ONE + ACTION + "trigger = { manual_only = true }\n")

    # Assert
    trigger = resolved.config.automation.policies[0].trigger
    assert trigger == TriggerPolicy(manual_only=True)
    assert trigger.bound is None


def test_environment_overrides_one_policy(tmp_path: Path) -> None:
    """FEDLOOP_AUTOMATION__POLICIES__1__ENABLED=false disables the second policy only."""
    # Act
    resolved = _load(tmp_path, FULL, FEDLOOP_AUTOMATION__POLICIES__1__ENABLED="false")

    # Assert
    assert [p.enabled for p in resolved.config.automation.policies] == [True, False]
    assert resolved.sources["automation.policies[1].enabled"] == "env"
    assert resolved.config.automation.policies[1].name == "fraud-nightly"


def test_environment_steps_are_comma_separated(tmp_path: Path) -> None:
    """Rollout steps from the environment are a comma-separated list."""
    # Act
    resolved = _load(tmp_path, FULL, FEDLOOP_AUTOMATION__POLICIES__0__ROLLOUT__STEPS="0.25, 1.0")

    # Assert
    assert resolved.config.automation.policies[0].rollout.steps == (0.25, 1.0)


def test_environment_override_of_missing_policy_is_refused(tmp_path: Path) -> None:
    """An index beyond the policies in the file is refused, naming the entry."""
    # Act / Assert
    with pytest.raises(ConfigError, match=r"has 2 entries") as info:
        _load(tmp_path, FULL, FEDLOOP_AUTOMATION__POLICIES__2__ENABLED="false")
    assert info.value.field == "automation.policies[2]"


def test_bad_environment_value_names_the_variable_not_a_line(tmp_path: Path) -> None:
    """A bad policy value from the environment names the variable and no line."""
    # Act / Assert
    with pytest.raises(ConfigError, match=r"FEDLOOP_AUTOMATION__POLICIES__0__ENABLED") as info:
        _load(tmp_path, FULL, FEDLOOP_AUTOMATION__POLICIES__0__ENABLED="maybe")
    assert info.value.field == "automation.policies[0].enabled"
    assert " line " not in info.value.message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param(
            ONE + ACTION + "trigger = { on_drift = true }\n"
            "[automation.policies.rollout]\n"
            "steps = [0.5, 0.1]  # <-\n",
            "automation.policies[0].rollout.steps",
            id="steps-decreasing",
        ),
        pytest.param(
            ONE + ACTION + "trigger = { on_drift = true }\n"
            "rollout = { steps = [0.1, 0.5] }  # <-\n",
            "automation.policies[0].rollout.steps",
            id="steps-not-ending-at-1-inline",
        ),
        pytest.param(
            ONE + ACTION + "trigger = { on_drift = true }\n"
            "[automation.policies.rollout]\n"
            "steps = [\n  0.1,\n  'half',  # <- a string, and ] [ in a comment\n  1.0,\n]\n",
            "automation.policies[0].rollout.steps[1]",
            id="steps-item-multiline",
        ),
        pytest.param(
            ONE + ACTION + '[automation.policies.trigger]\nmetric = "auc"  # <-\ncooldown_s = 60\n',
            "automation.policies[0].trigger.metric",
            id="metric-without-bound",
        ),
        pytest.param(
            ONE + ACTION + "[automation.policies.trigger]\non_drift = true\nbelow = 0.8  # <-\n",
            "automation.policies[0].trigger.below",
            id="bound-without-metric",
        ),
        pytest.param(
            ONE + ACTION + '[automation.policies.trigger]\nmetric = "auc"\nabove = 0.8  # <-\n',
            "automation.policies[0].trigger.above",
            id="wrong-direction",
        ),
        pytest.param(
            ONE + ACTION + "[automation.policies.trigger]  # <-\ncooldown_s = 60\n",
            "automation.policies[0].trigger",
            id="no-trigger-source",
        ),
        pytest.param(
            ONE + ACTION + "[automation.policies.trigger]\n"
            "every_s = 3600\n"
            "manual_only = true  # <-\n",
            "automation.policies[0].trigger.manual_only",
            id="manual-only-with-schedule",
        ),
        pytest.param(
            ONE + ACTION + "trigger.on_drift = 'often'  # <-\n",
            "automation.policies[0].trigger.on_drift",
            id="dotted-key-bad-bool",
        ),
        pytest.param(
            ONE + "trigger = { on_drift = true }\n"
            "[automation.policies.action]\n"
            'kind = "federated"\n'
            'trainer = "pkg.loop.retrain"  # <-\n',
            "automation.policies[0].action.trainer",
            id="trainer-not-module-function",
        ),
        pytest.param(
            ONE + "trigger = { on_drift = true }\n"
            "[automation.policies.action]  # <-\n"
            'kind = "federated"\n',
            "automation.policies[0].action.trainer",
            id="trainer-missing",
        ),
        pytest.param(
            ONE + "trigger = { on_drift = true }\n"
            'action = { kind = "horovod", trainer = "a:b" }  # <-\n',
            "automation.policies[0].action.kind",
            id="unknown-action-kind",
        ),
        pytest.param(
            ONE + ACTION + "trigger = { on_drift = true }\n"
            "[automation.policies.gate]\n"
            "holdout = false  # <-\n",
            "automation.policies[0].gate.holdout",
            id="gate-compares-nothing",
        ),
        pytest.param(
            ONE + ACTION + "trigger = { on_drift = true }\n"
            "[[automation.policies]]  # <-\n"
            'name = "q"\n'
            'model = "fraud-fl"\n' + ACTION,
            "automation.policies[1].trigger",
            id="second-policy-trigger-missing",
        ),
        pytest.param(
            ONE + ACTION + "trigger = { on_drift = true }\n"
            "[[automation.policies]]\n"
            'name = "p"  # <-\n'
            'model = "fraud-fl"\n'
            "trigger = { every_s = 60 }\n" + ACTION,
            "automation.policies[1].name",
            id="duplicate-name",
        ),
        pytest.param(
            ONE + ACTION + "trigger = { on_drift = true }\n"
            "[[automation.policies]]\n"
            'name = "q"\n'
            'model = "fraud-fl"\n'
            "trigger = { every_s = 60 }\n" + ACTION + "[automation.policies.rollout]\n"
            "step_min_s = 1\n"
            "bogus = 1  # <-\n",
            "automation.policies[1].rollout.bogus",
            id="unknown-key-second-policy",
        ),
        pytest.param(
            '[[automation.policies]]\nname = "has space"  # <-\n'
            'model = "m"\ntrigger = { on_drift = true }\n' + ACTION,
            "automation.policies[0].name",
            id="bad-name",
        ),
        pytest.param(
            "[automation]\ntick_s = 0  # <-\n",
            "automation.tick_s",
            id="tick-not-positive",
        ),
        pytest.param(
            '[project]\nname = "x"\n\n[serving]\nhost = "0.0.0.0"\nport = "x"  # <-\n',
            "serving.port",
            id="other-section",
        ),
        pytest.param(
            '[serving.canary]\nfraud-fl = { ref = "fraud-fl:2", fraction = 2 }  # <-\n',
            "serving.canary.fraud-fl.fraction",
            id="other-section-inline-table",
        ),
    ],
)
def test_malformed_policy_names_field_and_line(tmp_path: Path, text: str, field: str) -> None:
    """A malformed value is refused with its dotted field and the line it is written on."""
    # Arrange
    line = _marked_line(text)

    # Act / Assert
    with pytest.raises(ConfigError, match=rf"fedloop\.toml line {line}:") as info:
        _load(tmp_path, text)
    assert info.value.field == field
    assert info.value.message.startswith(f"`{field}` in ")
    assert info.value.hint is not None
    assert f"line {line}" in info.value.hint


def test_error_message_reads_as_documented(tmp_path: Path) -> None:
    """The message says what, where, what was got; the hint names the table and the policy."""
    # Arrange
    text = FULL.replace("steps = [0.1, 0.5, 1.0]", "steps = [0.5, 0.1]")

    # Act / Assert
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    path = tmp_path / "fedloop.toml"
    assert info.value.message == (
        f"`automation.policies[0].rollout.steps` in {path} line 31: must be strictly "
        "increasing in (0, 1] and end at 1.0; got [0.5, 0.1]."
    )
    assert info.value.hint == (
        f"Fix `steps` under [automation.policies.rollout] (policy 'fraud-drift') in {path} "
        "line 31; see `fedloop config show` for the [automation] settings."
    )
    assert info.value.value == [0.5, 0.1]


def test_missing_key_hint_says_add(tmp_path: Path) -> None:
    """A missing key's hint says to add it under its table, at the table's line."""
    # Arrange
    text = ONE + "trigger = { on_drift = true }\n"

    # Act / Assert
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    assert info.value.message.endswith("fedloop.toml line 1: Field required.")
    assert info.value.field == "automation.policies[0].action"
    assert info.value.hint is not None
    assert info.value.hint.startswith("Add `action` under [[automation.policies]] (policy 'p')")


def test_resolved_config_locates_keys(tmp_path: Path) -> None:
    """ResolvedConfig.line_of and where give the line of a key that came from the file."""
    # Arrange
    resolved = _load(tmp_path, FULL)
    trainer = ("automation", "policies", 1, "action", "trainer")
    default = ("automation", "policies", 1, "rollout", "steps")

    # Act
    line, where, missing = (
        resolved.line_of(trainer),
        resolved.where(trainer),
        resolved.line_of(default),
    )

    # Assert
    assert line == 42  # the inline `action = {...}` of the second policy
    assert where == f"in {tmp_path / 'fedloop.toml'} line {line}"
    assert missing is None


def test_policy_model_is_frozen() -> None:
    """A policy cannot be changed after validation."""
    # Arrange
    policy = Policy.model_validate(
        {
            "name": "p",
            "model": "m",
            "trigger": {"on_drift": True},
            "action": {"kind": "federated", "trainer": "a:b"},
        }
    )

    # Act / Assert
    with pytest.raises(ValueError, match="frozen"):
        policy.name = "q"  # type: ignore[misc]
