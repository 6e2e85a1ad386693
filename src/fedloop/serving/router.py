"""Deployments: which version answers (champion, weighted canary, sticky keys), shadows, alias swaps.

Where a served model's split comes from: a traffic spec in the store
(:func:`fedloop.registry.set_traffic`, the deployments table) replaces the configuration's canary
and shadow of that model as a whole, from start-up and whenever the watcher sees it change; a
cleared spec (no canary, no shadow) or no record at all gives the configuration's split
(``[serving.canary.NAME]``, ``[serving.shadow]``, ``--canary``/``--shadow``) back. The primary
reference (``serving.models``) never comes from the store: promotion moves its alias.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from concurrent.futures import Executor
from dataclasses import dataclass

from fedloop.core import FedloopError, NotFound, ServingConfig
from fedloop.registry import ModelRef, ModelRegistry, TrafficSpec, find_traffic, parse_ref
from fedloop.serving.batching import AdaptiveBatcher
from fedloop.serving.metrics import ServingMetrics
from fedloop.serving.runtime import ModelRuntime, load_runtime
from fedloop.store import ModelVersion

__all__ = ["Deployment", "Router", "Routes", "Target"]

_log = logging.getLogger("fedloop.serving.router")

_CONFIG = "config"
_STORE = "store"


@dataclass(frozen=True, slots=True)
class _Split:
    """Where the non-primary traffic of a deployment goes, by reference, and who said so."""

    canary: ModelRef | None = None
    fraction: float = 0.0
    sticky_header: str | None = None
    shadow: ModelRef | None = None
    source: str = _CONFIG

    def routing(self) -> tuple[ModelRef | None, float, str | None, ModelRef | None]:
        """Return what routing depends on (not where it came from)."""
        return self.canary, self.fraction, self.sticky_header, self.shadow


def _split_for(configured: _Split, spec: TrafficSpec | None) -> _Split:
    """Return the split a traffic spec asks for: ``configured`` when it is None or cleared."""
    if spec is None or spec.cleared:
        return configured
    canary = spec.canary
    return _Split(
        canary=parse_ref(canary.ref) if canary else None,
        fraction=canary.fraction if canary else 0.0,
        sticky_header=canary.sticky_header.lower() if canary and canary.sticky_header else None,
        shadow=parse_ref(spec.shadow) if spec.shadow else None,
        source=_STORE,
    )


@dataclass(frozen=True, slots=True, eq=False)
class Target:
    """One loaded version and its batcher."""

    runtime: ModelRuntime
    batcher: AdaptiveBatcher


@dataclass(frozen=True, slots=True)
class Routes:
    """An immutable snapshot of a deployment's routing; swapped as a whole (atomically).

    Attributes
    ----------
    primary : Target
        The version most traffic goes to (the reference in ``serving.models``).
    canary : Target or None
        The version that gets ``fraction`` of the traffic.
    fraction : float
        Canary share in [0, 1].
    shadow : Target or None
        The version that gets a copy of every request (answer logged, never returned).
    shadow_compatible : bool
        True when the shadow takes the same inputs as the primary and canary.
    sticky_header : str or None
        Lower-case header whose value pins a caller to one side of the split.
    """

    primary: Target
    canary: Target | None = None
    fraction: float = 0.0
    shadow: Target | None = None
    shadow_compatible: bool = False
    sticky_header: str | None = None

    def targets(self) -> list[tuple[str, Target]]:
        """Return (role, target) for every role that is set."""
        out = [("primary", self.primary)]
        if self.canary is not None:
            out.append(("canary", self.canary))
        if self.shadow is not None:
            out.append(("shadow", self.shadow))
        return out


def _inputs_key(runtime: ModelRuntime) -> tuple[tuple[str, str, tuple[int | None, ...]], ...]:
    return tuple((s.name, s.dtype, s.shape) for s in runtime.signature.inputs)


class Deployment:
    """One served model name: its references and the current :class:`Routes`.

    The constructor's canary and shadow are the configuration's split; a traffic spec in the
    store replaces them while it is set (see the module docstring).

    Parameters
    ----------
    name : str
        The served name (``/v2/models/<name>``).
    primary : ModelRef
        Reference of the primary version (``NAME@ALIAS`` is followed as it moves).
    canary : ModelRef or None
        Reference of the canary version.
    fraction : float
        Canary share of the traffic.
    sticky_header : str or None
        Header whose value pins a caller to one side of the split.
    shadow : ModelRef or None
        Reference of the shadow version.
    """

    def __init__(
        self,
        name: str,
        primary: ModelRef,
        *,
        canary: ModelRef | None = None,
        fraction: float = 0.0,
        sticky_header: str | None = None,
        shadow: ModelRef | None = None,
    ) -> None:
        self.name = name
        self.primary_ref = primary
        self.configured = _Split(
            canary=canary,
            fraction=fraction,
            sticky_header=sticky_header.lower() if sticky_header else None,
            shadow=shadow,
        )
        self.split = self.configured
        self.routes: Routes | None = None
        self._salt = name.encode()

    @property
    def canary_ref(self) -> ModelRef | None:
        """Reference of the canary version now in effect, or None."""
        return self.split.canary

    @property
    def fraction(self) -> float:
        """Canary share of the traffic now in effect."""
        return self.split.fraction

    @property
    def sticky_header(self) -> str | None:
        """Lower-case sticky header now in effect, or None."""
        return self.split.sticky_header

    @property
    def shadow_ref(self) -> ModelRef | None:
        """Reference of the shadow version now in effect, or None."""
        return self.split.shadow

    @property
    def split_source(self) -> str:
        """Where the split in effect comes from: ``"config"`` or ``"store"`` (a traffic spec)."""
        return self.split.source

    def refs(self, split: _Split | None = None) -> list[tuple[str, ModelRef]]:
        """Return (role, reference) for every role of ``split`` (default: the one in effect)."""
        split = self.split if split is None else split
        out = [("primary", self.primary_ref)]
        if split.canary is not None:
            out.append(("canary", split.canary))
        if split.shadow is not None:
            out.append(("shadow", split.shadow))
        return out

    def pick(self, routes: Routes, key: str | None) -> Target:
        """Choose primary or canary for one request.

        Parameters
        ----------
        routes : Routes
            The snapshot the request uses from start to end.
        key : str or None
            The sticky key (same key, same side of the split); None draws at random.

        Returns
        -------
        Target
            Where the request goes (always the canary at fraction 1).
        """
        if routes.canary is None or routes.fraction <= 0.0:
            return routes.primary
        if key is None:
            draw = random.random()
        else:
            digest = hashlib.blake2b(key.encode(), digest_size=8, key=self._salt[:64]).digest()
            draw = int.from_bytes(digest, "big") / 2**64
        return routes.canary if draw < routes.fraction else routes.primary

    def find_version(self, version: str) -> Target | None:
        """Return the loaded target of a version number (any role), or None."""
        routes = self.routes
        if routes is None:
            return None
        for _, target in routes.targets():
            if target.runtime.version_text == version:
                return target
        return None


class Router:
    """All deployments of a server, loaded from the registry and kept in step with the store.

    The watcher follows both alias moves and traffic specs (:func:`fedloop.registry.set_traffic`);
    a spec in the store overrides the configured canary and shadow of its model as a whole, a
    cleared one (or none) leaves the configured split in effect.

    Parameters
    ----------
    registry : ModelRegistry
        Where versions are resolved, graphs read and traffic specs found.
    config : ServingConfig
        Models, canaries, shadows, batching and threads.
    metrics : ServingMetrics
        Batch, swap, traffic-change and loaded-version metrics.
    executor : Executor
        Threads for large batches.

    Raises
    ------
    NotFound
        When a canary or shadow names a model that is not served.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        config: ServingConfig,
        *,
        metrics: ServingMetrics,
        executor: Executor,
    ) -> None:
        self.registry = registry
        self.config = config
        self.metrics = metrics
        self.executor = executor
        self.deployments: dict[str, Deployment] = {}
        for ref_text in config.models:
            ref = parse_ref(ref_text)
            canary = config.canary.get(ref.name)
            shadow = config.shadow.get(ref.name)
            self.deployments[ref.name] = Deployment(
                ref.name,
                ref,
                canary=parse_ref(canary.ref) if canary else None,
                fraction=canary.fraction if canary else 0.0,
                sticky_header=canary.sticky_header if canary else None,
                shadow=parse_ref(shadow) if shadow else None,
            )
        for section, names in (("canary", config.canary), ("shadow", config.shadow)):
            for name in names:
                if name not in self.deployments:
                    raise NotFound(
                        f"`serving.{section}.{name}` names a model that is not served.",
                        field=f"serving.{section}.{name}",
                        hint=f"Add {name}@champion to serving.models (or --model).",
                    )
        self._targets: dict[str, Target] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def get(self, name: str) -> Deployment | None:
        """Return the deployment serving ``name``, or None."""
        return self.deployments.get(name)

    @property
    def ready(self) -> bool:
        """True when every deployment has its versions loaded."""
        return all(d.routes is not None for d in self.deployments.values())

    # -- loading -------------------------------------------------------------------------------
    def _target(self, version: ModelVersion) -> Target:
        found = self._targets.get(str(version.id))
        if found is not None:
            return found
        runtime = load_runtime(
            self.registry, version, intra_op_threads=self.config.intra_op_threads
        )
        name, text = runtime.name, runtime.version_text
        metrics = self.metrics

        def on_batch(requests: int, rows: int) -> None:
            metrics.observe_batch(name, text, requests, rows)

        batching = self.config.batching
        target = Target(
            runtime,
            AdaptiveBatcher(
                runtime,
                executor=self.executor,
                enabled=batching.enabled,
                max_batch_size=batching.max_batch_size,
                max_wait_ms=batching.max_wait_ms,
                on_batch=on_batch,
            ),
        )
        self._targets[str(version.id)] = target
        return target

    def _resolve(self, deployment: Deployment, split: _Split) -> dict[str, ModelVersion]:
        return {role: self.registry.get(ref) for role, ref in deployment.refs(split)}

    def _plan(self, deployment: Deployment) -> tuple[_Split, dict[str, ModelVersion]]:
        """Read the deployment's traffic spec and resolve the split it asks for (blocking)."""
        spec = find_traffic(self.registry.metadata, deployment.name)
        split = _split_for(deployment.configured, spec)
        return split, self._resolve(deployment, split)

    def _build(self, split: _Split, versions: dict[str, ModelVersion]) -> Routes:
        primary = self._target(versions["primary"])
        canary = self._target(versions["canary"]) if "canary" in versions else None
        shadow = self._target(versions["shadow"]) if "shadow" in versions else None
        compatible = shadow is not None and all(
            _inputs_key(shadow.runtime) == _inputs_key(t.runtime)
            for t in (primary, canary)
            if t is not None
        )
        return Routes(
            primary=primary,
            canary=canary,
            fraction=split.fraction,
            shadow=shadow,
            shadow_compatible=compatible,
            sticky_header=split.sticky_header,
        )

    def _install(self, deployment: Deployment, split: _Split, routes: Routes) -> None:
        old, old_split = deployment.routes, deployment.split
        deployment.split = split
        deployment.routes = routes  # the swap: one reference assignment
        name = deployment.name
        now = {(t.runtime.version_text, role) for role, t in routes.targets()}
        for version, role in now:
            self.metrics.loaded.labels(name, version, role).set(1)
        if old is None:
            return
        for role, target in old.targets():
            if (target.runtime.version_text, role) not in now:
                self.metrics.loaded.labels(name, target.runtime.version_text, role).set(0)
        if split.routing() != old_split.routing():
            self.metrics.traffic_changes.labels(name).inc()
        # An alias move: a role kept its reference but now resolves to another version.
        before = {role: t.runtime.version_id for role, t in old.targets()}
        old_refs, new_refs = dict(deployment.refs(old_split)), dict(deployment.refs(split))
        if any(
            role in before
            and old_refs.get(role) == new_refs[role]
            and before[role] != target.runtime.version_id
            for role, target in routes.targets()
        ):
            self.metrics.swaps.labels(name).inc()

    def load(self) -> None:
        """Resolve every reference and load every version (blocking; at start-up).

        A traffic spec in the store that cannot be resolved is logged, and the configured split
        serves until the spec is fixed.

        Raises
        ------
        NotFound
            When a model, alias or version of the configuration does not exist.
        ArtifactMissing, ArtifactCorrupt, InvalidInput
            When a graph cannot be read or loaded.
        StoreUnavailable
            When the store cannot be read.
        """
        for deployment in self.deployments.values():
            spec = find_traffic(self.registry.metadata, deployment.name)
            split = _split_for(deployment.configured, spec)
            try:
                routes = self._build(split, self._resolve(deployment, split))
            except FedloopError as err:
                if split.source != _STORE:
                    raise
                _log.warning(
                    "the traffic spec of %s cannot be served (%s); serving the configured split",
                    deployment.name,
                    err,
                )
                split = deployment.configured
                routes = self._build(split, self._resolve(deployment, split))
            self._install(deployment, split, routes)

    # -- following aliases and traffic specs ---------------------------------------------------
    def _changed(
        self, deployment: Deployment, split: _Split, versions: dict[str, ModelVersion]
    ) -> bool:
        routes = deployment.routes
        if routes is None or split != deployment.split:
            return True
        current = {role: t.runtime.version_id for role, t in routes.targets()}
        return current != {role: str(v.id) for role, v in versions.items()}

    async def refresh(self) -> int:
        """Ask the store where every reference points and which split is wanted; swap in changes.

        New versions load in a thread beside the old ones, which keep serving; the swap is one
        assignment, and a version no role uses any more finishes its requests before it stops.
        A deployment that fails keeps its routes and does not hold up the others.

        Returns
        -------
        int
            Deployments swapped.

        Raises
        ------
        FedloopError
            The first error met (the store cannot be read, a version cannot be loaded), after
            the other deployments were refreshed; the failing deployment does not move.
        """
        swapped = 0
        failed: FedloopError | None = None
        for deployment in self.deployments.values():
            try:
                split, versions = await asyncio.to_thread(self._plan, deployment)
                if not self._changed(deployment, split, versions):
                    continue
                routes = await asyncio.to_thread(self._build, split, versions)
            except FedloopError as err:
                failed = failed or err
                continue
            self._install(deployment, split, routes)
            swapped += 1
            _log.info(
                "%s now served by %s (%s split%s)",
                deployment.name,
                ", ".join(f"{r} v{t.runtime.version}" for r, t in routes.targets()),
                split.source,
                f", canary {routes.fraction:g}" if routes.canary is not None else "",
            )
        if swapped:
            self._retire()
        if failed is not None:
            raise failed
        return swapped

    def _retire(self) -> None:
        used = {
            id(t)
            for d in self.deployments.values()
            if d.routes is not None
            for _, t in d.routes.targets()
        }
        for key, target in list(self._targets.items()):
            if id(target) not in used:
                del self._targets[key]
                task = asyncio.get_running_loop().create_task(target.batcher.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def watch(self, interval_s: float) -> None:
        """Call :meth:`refresh` every ``interval_s`` until cancelled; errors are logged, not raised."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh()
            except FedloopError as err:
                _log.warning("refresh failed, still serving the loaded versions: %s", err)
            except Exception:  # keep serving whatever the store does
                _log.exception("refresh failed, still serving the loaded versions")

    async def close(self) -> None:
        """Stop every batcher."""
        for target in list(self._targets.values()):
            await target.batcher.close(timeout_s=5.0)
        for task in list(self._closing):
            await task
