"""One synchronous round under secure aggregation: four exchanges, and only a sum comes back.

The coordinator drives :class:`~fedloop.federated.secagg.SecAggServer` over the transport's
ordinary ``fit``: ``train`` (clients train and advertise keys), ``share`` (sealed shares of
their secrets go through the coordinator to their peers), ``mask`` (the masked weighted
updates) and ``unmask`` (the shares that remove the masks). A client that fails or misses a
deadline at any stage is out of the round; the sum of the others is still exact as long as
at least ``threshold`` clients remain at each stage, otherwise the round is skipped.

Each client masks ``[w * delta..., w, unclipped, w * loss, w * has_loss]`` (see
:func:`~fedloop.federated.secagg.participant.update_vector`), so the sum gives the strategy
the weighted sum of updates, the total weight and, for adaptive DP clipping, the count of
unclipped updates (:class:`~fedloop.federated.strategies.base.SecureSum`), and the round
its mean training loss; clients send no metrics in the clear. Per-client checks
(finite values, ``max_update_norm``) cannot run on masked updates; the fixed-point range
bounds what one client can add, and DP-FedAvg clients clip before masking.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedloop.core import (
    AggregationError,
    Conflict,
    FederatedConfig,
    FedloopError,
    InvalidInput,
    Parameters,
)
from fedloop.federated.messages import FitIns, FitOutcome
from fedloop.federated.secagg import AdvertiseKeys, FixedPointCodec, SecAggConfig, SecAggServer
from fedloop.federated.secagg.codec import (
    advertise_from_json,
    bundle_to_json,
    json_from_tensors,
    masked_from_tensors,
    request_to_json,
    roster_to_json,
    share_keys_from_json,
    unmask_from_json,
)
from fedloop.federated.secagg.participant import SECURE_TASK
from fedloop.federated.strategies.base import SecureSum, Strategy
from fedloop.federated.transports.base import Transport
from fedloop.store import FlClientRound

__all__ = ["SecureRoundResult", "run_secure_round", "secure_threshold"]

_EMPTY: Parameters = OrderedDict()
#: Values after the update in every masked vector: weight, unclipped, weighted loss, loss weight.
_TAIL = 4


def secure_threshold(fraction: float, members: int, neighbours: int | None) -> int:
    """Return the Shamir threshold for ``members`` clients: ``floor(fraction * g) + 1``, >= 2.

    ``g`` is the size of a client's share group: every member, or with SecAgg+ its
    ``neighbours`` plus itself.
    """
    group = members if neighbours is None else min(members, neighbours + 1)
    return max(2, min(group, math.floor(fraction * group) + 1))


@dataclass
class _Client:
    """What the coordinator saw of one selected client over the stages."""

    status: str = "ok"
    reason: str | None = None
    bytes_up: int = 0
    bytes_down: int = 0
    seconds: float = 0.0

    def drop(self, stage: str, status: str, reason: str) -> None:
        if self.status == "ok":
            self.status, self.reason = status, f"secure aggregation, stage {stage}: {reason}"


@dataclass(frozen=True)
class SecureRoundResult:
    """The outcome of one secure round.

    Attributes
    ----------
    total : SecureSum or None
        The sums, or None when too few clients remained (the round is skipped).
    rows : list of FlClientRound
        One per selected client (status ok when its update is in the sum).
    survivors : list of str
        Whose updates are in the sum.
    metrics : dict
        ``secagg_*`` figures of the round: threshold, clients per stage, seconds of the
        key-exchange stages.

    When the round has no sum, the rows of the clients still in it say why (status
    ``unused``, reason ``secure aggregation aborted: ...``).
    """

    total: SecureSum | None
    rows: list[FlClientRound]
    survivors: list[str]
    metrics: dict[str, float]


def _config_bytes(config: Mapping[str, Any]) -> int:
    return len(json.dumps(dict(config), separators=(",", ":")).encode())


class _SecureRound:
    def __init__(
        self,
        transport: Transport,
        strategy: Strategy,
        config: FederatedConfig,
        round_num: int,
        params: Parameters,
        session: str,
    ) -> None:
        self.transport = transport
        self.strategy = strategy
        self.config = config
        self.secure = config.secure_aggregation
        self.round_num = round_num
        self.params = params
        self.session = session
        self.clients: dict[str, _Client] = {}
        self.metrics: dict[str, float] = {}

    # -- one exchange ----------------------------------------------------------------------
    def _exchange(
        self,
        stage: str,
        targets: Sequence[str],
        message: Callable[[str], dict[str, Any]],
        *,
        params: Parameters = _EMPTY,
        extra: Mapping[str, Any] | None = None,
        timeout_s: float,
        enough: int | None = None,
    ) -> list[FitOutcome]:
        instructions: dict[str, FitIns] = {}
        for client_id in targets:
            settings = {
                **dict(extra or {}),
                "task": SECURE_TASK,
                "secagg": {
                    "stage": stage,
                    "session": self.session,
                    "client_id": client_id,
                    **message(client_id),
                },
            }
            instructions[client_id] = FitIns(self.round_num, params, settings)
            self.clients[client_id].bytes_down += _config_bytes(settings)
        started = time.perf_counter()
        outcomes = (
            self.transport.fit(self.round_num, instructions, timeout_s=timeout_s, enough=enough)
            if instructions
            else []
        )
        self.metrics[f"secagg_{stage}_seconds"] = time.perf_counter() - started
        answered = {o.client_id for o in outcomes}
        for client_id in targets:
            if client_id not in answered:
                self.clients[client_id].drop(stage, "timeout", "no outcome")
        good: list[FitOutcome] = []
        for out in outcomes:
            client = self.clients.get(out.client_id)
            if client is None:
                continue
            client.bytes_up += out.bytes_up
            client.bytes_down += out.bytes_down
            client.seconds += out.seconds
            if out.result is None:
                status = "timeout" if out.timed_out else "failed"
                client.drop(stage, status, out.error or status)
            else:
                good.append(out)
        return sorted(good, key=lambda o: o.client_id)

    def _accept(self, stage: str, out: FitOutcome, handle: Callable[[FitOutcome], None]) -> bool:
        try:
            handle(out)
        except (FedloopError, ValueError, KeyError, TypeError) as err:
            message = err.message if isinstance(err, FedloopError) else str(err)
            self.clients[out.client_id].drop(stage, "rejected", message)
            return False
        return True

    def _message(self, stage: str, out: FitOutcome) -> Mapping[str, Any]:
        tensors = out.result.parameters if out.result is not None else {}
        value = json_from_tensors(tensors, field=f"{stage} answer")
        if value.get("stage") != stage:
            raise InvalidInput(
                f"expected a {stage!r} answer; got {value.get('stage')!r}.", field="secagg.stage"
            )
        return value

    # -- the round -------------------------------------------------------------------------
    def run(self, selected: Sequence[str], wanted: int) -> SecureRoundResult:
        for client_id in selected:
            self.clients[client_id] = _Client()
        weighting = str(self.strategy.secure_weighting)
        train = {
            "weighting": weighting,
            "clip": float(self.secure.clip),
            **self.strategy.secure_client_settings(self.round_num),
        }
        settings = {
            "local_epochs": self.config.local_epochs,
            **self.strategy.configure_train(self.round_num),
        }
        outcomes = self._exchange(
            "train",
            selected,
            lambda _c: train,
            params=self.params,
            extra=settings,
            timeout_s=self.config.round_timeout_s,
            enough=wanted,
        )
        advertised: list[AdvertiseKeys] = []
        seen: dict[str, AdvertiseKeys] = {}

        def advertise(out: FitOutcome) -> None:
            message = advertise_from_json(self._message("train", out)["advertise"])
            if message.client_id != out.client_id:
                raise InvalidInput("advertised keys for another client.", field="client_id")
            seen[out.client_id] = message

        for out in outcomes:
            if len(advertised) >= wanted:
                client = self.clients[out.client_id]
                client.status, client.reason = "unused", "enough updates were accepted already"
                continue
            assert out.result is not None
            if self._accept("train", out, advertise):
                advertised.append(seen[out.client_id])
        self.metrics["secagg_advertised"] = float(len(advertised))
        floor = max(2, self.config.min_clients)
        if len(advertised) < floor:
            return self._skip(f"{len(advertised)} clients advertised keys; at least {floor} needed")
        threshold = secure_threshold(self.secure.threshold, len(advertised), self.secure.neighbours)
        self.metrics["secagg_threshold"] = float(threshold)
        length = sum(int(a.size) for a in self.params.values()) + _TAIL
        codec = FixedPointCodec(bits=64, scale=2.0**self.secure.scale_bits, clip=self.secure.clip)
        neighbours = self.secure.neighbours
        if neighbours is not None and neighbours + 1 >= len(advertised):
            neighbours = None  # a neighbourhood as large as the roster is every pair
        server = SecAggServer(
            self.session,
            SecAggConfig(
                threshold=threshold, vector_length=length, codec=codec, neighbours=neighbours
            ),
        )
        for message in advertised:
            server.handle_advertise(message)
        try:
            return self._finish(server, [m.client_id for m in advertised], length)
        except AggregationError as err:
            return self._skip(err.message)

    def _finish(self, server: SecAggServer, members: list[str], length: int) -> SecureRoundResult:
        timeout = self.secure.stage_timeout_s
        roster = roster_to_json(server.roster())

        def share(out: FitOutcome) -> None:
            message = self._message("share", out)["share_keys"]
            server.handle_share_keys(share_keys_from_json(message))

        for out in self._exchange(
            "share", members, lambda _c: {"roster": roster}, timeout_s=timeout
        ):
            self._accept("share", out, share)
        bundles = {c: bundle_to_json(b) for c, b in server.share_bundles().items()}

        def mask(out: FitOutcome) -> None:
            tensors = out.result.parameters if out.result is not None else {}
            server.handle_masked_input(
                masked_from_tensors(tensors, client_id=out.client_id, field="mask answer")
            )

        for out in self._exchange(
            "mask", sorted(bundles), lambda c: {"bundle": bundles[c]}, timeout_s=timeout
        ):
            self._accept("mask", out, mask)
        request = server.unmask_request()
        body = request_to_json(request)

        def unmask(out: FitOutcome) -> None:
            server.handle_unmask(unmask_from_json(self._message("unmask", out)["unmask"]))

        for out in self._exchange(
            "unmask", list(request.survivors), lambda _c: {"request": body}, timeout_s=timeout
        ):
            self._accept("unmask", out, unmask)
        result = server.aggregate()
        survivors = list(result.survivors)
        for client_id, client in self.clients.items():
            if client_id in survivors:  # in the sum, whatever happened at unmask
                client.status = "ok"
            elif client.status == "ok":
                client.status, client.reason = "failed", "its update is not in the secure sum"
        total = np.asarray(result.total, dtype=np.float64)
        if total.size != length:
            raise AggregationError("the secure sum has the wrong length.", field="secagg")
        delta_sum: Parameters = OrderedDict()
        offset = 0
        for name, array in self.params.items():
            delta_sum[name] = total[offset : offset + array.size].reshape(array.shape)
            offset += array.size
        self.metrics["secagg_survivors"] = float(len(survivors))
        weight, unclipped, loss, loss_weight = (float(v) for v in total[-_TAIL:])
        if loss_weight > 0:
            self.metrics["train_loss"] = loss / loss_weight
        return SecureRoundResult(
            SecureSum(delta_sum, weight, len(survivors), unclipped),
            self._rows(),
            survivors,
            dict(self.metrics),
        )

    def _skip(self, reason: str) -> SecureRoundResult:
        for client in self.clients.values():
            if client.status == "ok":
                client.status, client.reason = "unused", f"secure aggregation aborted: {reason}"
        return SecureRoundResult(None, self._rows(), [], dict(self.metrics))

    def _rows(self) -> list[FlClientRound]:
        return [
            FlClientRound(
                client_id=client_id,
                status=c.status,
                reason=c.reason,
                num_examples=None,
                metrics={},
                bytes_up=c.bytes_up,
                bytes_down=c.bytes_down,
                seconds=c.seconds,
            )
            for client_id, c in sorted(self.clients.items())
        ]


def run_secure_round(
    transport: Transport,
    strategy: Strategy,
    config: FederatedConfig,
    *,
    run_id: str,
    round_num: int,
    params: Parameters,
    selected: Sequence[str],
    wanted: int,
) -> SecureRoundResult:
    """Run one round of secure aggregation and return the sums (or why there are none).

    Parameters
    ----------
    transport : Transport
        Any transport; each stage is one ``fit`` call.
    strategy : Strategy
        Its ``secure_weighting`` and ``secure_client_settings`` shape what clients mask.
    config : FederatedConfig
        Deadlines, ``min_clients`` and ``[federated.secure_aggregation]``.
    run_id : str
        Salts the session id (with the round and random bytes).
    round_num : int
        The round.
    params : Parameters
        The global model the clients start from.
    selected : sequence of str
        The clients asked to train.
    wanted : int
        How many updates the round aggregates (extra advertisers are unused).

    Returns
    -------
    SecureRoundResult

    Raises
    ------
    ConfigError
        When the strategy cannot aggregate sums.
    """
    strategy.check_secure()
    if not selected:
        raise Conflict("a secure round needs selected clients.", field="selected")
    session = f"{run_id}/{round_num}/{secrets.token_hex(8)}"
    return _SecureRound(transport, strategy, config, round_num, params, session).run(
        selected, wanted
    )
