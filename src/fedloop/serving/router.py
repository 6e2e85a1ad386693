"""Deployments: which version answers (champion, weighted canary, sticky keys), shadows, alias swaps."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from concurrent.futures import Executor
from dataclasses import dataclass

from fedloop.core import FedloopError, NotFound, ServingConfig
from fedloop.registry import ModelRef, ModelRegistry, parse_ref
from fedloop.serving.batching import AdaptiveBatcher
from fedloop.serving.metrics import ServingMetrics
from fedloop.serving.runtime import ModelRuntime, load_runtime
from fedloop.store import ModelVersion

__all__ = ["Deployment", "Router", "Routes", "Target"]

_log = logging.getLogger("fedloop.serving.router")


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
    """

    primary: Target
    canary: Target | None = None
    fraction: float = 0.0
    shadow: Target | None = None
    shadow_compatible: bool = False

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
        self.canary_ref = canary
        self.fraction = fraction
        self.sticky_header = sticky_header.lower() if sticky_header else None
        self.shadow_ref = shadow
        self.routes: Routes | None = None
        self._salt = name.encode()

    def refs(self) -> list[tuple[str, ModelRef]]:
        """Return (role, reference) for every role configured."""
        out = [("primary", self.primary_ref)]
        if self.canary_ref is not None:
            out.append(("canary", self.canary_ref))
        if self.shadow_ref is not None:
            out.append(("shadow", self.shadow_ref))
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
            Where the request goes.
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
    """All deployments of a server, loaded from the registry and kept in step with its aliases.

    Parameters
    ----------
    registry : ModelRegistry
        Where versions are resolved and graphs read.
    config : ServingConfig
        Models, canaries, shadows, batching and threads.
    metrics : ServingMetrics
        Batch, swap and loaded-version metrics.
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

    def _resolve(self, deployment: Deployment) -> dict[str, ModelVersion]:
        return {role: self.registry.get(ref) for role, ref in deployment.refs()}

    def _build(self, deployment: Deployment, versions: dict[str, ModelVersion]) -> Routes:
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
            fraction=deployment.fraction,
            shadow=shadow,
            shadow_compatible=compatible,
        )

    def _install(self, deployment: Deployment, routes: Routes) -> None:
        old = deployment.routes
        deployment.routes = routes  # the swap: one reference assignment
        for role, target in routes.targets():
            self.metrics.loaded.labels(deployment.name, target.runtime.version_text, role).set(1)
        if old is None:
            return
        self.metrics.swaps.labels(deployment.name).inc()
        kept = {(role, id(target)) for role, target in routes.targets()}
        for role, target in old.targets():
            if (role, id(target)) not in kept:
                self.metrics.loaded.labels(deployment.name, target.runtime.version_text, role).set(
                    0
                )

    def load(self) -> None:
        """Resolve every reference and load every version (blocking; at start-up).

        Raises
        ------
        NotFound
            When a model, alias or version does not exist.
        ArtifactMissing, ArtifactCorrupt, InvalidInput
            When a graph cannot be read or loaded.
        """
        for deployment in self.deployments.values():
            self._install(deployment, self._build(deployment, self._resolve(deployment)))

    # -- following aliases ---------------------------------------------------------------------
    def _changed(self, deployment: Deployment, versions: dict[str, ModelVersion]) -> bool:
        routes = deployment.routes
        if routes is None:
            return True
        current = {role: t.runtime.version_id for role, t in routes.targets()}
        return current != {role: str(v.id) for role, v in versions.items()}

    async def refresh(self) -> int:
        """Ask the registry where every reference points; load and swap in what moved.

        New versions load in a thread beside the old ones, which keep serving; the swap is one
        assignment, and a replaced version's batcher finishes its requests before it stops.

        Returns
        -------
        int
            Deployments swapped.

        Raises
        ------
        FedloopError
            When the registry cannot be read or a new version cannot be loaded (nothing moves).
        """
        swapped = 0
        for deployment in self.deployments.values():
            versions = await asyncio.to_thread(self._resolve, deployment)
            if not self._changed(deployment, versions):
                continue
            routes = await asyncio.to_thread(self._build, deployment, versions)
            self._install(deployment, routes)
            swapped += 1
            _log.info(
                "%s now served by %s",
                deployment.name,
                ", ".join(f"{r} v{t.runtime.version}" for r, t in routes.targets()),
            )
        if swapped:
            self._retire()
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
                _log.warning("alias refresh failed, still serving the loaded versions: %s", err)
            except Exception:  # keep serving whatever the store does
                _log.exception("alias refresh failed, still serving the loaded versions")

    async def close(self) -> None:
        """Stop every batcher."""
        for target in list(self._targets.values()):
            await target.batcher.close(timeout_s=5.0)
        for task in list(self._closing):
            await task
