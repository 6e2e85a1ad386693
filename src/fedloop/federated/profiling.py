"""The reference profile of a federated model, merged from client summaries (no row leaves a silo)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fedloop.core import InvalidInput, Parameters, Signature
from fedloop.federated.client import EDGES_PREFIX
from fedloop.federated.messages import FitIns, FitOutcome

if TYPE_CHECKING:
    from fedloop.federated.transports.base import Transport
from fedloop.learn import (
    DataProfile,
    edges_from_sketches,
    merge_profiles,
    profile_from_arrays,
)

__all__ = ["collect_profile"]

_log = logging.getLogger("fedloop.federated.profiling")


def _answers(outcomes: Sequence[FitOutcome], phase: str) -> list[FitOutcome]:
    good = [o for o in outcomes if o.result is not None]
    for o in outcomes:
        if o.result is None:
            _log.warning("profile %s: client %s gave nothing (%s)", phase, o.client_id, o.error)
    return sorted(good, key=lambda o: o.client_id)


def collect_profile(
    transport: Transport,
    parameters: Parameters,
    *,
    signature: Signature,
    round_num: int,
    timeout_s: float = 120.0,
    num_bins: int = 100,
    num_points: int = 256,
) -> DataProfile | None:
    """Ask every client for summaries of its data and merge them into one reference profile.

    Two exchanges over the training transport, so no raw row ever leaves a client:

    1. ``sketch``: each client sends per-column quantile sketches of its features and of the
       final model's scores on them; the coordinator merges them into shared bin edges.
    2. ``counts``: each client sends its exact counts and moments on those edges; the
       coordinator adds them up (``merge_profiles``).

    Columns are named as the inference server's payload log names them (the signature's
    first input, ``name[j]`` per column, and its first output), so the monitor compares live
    traffic with this profile directly.

    Parameters
    ----------
    transport : Transport
        The run's transport, still open.
    parameters : Parameters
        The final global model.
    signature : Signature
        The registered model's signature (names the columns).
    round_num : int
        The round number the two exchanges use (the run's last round + 1; the second uses
        ``round_num + 1``).
    timeout_s : float, default 120.0
        Deadline of each exchange.
    num_bins : int, default 100
        Bins per numeric column.
    num_points : int, default 256
        Quantiles per column in a sketch.

    Returns
    -------
    DataProfile or None
        The merged profile of every client that answered both phases, or None when no client
        could (they are logged; the model is then registered without a profile, and the
        monitor takes its reference from the first window of live traffic).
    """
    clients = list(transport.list_clients())
    if not clients:
        return None
    config = {
        "task": "profile",
        "input": signature.inputs[0].name,
        "output": signature.outputs[0].name,
        "num_points": num_points,
    }
    sketch_ins = FitIns(round_num, parameters, {**config, "phase": "sketch"})
    sketched = _answers(
        transport.fit(round_num, dict.fromkeys(clients, sketch_ins), timeout_s=timeout_s),
        "sketch",
    )
    if not sketched:
        return None
    edges = edges_from_sketches(
        [o.result.parameters for o in sketched if o.result is not None], num_bins=num_bins
    )
    tensors: Parameters = OrderedDict(parameters)
    for column, values in edges.items():
        tensors[EDGES_PREFIX + column] = np.asarray(values, dtype=np.float64)
    counts_ins = FitIns(round_num + 1, tensors, {**config, "phase": "counts"})
    counted = _answers(
        transport.fit(
            round_num + 1,
            {o.client_id: counts_ins for o in sketched},
            timeout_s=timeout_s,
        ),
        "counts",
    )
    profiles = []
    for o in counted:
        assert o.result is not None  # _answers kept only results
        try:
            profiles.append(profile_from_arrays(o.result.parameters))
        except InvalidInput as err:
            _log.warning("profile counts: client %s sent a bad profile (%s)", o.client_id, err)
    return merge_profiles(profiles) if profiles else None
