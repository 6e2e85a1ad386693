"""The client's side of a secure-aggregation round, spread over four ordinary fit tasks.

A coordinator running secure aggregation sends each selected client four tasks, all with
``task = "secagg"`` and a ``secagg`` object in the settings: ``train`` (train, keep the
weighted update here, advertise two public keys), ``share`` (seal shares of the secrets
for the other members of the roster), ``mask`` (send the masked update) and ``unmask``
(reveal the shares the server may have). Only the masked update ever leaves the client.

The state between tasks (the keys and the update) lives in this process, one session per
client id: every client host (in-process, a process-pool worker, a Ray actor, an HTTP
client) keeps a client in one process, so :func:`answer_secure_task` finds it again. A new
session for a client replaces its old one, so a client that dropped out leaks nothing.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput, Parameters
from fedloop.federated.messages import FitIns, FitRes
from fedloop.federated.secagg.client import SecAggClient
from fedloop.federated.secagg.codec import (
    advertise_to_json,
    bundle_from_json,
    json_to_tensors,
    masked_to_tensors,
    request_from_json,
    roster_from_json,
    share_keys_to_json,
    unmask_to_json,
)

__all__ = ["SECURE_TASK", "STAGES", "answer_secure_task", "update_vector"]

#: The ``task`` setting of secure-aggregation tasks.
SECURE_TASK = "secagg"
#: The stages of one round, in order.
STAGES = ("train", "share", "mask", "unmask")
_WEIGHTINGS = ("examples", "uniform")


@dataclass
class _Session:
    session: str
    client: SecAggClient
    vector: npt.NDArray[np.float64]


_SESSIONS: dict[str, _Session] = {}
_LOCK = threading.Lock()


def update_vector(
    trained: Parameters,
    start: Parameters,
    *,
    weight: float,
    clip_norm: float | None,
    loss: float | None = None,
    examples: int = 0,
) -> npt.NDArray[np.float64]:
    """Return the vector a client masks: ``[w * delta..., w, unclipped, n * loss, n * has_loss]``.

    ``delta`` is ``trained - start`` per tensor in ``start``'s order, flattened; with
    ``clip_norm`` the floating-point part is first scaled to L2 norm at most ``clip_norm``
    (integer and boolean tensors are not clipped), and ``unclipped`` is 1 when no scaling
    was needed. The training loss travels masked too, weighted by the ``examples`` it was
    measured on (``has_loss`` is 1 when the client reported a finite one), so the round's
    mean loss is known and no client's is.

    Raises
    ------
    InvalidInput
        When ``trained`` does not have ``start``'s tensors, or holds non-finite values.
    """
    if list(trained) != list(start):
        raise InvalidInput(
            f"the trained model's tensors {list(trained)[:5]} differ from the global model's "
            f"{list(start)[:5]}.",
            field="parameters",
        )
    deltas: list[npt.NDArray[np.float64]] = []
    floats: list[int] = []
    for name, array in start.items():
        new = trained[name]
        if new.shape != array.shape:
            raise InvalidInput(
                f"tensor {name!r} has shape {new.shape}; the global model's is {array.shape}.",
                field=f"parameters[{name!r}]",
            )
        delta = new.astype(np.float64).reshape(-1) - array.astype(np.float64).reshape(-1)
        if not np.isfinite(delta).all():
            raise InvalidInput(f"tensor {name!r} holds non-finite values.", field="parameters")
        if array.dtype.kind == "f":
            floats.append(len(deltas))
        deltas.append(delta)
    unclipped = 1.0
    if clip_norm is not None:
        norm = float(np.sqrt(sum(float(np.dot(deltas[i], deltas[i])) for i in floats)))
        if norm > clip_norm:
            unclipped = 0.0
            for i in floats:
                deltas[i] = deltas[i] * (clip_norm / norm)
    body = np.concatenate(deltas) if deltas else np.zeros(0)
    n = float(examples)
    finite = loss is not None and math.isfinite(loss)
    tail = [weight, unclipped, n * loss if loss is not None and finite else 0.0, n * finite]
    return np.concatenate([body * weight, tail])


def _settings(ins: FitIns) -> Mapping[str, Any]:
    raw = ins.config.get("secagg")
    if not isinstance(raw, Mapping):
        raise InvalidInput("a secure-aggregation task needs a `secagg` object.", field="secagg")
    stage = raw.get("stage")
    if stage not in STAGES:
        raise InvalidInput(
            f"`secagg.stage` must be one of {', '.join(STAGES)}; got {stage!r}.",
            field="secagg.stage",
            value=stage,
        )
    for key in ("session", "client_id"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise InvalidInput(f"`secagg.{key}` must be a non-empty string.", field=f"secagg.{key}")
    return raw


def _train(fit: Callable[[FitIns], FitRes], ins: FitIns, cfg: Mapping[str, Any]) -> FitRes:
    weighting = cfg.get("weighting")
    if weighting not in _WEIGHTINGS:
        raise InvalidInput(
            f"`secagg.weighting` must be one of {_WEIGHTINGS}; got {weighting!r}.",
            field="secagg.weighting",
        )
    clip_norm = cfg.get("clip_norm")
    if clip_norm is not None and not (isinstance(clip_norm, int | float) and clip_norm > 0):
        raise InvalidInput("`secagg.clip_norm` must be a number > 0.", field="secagg.clip_norm")
    limit = cfg.get("clip")
    if not isinstance(limit, int | float) or limit <= 0:
        raise InvalidInput("`secagg.clip` must be a number > 0.", field="secagg.clip")
    training = {k: v for k, v in ins.config.items() if k not in ("task", "secagg")}
    res = fit(FitIns(ins.round_num, ins.parameters, training))
    weight = float(res.num_examples) if weighting == "examples" else 1.0
    loss = res.metrics.get("loss")
    vector = update_vector(
        res.parameters,
        ins.parameters,
        weight=weight,
        clip_norm=None if clip_norm is None else float(clip_norm),
        loss=None if loss is None else float(loss),
        examples=int(res.num_examples),
    )
    peak = float(np.max(np.abs(vector))) if vector.size else 0.0
    if peak > float(limit):
        raise InvalidInput(
            f"this client's weighted update reaches {peak:.4g}, above the secure-aggregation "
            f"range {float(limit):.4g}; it would be clipped, so the client leaves the round.",
            field="federated.secure_aggregation.clip",
            value=peak,
            hint="Raise [federated.secure_aggregation] clip, or clip updates with dpfedavg.",
        )
    client = SecAggClient(str(cfg["client_id"]))
    with _LOCK:
        _SESSIONS[client.client_id] = _Session(str(cfg["session"]), client, vector)
    answer = {"stage": "train", "advertise": advertise_to_json(client.advertise())}
    return FitRes(json_to_tensors(answer), 0, {}, round_num=ins.round_num)


def _session(cfg: Mapping[str, Any]) -> _Session:
    client_id, session = str(cfg["client_id"]), str(cfg["session"])
    with _LOCK:
        state = _SESSIONS.get(client_id)
    if state is None or state.session != session:
        raise InvalidInput(
            f"client {client_id!r} holds no secure-aggregation session {session!r} (its "
            "process restarted, or a newer round replaced it); it leaves this round.",
            field="secagg.session",
            value=session,
        )
    return state


def answer_secure_task(fit: Callable[[FitIns], FitRes], ins: FitIns) -> FitRes:
    """Answer one stage of a secure-aggregation round.

    Parameters
    ----------
    fit : callable
        The client's ``fit`` (called by the ``train`` stage only).
    ins : FitIns
        The task; its ``secagg`` setting says the stage, the session and this client's id,
        and carries the server's message for the stage.

    Returns
    -------
    FitRes
        The client's message as tensors (:mod:`fedloop.federated.secagg.codec`), with no
        metrics and 0 examples: its data set size and loss stay inside the masked sum.

    Raises
    ------
    InvalidInput
        For a malformed task, a session this process does not hold, or an update too large
        for the fixed-point range.
    Conflict, AggregationError
        When the protocol cannot go on for this client (stage out of order, too few peers).
    """
    cfg = _settings(ins)
    stage = cfg["stage"]
    if stage == "train":
        return _train(fit, ins, cfg)
    state = _session(cfg)
    params: Parameters
    if stage == "share":
        roster = roster_from_json(cfg.get("roster"), field="secagg.roster")
        params = json_to_tensors(
            {"stage": "share", "share_keys": share_keys_to_json(state.client.share(roster))}
        )
    elif stage == "mask":
        bundle = bundle_from_json(cfg.get("bundle"), field="secagg.bundle")
        params = masked_to_tensors(state.client.masked_input(bundle, state.vector))
    else:
        request = request_from_json(cfg.get("request"), field="secagg.request")
        response = state.client.unmask(request)
        with _LOCK:
            _SESSIONS.pop(state.client.client_id, None)
        params = json_to_tensors({"stage": "unmask", "unmask": unmask_to_json(response)})
    return FitRes(OrderedDict(params), 0, {}, round_num=ins.round_num)
