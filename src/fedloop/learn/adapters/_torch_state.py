"""A torch optimizer's state as named arrays, and back (for checkpoints that must not pickle)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from fedloop.core import InvalidInput, Parameters

__all__ = ["load_optimizer_state", "optimizer_state"]


def optimizer_state(opt: Any) -> Parameters:
    """Return ``state.<param index>.<key>`` arrays of a ``torch.optim`` optimizer (else empty)."""
    out: Parameters = OrderedDict()
    if isinstance(opt, torch.optim.Optimizer):
        for index, entry in sorted(opt.state_dict()["state"].items()):
            for key, value in entry.items():
                out[f"state.{index}.{key}"] = torch.as_tensor(value).detach().cpu().numpy().copy()
    return out


def load_optimizer_state(
    opt: Any, params: list[torch.nn.Parameter], state: Parameters, *, optimizer: str
) -> None:
    """Load what :func:`optimizer_state` returned into ``opt`` (over ``params``).

    Raises
    ------
    InvalidInput
        Field ``optimizer_state``: names that are not ``state.<index>.<key>``, state for an
        optimizer that keeps none, or shapes of another model.
    """
    if not state:
        return
    if not isinstance(opt, torch.optim.Optimizer):
        raise InvalidInput(
            f"optimizer state has {len(state)} tensors but {optimizer} keeps none.",
            field="optimizer_state",
            hint="Resume with the optimizer the state was saved with.",
        )
    nested: dict[int, dict[str, torch.Tensor]] = {}
    for name, array in state.items():
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit():
            raise InvalidInput(
                f"optimizer state tensor {name!r} is not named state.<index>.<key>.",
                field="optimizer_state",
            )
        tensor = torch.from_numpy(np.array(array))
        index = int(parts[1])
        if index >= len(params) or (
            tensor.dim() > 0 and tuple(tensor.shape) != tuple(params[index].shape)
        ):
            raise InvalidInput(
                f"optimizer state does not fit the model: `{name}` has shape "
                f"{tuple(tensor.shape)} and the model has {len(params)} tensors.",
                field="optimizer_state",
                hint="Resume with the architecture the state was saved with.",
            )
        nested.setdefault(index, {})[parts[2]] = tensor
    try:
        opt.load_state_dict({"state": nested, "param_groups": opt.state_dict()["param_groups"]})
    except (ValueError, KeyError, RuntimeError) as err:
        raise InvalidInput(
            f"optimizer state does not fit the model: {err}.", field="optimizer_state"
        ) from err
