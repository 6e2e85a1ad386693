"""The closed loop's policies as the controller uses them: lookup, triggers and trainers."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from typing import Any, Literal, NoReturn

from fedloop.core import (
    LOWER_IS_BETTER,
    ConfigError,
    FedloopConfig,
    NotFound,
    Policy,
    ResolvedConfig,
    format_key_path,
)

__all__ = [
    "TriggerKind",
    "check_trainer_path",
    "find_policy",
    "get_policy",
    "improvement",
    "load_policies",
    "trainer_callable",
    "trigger_kinds",
]

#: The kinds of trigger a policy can have; "manual" is always possible.
TriggerKind = Literal["drift", "metric", "schedule", "manual"]


def _config_of(source: FedloopConfig | ResolvedConfig) -> FedloopConfig:
    return source.config if isinstance(source, ResolvedConfig) else source


def load_policies(
    config: FedloopConfig | ResolvedConfig, *, check_trainers: bool = True
) -> tuple[Policy, ...]:
    """Return the policies that may act: the enabled ones, none when automation is off.

    Parameters
    ----------
    config : FedloopConfig or ResolvedConfig
        The effective configuration; a ResolvedConfig also lets errors name the line of
        fedloop.toml.
    check_trainers : bool, default True
        Check that each enabled policy's trainer module exists (without importing it).

    Returns
    -------
    tuple of Policy
        In file order.

    Raises
    ------
    ConfigError
        When a trainer's module cannot be found (see :func:`check_trainer_path`).

    Example
    -------
    >>> from fedloop.core import resolve
    >>> load_policies(resolve({}, {}, {}))
    ()
    """
    automation = _config_of(config).automation
    if not automation.enabled:
        return ()
    policies = tuple(policy for policy in automation.policies if policy.enabled)
    if check_trainers:
        for policy in policies:
            check_trainer_path(policy, config=config)
    return policies


def find_policy(policies: Sequence[Policy], name: str) -> Policy | None:
    """Return the policy named ``name``, or None.

    Parameters
    ----------
    policies : sequence of Policy
        E.g. from :func:`load_policies`.
    name : str
        Policy name.

    Returns
    -------
    Policy or None
        The policy, if there is one by that name.
    """
    return next((policy for policy in policies if policy.name == name), None)


def get_policy(policies: Sequence[Policy], name: str) -> Policy:
    """Return the policy named ``name``.

    Parameters
    ----------
    policies : sequence of Policy
        E.g. from :func:`load_policies`.
    name : str
        Policy name.

    Returns
    -------
    Policy
        The policy.

    Raises
    ------
    NotFound
        When none has that name; the hint lists the names there are.
    """
    policy = find_policy(policies, name)
    if policy is None:
        known = ", ".join(repr(p.name) for p in policies) or "none"
        raise NotFound(
            f"no enabled policy named {name!r}.",
            field="policy",
            value=name,
            hint=f"Enabled policies: {known}. Policies are [[automation.policies]] in "
            "fedloop.toml; see `fedloop config show`.",
        )
    return policy


def trigger_kinds(policy: Policy) -> tuple[TriggerKind, ...]:
    """Return the kinds of trigger a policy has, in a fixed order, ending with "manual".

    Parameters
    ----------
    policy : Policy
        The policy.

    Returns
    -------
    tuple of {"drift", "metric", "schedule", "manual"}
        E.g. ``("drift", "manual")``; ``("manual",)`` for ``manual_only = true``.
    """
    trigger = policy.trigger
    kinds: list[TriggerKind] = []
    if trigger.on_drift:
        kinds.append("drift")
    if trigger.metric is not None:
        kinds.append("metric")
    if trigger.every_s is not None:
        kinds.append("schedule")
    kinds.append("manual")
    return tuple(kinds)


def improvement(metric: str, *, challenger: float, champion: float) -> float:
    """Return how much better the challenger is than the champion on ``metric``.

    Positive is better whatever the metric's direction (for brier and ece, lower is better),
    so a gate passes when this is at least ``gate.min_improvement`` and a canary regresses
    when it is below ``-rollout.max_metric_drop``.

    Parameters
    ----------
    metric : str
        The metric's name (``auc``, ``brier``...).
    challenger : float
        The challenger's value.
    champion : float
        The champion's value.

    Returns
    -------
    float
        ``challenger - champion``, negated for lower-is-better metrics.
    """
    delta = challenger - champion
    return -delta if metric in LOWER_IS_BETTER else delta


def _trainer_where(
    policy: Policy, config: FedloopConfig | ResolvedConfig | None
) -> tuple[str, str]:
    """Return the dotted field of the policy's trainer and where it was set, for messages."""
    policies = _config_of(config).automation.policies if config is not None else ()
    index = next((i for i, p in enumerate(policies) if p.name == policy.name), None)
    if index is None:
        return "action.trainer", f"in policy {policy.name!r}"
    path = ("automation", "policies", index, "action", "trainer")
    if isinstance(config, ResolvedConfig):
        return format_key_path(path), config.where(path)
    return format_key_path(path), "in fedloop.toml"


def _refuse(
    policy: Policy, config: FedloopConfig | ResolvedConfig | None, problem: str
) -> NoReturn:
    field, where = _trainer_where(policy, config)
    raise ConfigError(
        f"`{field}` {where}: {problem}; got {policy.action.trainer!r}.",
        field=field,
        value=policy.action.trainer,
        hint=f"Set `trainer` under [automation.policies.action] (policy {policy.name!r}) to "
        "an importable `package.module:function` that trains and registers a challenger.",
    )


def check_trainer_path(
    policy: Policy, *, config: FedloopConfig | ResolvedConfig | None = None
) -> None:
    """Check that the module of a policy's trainer exists, without importing it.

    Parent packages are imported (that is how Python finds a submodule); the trainer's own
    module, with whatever heavy libraries it pulls in, is not. Whether the function exists is
    only known once :func:`trainer_callable` imports it.

    Parameters
    ----------
    policy : Policy
        The policy.
    config : FedloopConfig or ResolvedConfig or None
        The config the policy came from, so that the error names its index (and, for a
        ResolvedConfig, the line of fedloop.toml).

    Raises
    ------
    ConfigError
        When the module cannot be found; ``field`` is
        ``automation.policies[i].action.trainer``.
    """
    module = policy.action.trainer.partition(":")[0]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as err:
        _refuse(policy, config, f"module {module!r} cannot be found ({err})")
    else:
        if spec is None:
            _refuse(policy, config, f"module {module!r} cannot be found")


def trainer_callable(
    policy: Policy, *, config: FedloopConfig | ResolvedConfig | None = None
) -> Callable[..., Any]:
    """Import and return the function a policy's ``action.trainer`` names.

    Parameters
    ----------
    policy : Policy
        The policy.
    config : FedloopConfig or ResolvedConfig or None
        The config the policy came from, for the error's field and line.

    Returns
    -------
    callable
        The trainer, called by the controller when the policy acts.

    Raises
    ------
    ConfigError
        When the module cannot be imported or has no callable of that name.
    """
    module_name, _, function = policy.action.trainer.partition(":")
    check_trainer_path(policy, config=config)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        _refuse(policy, config, f"module {module_name!r} cannot be imported ({err})")
    found: object = getattr(module, function, None)
    if not callable(found):
        _refuse(policy, config, f"module {module_name!r} has no function {function!r}")
    return found
