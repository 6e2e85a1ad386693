"""``RayBackend``: many virtual clients hosted by one Ray actor per CPU, locally or on a cluster."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from fedloop.core import (
    InvalidInput,
    Parameters,
    StoreUnavailable,
    decode_parameters,
    encode_parameters,
    require,
)
from fedloop.federated.messages import FitIns, FitOutcome, FitRes, own_settings
from fedloop.federated.simulation.worker import ClientHost, load_factory

__all__ = ["RayBackend"]

#: How long the first round waits for the actors to start and import the factory.
_START_TIMEOUT_S = 300.0
#: Object store of a Ray that this backend starts: one round's model per round is all it holds.
_OBJECT_STORE_BYTES = 200 * 1024**2
#: How long to wait for an actor's ping when one of its calls failed (it answers first).
_PING_GRACE_S = 5.0
_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class _ClientActor:
    """The actor class (wrapped with ``ray.remote`` on use): a :class:`ClientHost` per actor.

    Everything that crosses the actor boundary is plain: strings, JSON-safe dicts and bytes.
    """

    def __init__(self, factory: str, kwargs: dict[str, Any]) -> None:
        self._error: str | None = None
        self._host: ClientHost | None = None
        try:
            self._host = ClientHost(load_factory(factory), kwargs)
        except (ImportError, AttributeError, TypeError, ValueError) as err:
            self._error = f"{type(err).__name__}: {err}"
        self._round: tuple[str, Parameters] | None = None

    def ping(self) -> dict[str, Any]:
        """Return this actor's process id and the factory's import error, if any."""
        return {"pid": os.getpid(), "error": self._error}

    def fit(
        self, client_id: str, round_num: int, config: dict[str, Any], payload: list[Any]
    ) -> tuple[dict[str, Any], bytes]:
        """Train one client on the round's model (``payload[0]``, a reference to its bytes)."""
        if self._host is None:
            return {"client_id": client_id, "error": self._error, "seconds": 0.0}, b""
        key = payload[0].hex()
        if self._round is None or self._round[0] != key:
            # The reference is wrapped in a list so that Ray does not resolve it per call: the
            # model is fetched and decoded once per actor and round, then shared by its clients.
            ray: Any = require("ray", feature="Ray simulation")
            self._round = (key, decode_parameters(ray.get(payload[0])))
        return self._host.fit(client_id, FitIns(round_num, self._round[1], config))


def _reason(err: BaseException) -> str:
    """Collapse a (multi-line) Ray error into one line for the round's client rows."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    text = " ".join(str(err).split())
    return text if len(text) <= 400 else text[:397] + "..."


def _outcome(round_num: int, header: Mapping[str, Any], body: bytes, size_down: int) -> FitOutcome:
    """Turn an actor's (header, body) answer into an outcome, as ``LocalBackend`` does."""
    client_id = str(header.get("client_id"))
    seconds = float(header.get("seconds", 0.0))
    if "error" in header:
        return FitOutcome(
            client_id, None, str(header["error"]), seconds=seconds, bytes_down=size_down
        )
    try:
        params = decode_parameters(body, field=f"update from {client_id}")
    except InvalidInput as err:
        return FitOutcome(
            client_id,
            None,
            err.message,
            seconds=seconds,
            bytes_up=len(body),
            bytes_down=size_down,
        )
    res = FitRes(
        params,
        int(header.get("num_examples", 0)),
        {k: float(v) for k, v in dict(header.get("metrics", {})).items()},
        round_num=int(header.get("round", -1)),
    )
    return FitOutcome(client_id, res, seconds=seconds, bytes_up=len(body), bytes_down=size_down)


class RayBackend:
    """One Ray actor per CPU, each hosting many virtual clients, behind :class:`Transport`.

    Each actor imports the client factory once and builds a client on its first round, then
    keeps it. Client ``i`` (in sorted id order) always lives on actor ``i % num_actors``, as in
    :class:`LocalBackend`. The round's model is encoded once (safetensors) and put in Ray's
    object store once; each actor fetches and decodes it once, and every client answers with
    a JSON-safe header and safetensors bytes: no arrays or objects go through pickle.

    An actor that died between rounds is replaced before its clients run; one that dies
    mid-round fails its remaining clients for that round and is replaced at the next. At the
    deadline, actors still busy are killed (replaced next round) and their clients time out.
    Once ``enough`` clients succeeded the rest are reported timed out and their queued calls
    cancelled; which clients those are depends on timing, so over-selection trades bit-for-bit
    reproducibility for speed, as on any real network.

    Parameters
    ----------
    factory : str
        Dotted path ``package.module:function``; ``function(client_id, **kwargs) -> Client``.
        It must be importable in the actors (installed, or on ``PYTHONPATH`` through the
        ``runtime_env``).
    client_ids : sequence of str
        The virtual clients.
    num_actors : int, default: as many as the cluster's CPUs hold (one per CPU)
        Actors (capped at the number of clients); each reserves ``num_cpus`` (default 1).
    kwargs : Mapping or None
        JSON-serializable keyword arguments for the factory.
    address : str or None, default None
        ``None`` starts a local Ray; ``"auto"`` or ``"ray://host:10001"`` connects to a
        running cluster. A process already connected to Ray keeps its session (and ``close``
        leaves it running).
    actor_options : Mapping or None
        Extra ``ActorClass.options(...)`` such as ``num_cpus``, ``memory`` or ``runtime_env``
        (its ``env_vars`` are merged over ``OMP_NUM_THREADS=1``/``MKL_NUM_THREADS=1``).
    init_options : Mapping or None
        Extra ``ray.init`` arguments (``num_cpus``, ``runtime_env``…) used only when this
        backend starts Ray.

    Raises
    ------
    InvalidInput
        A malformed factory path, no clients, or more actors than the cluster's CPUs.
    MissingExtraError
        Ray is not installed (``pip install "fedloop[ray]"``).

    Example
    -------
    >>> backend = RayBackend(  # doctest: +SKIP
    ...     "fedloop.scenarios.fraud.federated:make_client",
    ...     [f"bank-{i:03d}" for i in range(100)],
    ...     kwargs={"rows": 200_000, "num_clients": 100, "partition": "dirichlet",
    ...             "alpha": 0.5, "seed": 0},
    ... )
    """

    def __init__(
        self,
        factory: str,
        client_ids: Sequence[str],
        *,
        num_actors: int | None = None,
        kwargs: Mapping[str, Any] | None = None,
        address: str | None = None,
        actor_options: Mapping[str, Any] | None = None,
        init_options: Mapping[str, Any] | None = None,
    ) -> None:
        if ":" not in factory:
            raise InvalidInput(
                f"`factory` must be 'package.module:function'; got {factory!r}.", field="factory"
            )
        if num_actors is not None and num_actors < 1:
            raise InvalidInput(f"`num_actors` must be >= 1; got {num_actors}.", field="num_actors")
        self.client_ids = sorted(client_ids)
        if not self.client_ids:
            raise InvalidInput("at least one client is needed.", field="client_ids")
        self._ray: Any = require("ray", feature="Ray simulation")
        self.offline: set[str] = set()
        self.owns_ray = False
        if not self._ray.is_initialized():
            self._start_ray(address, init_options or {})
        try:
            options = self._actor_options(actor_options or {})
            cpus = float(self._ray.cluster_resources().get("CPU", 1))
            per_actor = float(options["num_cpus"])
            wanted = num_actors or max(1, int(cpus // per_actor) if per_actor else int(cpus))
            count = min(wanted, len(self.client_ids))
            if per_actor * count > cpus:
                raise InvalidInput(
                    f"`num_actors` asks for {count} actors of {per_actor:g} CPU each, but the "
                    f"Ray cluster has {cpus:g} CPUs.",
                    field="num_actors",
                    value=count,
                    hint="Lower num_actors or pass actor_options={'num_cpus': 0.5}.",
                )
            self._actor_class = self._ray.remote(_ClientActor).options(**options)
            self._spec = (factory, dict(kwargs or {}))
            self._home = {c: i % count for i, c in enumerate(self.client_ids)}
            # Actors start (and import the factory) while the caller builds its model and
            # store; the first fit waits for them.
            self._actors: list[Any] = [self._new_actor() for _ in range(count)]
        except BaseException:
            self._shutdown_ray()
            raise
        self._started = False

    def _start_ray(self, address: str | None, init_options: Mapping[str, Any]) -> None:
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        if address is None:  # a new local Ray: keep it small and quiet
            options |= {"include_dashboard": False, "object_store_memory": _OBJECT_STORE_BYTES}
        self._ray.init(address=address, **(options | dict(init_options)))
        self.owns_ray = True

    def _shutdown_ray(self) -> None:
        if self.owns_ray:
            self._ray.shutdown()
            self.owns_ray = False

    @staticmethod
    def _actor_options(extra: Mapping[str, Any]) -> dict[str, Any]:
        runtime_env = dict(extra.get("runtime_env") or {})
        runtime_env["env_vars"] = {**_THREAD_ENV, **dict(runtime_env.get("env_vars") or {})}
        # Restarts are ours: Ray's own would retry a client whose training killed the actor.
        return {"num_cpus": 1, "max_restarts": 0, **extra, "runtime_env": runtime_env}

    def _new_actor(self) -> Any:
        return self._actor_class.remote(*self._spec)

    @property
    def num_actors(self) -> int:
        """Return the number of actors."""
        return len(self._actors)

    def actor_handles(self) -> list[Any]:
        """Return the Ray actor handles (None for an actor to be started at the next round)."""
        return list(self._actors)

    def list_clients(self) -> Sequence[str]:
        """Return the ids of the clients not marked offline."""
        return [c for c in self.client_ids if c not in self.offline]

    def _await_actors(self) -> None:
        """Wait once for every actor to start; refuse a factory the actors cannot import."""
        if self._started:
            return
        ray = self._ray
        pings = [a.ping.remote() for a in self._actors]
        ready, _ = ray.wait(pings, num_returns=len(pings), timeout=_START_TIMEOUT_S)
        if len(ready) < len(pings):
            raise StoreUnavailable(
                f"{len(pings) - len(ready)} of {len(pings)} Ray actors did not start within "
                f"{_START_TIMEOUT_S:g} s.",
                field="num_actors",
                hint="Check the cluster's free CPUs (ray status) or lower num_actors.",
            )
        for index, ref in enumerate(pings):
            try:
                error = ray.get(ref)["error"]
            except ray.exceptions.RayActorError as err:
                raise StoreUnavailable(
                    f"Ray actor {index} died while starting: {_reason(err)}",
                    field="factory",
                    hint="Check that the client factory imports in a fresh Python process.",
                ) from err
            if error is not None:
                raise InvalidInput(
                    f"the client factory {self._spec[0]!r} cannot be loaded in a Ray actor: "
                    f"{error}.",
                    field="factory",
                    value=self._spec[0],
                    hint="Pass an importable 'package.module:function' (installed in the "
                    "cluster's Python, or on PYTHONPATH via actor_options['runtime_env']).",
                )
        self._started = True

    def fit(
        self,
        round_num: int,
        instructions: Mapping[str, FitIns],
        *,
        timeout_s: float,
        enough: int | None = None,
    ) -> list[FitOutcome]:
        """Broadcast the round's model once and collect one outcome per instructed client.

        Parameters
        ----------
        round_num : int
            The round.
        instructions : Mapping[str, FitIns]
            Client id -> instruction (the coordinator sends every client the same one).
        timeout_s : float
            Deadline of the round, in seconds; clients without an answer by then time out.
        enough : int or None
            Stop waiting once this many clients succeeded; the rest are reported timed out.

        Returns
        -------
        list of FitOutcome
            One per instructed client.

        Raises
        ------
        InvalidInput
            An unknown client id, or a factory that the actors cannot import.
        StoreUnavailable
            The actors did not start (first round only).
        """
        if not instructions:
            return []
        unknown = sorted(set(instructions) - set(self._home))
        if unknown:
            raise InvalidInput(
                f"unknown clients {unknown[:5]} in the round's instructions.",
                field="instructions",
                value=unknown,
            )
        self._await_actors()
        return _Round(self, round_num, instructions, timeout_s, enough).run()

    def _replace(self, index: int) -> None:
        """Kill actor ``index`` (if still alive); the next round starts a new one."""
        handle, self._actors[index] = self._actors[index], None
        if handle is not None:
            with contextlib.suppress(self._ray.exceptions.RayError, ValueError):
                self._ray.kill(handle, no_restart=True)

    def _ensure(self, index: int) -> Any:
        if self._actors[index] is None:
            self._actors[index] = self._new_actor()
        return self._actors[index]

    def close(self) -> None:
        """Kill the actors, and stop Ray if this backend started it."""
        if not self._ray.is_initialized():
            return
        for index in range(len(self._actors)):
            self._replace(index)
        self._shutdown_ray()

    def __enter__(self) -> RayBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Round:
    """One ``fit`` call: submit, then collect until done, ``enough`` or the deadline.

    An actor runs its calls in submission order, so only the head of each actor's queue is
    waited on: each wait looks at ``num_actors`` references, however many clients there are.
    """

    def __init__(
        self,
        backend: RayBackend,
        round_num: int,
        instructions: Mapping[str, FitIns],
        timeout_s: float,
        enough: int | None,
    ) -> None:
        self.backend = backend
        self.ray = backend._ray
        self.round_num = round_num
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.enough = enough
        first = next(iter(instructions.values()))
        payload = encode_parameters(first.parameters)
        self.size_down = len(payload)
        self.payload_ref = self.ray.put(payload)  # the one copy of the model this round
        self.config = dict(first.config)
        self.own = own_settings(instructions, list(instructions), first.config)
        self.pings: dict[int, Any] = {}
        self.queues: dict[int, deque[tuple[Any, str]]] = {}
        self.outcomes: dict[str, FitOutcome] = {}
        self.replaced: set[int] = set()
        by_actor: dict[int, list[str]] = {}
        for client_id in sorted(instructions):
            by_actor.setdefault(backend._home[client_id], []).append(client_id)
        for index, client_ids in by_actor.items():
            self.submit(index, client_ids)

    def submit(self, index: int, client_ids: Sequence[str]) -> None:
        """Queue a ping, then one call per client, on actor ``index`` (run in that order)."""
        actor = self.backend._ensure(index)
        self.pings[index] = actor.ping.remote()
        self.queues[index] = deque(
            (
                actor.fit.remote(
                    c, self.round_num, dict(self.own.get(c, self.config)), [self.payload_ref]
                ),
                c,
            )
            for c in client_ids
        )

    def run(self) -> list[FitOutcome]:
        succeeded = 0
        while self.enough is None or succeeded < self.enough:
            heads = {queue[0][0]: index for index, queue in self.queues.items() if queue}
            remaining = self.deadline - time.monotonic()
            if not heads or remaining <= 0:
                break
            ready, _ = self.ray.wait(list(heads), num_returns=1, timeout=remaining)
            if not ready:
                break
            index = heads[ready[0]]
            ref, client_id = self.queues[index].popleft()
            try:
                header, body = self.ray.get(ref)
            except self.ray.exceptions.RayActorError as err:
                self.actor_died(index, client_id, err)
                continue
            except self.ray.exceptions.RayError as err:  # the call failed, the actor lives
                self.fail(client_id, f"actor {index} failed: {_reason(err)}")
                continue
            outcome = _outcome(self.round_num, header, body, self.size_down)
            self.outcomes[client_id] = outcome
            succeeded += outcome.result is not None
        self.give_up(enough_reached=self.enough is not None and succeeded >= self.enough)
        return list(self.outcomes.values())

    def fail(self, client_id: str, reason: str) -> None:
        self.outcomes[client_id] = FitOutcome(client_id, None, reason, bytes_down=self.size_down)

    def actor_died(self, index: int, client_id: str, err: BaseException) -> None:
        """Replace an actor that was dead before the round once; otherwise fail its clients."""
        left = [client_id, *(c for _, c in self.queues.pop(index))]
        self.backend._replace(index)
        if index not in self.replaced and not self.ping_answered(index):
            self.replaced.add(index)  # died since the last round: nothing of ours ran on it
            self.submit(index, left)
            return
        for lost in left:
            self.fail(lost, f"Ray actor {index} died during the round: {_reason(err)}")

    def ping_answered(self, index: int) -> bool:
        """Whether the actor answered this round's ping (it was alive when the round began)."""
        ready, _ = self.ray.wait([self.pings[index]], timeout=_PING_GRACE_S)
        if not ready:
            return False
        try:
            self.ray.get(ready[0])
        except self.ray.exceptions.RayError:
            return False
        return True

    def give_up(self, *, enough_reached: bool) -> None:
        """Report the clients still queued as timed out, cancelling or killing their work."""
        busy = {index: queue for index, queue in self.queues.items() if queue}
        if enough_reached:
            reason = "not needed: enough clients answered"
            for queue in busy.values():  # queued calls never run; a running one ends unseen
                for ref, _ in queue:
                    with contextlib.suppress(self.ray.exceptions.RayError, ValueError):
                        self.ray.cancel(ref)
        else:
            reason = f"no result within the round deadline of {self.timeout_s:g} s"
            for index in sorted(busy):
                self.backend._replace(index)  # unblocks it; restarted next round
        for queue in busy.values():
            for _, client_id in queue:
                self.outcomes[client_id] = FitOutcome(client_id, None, reason, timed_out=True)
        self.queues.clear()
