"""``TorchAdapter``: a PyTorch binary classifier behind the ModelAdapter protocol."""

from __future__ import annotations

import io
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from fedloop.core import InvalidInput, Parameters, Signature, TensorSpec, validate_parameters
from fedloop.learn.adapters._torch_state import load_optimizer_state, optimizer_state
from fedloop.learn.adapters.base import StepCallback
from fedloop.learn.metrics import binary_metrics

__all__ = ["TorchAdapter", "mlp"]

_ONNX_OPSET = 17


def mlp(in_features: int, hidden: Sequence[int] = (64, 32), out_features: int = 1) -> nn.Module:
    """Build the MLP of the benchmark workloads (Linear-ReLU blocks, then a linear head).

    Parameters
    ----------
    in_features : int
        Input width.
    hidden : sequence of int, default (64, 32)
        Hidden layer widths.
    out_features : int, default 1
        Output width (1 logit for binary classification).

    Returns
    -------
    nn.Module
        ``nn.Sequential`` of the layers.
    """
    if in_features < 1 or any(h < 1 for h in hidden) or out_features < 1:
        raise InvalidInput(
            f"layer widths must be >= 1; got in={in_features}, hidden={list(hidden)}, out={out_features}.",
            field="hidden",
        )
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class _WithSigmoid(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.module(x))


class _Optimizer(Protocol):
    def zero_grad(self, set_to_none: bool = True) -> None: ...

    def step(self) -> Any: ...


class _PlainSGD:
    """Plain SGD, ``p -= lr * grad``: bit for bit what ``torch.optim.SGD(params, lr)`` does.

    Constructing any ``torch.optim`` optimizer imports ``torch._dynamo`` (about 1.5 s of CPU,
    measured with torch 2.13), once per process: in every simulation worker, every client
    process and every coordinator that trains. Without momentum or weight decay the update is
    one in-place add per tensor, so fedloop applies it directly; Adam still uses torch.optim.
    """

    def __init__(self, params: list[nn.Parameter], lr: float) -> None:
        self.params = params
        self.lr = lr

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def step(self) -> None:
        with torch.no_grad():
            for p in self.params:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-self.lr)


class TorchAdapter:
    """Train a PyTorch binary classifier (one logit) with BCE-with-logits and SGD or Adam.

    Parameters
    ----------
    module : nn.Module or Callable[[], nn.Module]
        The model, or a factory for it.
    num_features : int
        Input width (for the signature and the ONNX export).
    lr : float, default 0.05
        Learning rate.
    optimizer : {"sgd", "adam"}, default "sgd"
        Optimizer.
    batch_size : int, default 64
        Mini-batch size.
    seed : int, default 0
        Seed for shuffling (and the module factory's initialization).
    input_name, output_name : str
        Tensor names in the serving graph.

    Example
    -------
    >>> adapter = TorchAdapter(lambda: mlp(30), num_features=30)  # doctest: +SKIP
    >>> adapter.fit(x_train, y_train, epochs=1)
    >>> adapter.evaluate(x_test, y_test)["auc"]
    """

    def __init__(
        self,
        module: nn.Module | Callable[[], nn.Module],
        *,
        num_features: int,
        lr: float = 0.05,
        optimizer: str = "sgd",
        batch_size: int = 64,
        seed: int = 0,
        input_name: str = "features",
        output_name: str = "probability",
    ) -> None:
        if not 0 < lr <= 10:
            raise InvalidInput(f"`lr` must be in (0, 10]; got {lr}.", field="lr", value=lr)
        if optimizer not in ("sgd", "adam"):
            raise InvalidInput(
                f"`optimizer` must be sgd or adam; got {optimizer!r}.", field="optimizer"
            )
        if batch_size < 1:
            raise InvalidInput(f"`batch_size` must be >= 1; got {batch_size}.", field="batch_size")
        self.batch_size = batch_size
        self.params: dict[str, Any] = {
            "lr": lr,
            "optimizer": optimizer,
            "batch_size": batch_size,
            "seed": seed,
        }
        torch.manual_seed(seed)
        self.module = module if isinstance(module, nn.Module) else module()
        self.num_features = num_features
        self.input_name = input_name
        self.output_name = output_name
        self._generator = torch.Generator().manual_seed(seed)
        self.device = torch.device("cpu")
        # Built on the first fit (see _PlainSGD for why SGD is not torch.optim.SGD).
        self._opt: _Optimizer | None = None
        self._steps = 0

    def to(self, device: str | torch.device) -> TorchAdapter:
        """Move the model to ``device`` (``"cuda:0"``…); batches follow it. Call before training.

        Parameters
        ----------
        device : str or torch.device
            Where the model's parameters and each batch live.

        Returns
        -------
        TorchAdapter
            ``self``.
        """
        self.device = torch.device(device)
        self.module.to(self.device)
        return self

    # -- parameters ----------------------------------------------------------------------------
    def get_parameters(self) -> Parameters:
        """Return a copy of the state dict as numpy arrays."""
        return OrderedDict(
            (k, v.detach().cpu().numpy().copy()) for k, v in self.module.state_dict().items()
        )

    def set_parameters(self, parameters: Parameters) -> None:
        """Load parameters (names, shapes and dtypes must match the module).

        Raises
        ------
        InvalidInput
            Naming the first tensor that does not fit.
        """
        params = validate_parameters(parameters)
        own = self.module.state_dict()
        if set(params) != set(own):
            missing, extra = sorted(set(own) - set(params)), sorted(set(params) - set(own))
            raise InvalidInput(
                f"parameter names do not match the model (missing: {missing[:3]}, "
                f"unexpected: {extra[:3]}).",
                field="parameters",
                hint="Load weights of the same architecture.",
            )
        for name, array in params.items():
            if tuple(array.shape) != tuple(own[name].shape):
                raise InvalidInput(
                    f"`parameters[{name!r}]` has shape {tuple(array.shape)}; the model needs "
                    f"{tuple(own[name].shape)}.",
                    field=f"parameters.{name}",
                )
        self.module.load_state_dict(
            OrderedDict((k, torch.tensor(params[k], dtype=own[k].dtype)) for k in own)
        )

    # -- training ------------------------------------------------------------------------------
    def _tensors(
        self, x: npt.NDArray[np.floating], y: npt.NDArray[np.generic] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        xa = np.asarray(x, dtype=np.float32)
        if xa.ndim != 2 or xa.shape[1] != self.num_features:
            raise InvalidInput(
                f"`x` must have shape (rows, {self.num_features}); got {xa.shape}.",
                field="x",
                hint="Pass the same feature columns the model was built for.",
            )
        if not np.isfinite(xa).all():
            raise InvalidInput("`x` contains NaN or infinite values.", field="x")
        xt = torch.from_numpy(xa)
        if y is None:
            return xt, None
        ya = np.asarray(y, dtype=np.float32).reshape(-1)
        if ya.shape[0] != xa.shape[0]:
            raise InvalidInput(f"`y` has {ya.shape[0]} rows but `x` has {xa.shape[0]}.", field="y")
        return xt, torch.from_numpy(ya)

    def fit(
        self,
        x: npt.NDArray[np.floating],
        y: npt.NDArray[np.generic],
        *,
        epochs: int = 1,
        on_step: StepCallback | None = None,
        proximal_mu: float = 0.0,
        shuffle: bool = True,
    ) -> dict[str, float]:
        """Train for ``epochs`` passes over shuffled mini-batches.

        Parameters
        ----------
        x : ndarray of shape (rows, num_features)
            Features.
        y : ndarray of shape (rows,)
            0/1 labels.
        epochs : int, default 1
            Passes over the data.
        on_step : callable or None
            Called as ``on_step(step, loss)`` after each optimizer step.
        proximal_mu : float, default 0.0
            FedProx coefficient, >= 0: each mini-batch loss gets ``mu / 2 * sum ||w - w_start||^2``
            over the trainable parameters, where ``w_start`` are the parameters when ``fit`` was
            called. 0 is plain local SGD.
        shuffle : bool, default True
            Draw each epoch's order from the adapter's seeded generator; False takes the rows
            in the order given (a caller that orders the data itself: a distributed sampler).

        Returns
        -------
        dict[str, float]
            ``loss`` (mean BCE of the last epoch, without the proximal term) and ``num_examples``.

        Raises
        ------
        InvalidInput
            When ``epochs < 1``, ``proximal_mu`` is negative or not finite, or ``x``/``y`` are
            malformed.
        """
        if epochs < 1:
            raise InvalidInput(f"`epochs` must be >= 1; got {epochs}.", field="epochs")
        if not (math.isfinite(proximal_mu) and proximal_mu >= 0):
            raise InvalidInput(
                f"`proximal_mu` must be a finite float >= 0; got {proximal_mu!r}.",
                field="proximal_mu",
                value=proximal_mu,
                hint="Use 0 for FedAvg; FedProx papers use 0.001 to 1.",
            )
        xt, yt = self._tensors(x, y)
        if yt is None:  # unreachable: labels were passed
            raise InvalidInput("`y` is required to train.", field="y")
        xt, yt = xt.to(self.device), yt.to(self.device)
        trainable = [p for p in self.module.parameters() if p.requires_grad]
        anchor = [p.detach().clone() for p in trainable] if proximal_mu > 0 else []
        loss_fn = nn.BCEWithLogitsLoss()
        batch = self.batch_size
        opt = self._optimizer()
        self.module.train()
        mean_loss = 0.0
        for _ in range(epochs):
            order = (
                torch.randperm(xt.shape[0], generator=self._generator)
                if shuffle
                else torch.arange(xt.shape[0])
            )
            total, count = 0.0, 0
            for start in range(0, xt.shape[0], batch):
                idx = order[start : start + batch]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(self.module(xt[idx]).reshape(-1), yt[idx])
                if anchor:
                    proximal = sum(
                        ((p - p0) ** 2).sum() for p, p0 in zip(trainable, anchor, strict=True)
                    )
                    (loss + proximal_mu / 2 * proximal).backward()
                else:
                    loss.backward()
                opt.step()
                value = float(loss.detach())
                total += value * idx.shape[0]
                count += idx.shape[0]
                self._steps += 1
                if on_step is not None:
                    on_step(self._steps, value)
            mean_loss = total / max(count, 1)
        return {"loss": mean_loss, "num_examples": float(xt.shape[0])}

    def get_optimizer_state(self) -> Parameters:
        """Return the optimizer's state as named arrays (empty for plain SGD, which has none).

        Returns
        -------
        OrderedDict[str, ndarray]
            ``state.<param index>.<key>`` (Adam: ``step``, ``exp_avg``, ``exp_avg_sq``), copies.
        """
        return optimizer_state(self._opt)

    def set_optimizer_state(self, state: Parameters) -> None:
        """Load optimizer state from :meth:`get_optimizer_state` (builds the optimizer).

        Parameters
        ----------
        state : Parameters
            Named arrays; empty is a fresh optimizer.

        Raises
        ------
        InvalidInput
            When the state does not fit this adapter's optimizer or model.
        """
        load_optimizer_state(
            self._optimizer(),
            list(self.module.parameters()),
            state,
            optimizer=str(self.params["optimizer"]),
        )

    def _optimizer(self) -> _Optimizer:
        if self._opt is None:
            lr = float(self.params["lr"])
            self._opt = (
                _PlainSGD(list(self.module.parameters()), lr)
                if self.params["optimizer"] == "sgd"
                else torch.optim.Adam(self.module.parameters(), lr=lr)
            )
        return self._opt

    def predict_proba(self, x: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """Return the probability of class 1 for each row."""
        xt, _ = self._tensors(x)
        self.module.eval()
        with torch.no_grad():
            return torch.sigmoid(self.module(xt.to(self.device))).reshape(-1).double().cpu().numpy()

    def evaluate(self, x: npt.NDArray[np.floating], y: npt.NDArray[np.generic]) -> dict[str, float]:
        """Return :func:`fedloop.learn.binary_metrics` on held-out data."""
        return binary_metrics(y, self.predict_proba(x))

    # -- export --------------------------------------------------------------------------------
    def signature(self) -> Signature:
        """Return the serving signature: float32 (batch, num_features) -> float32 (batch, 1)."""
        return Signature(
            inputs=(
                TensorSpec(name=self.input_name, dtype="float32", shape=(None, self.num_features)),
            ),
            outputs=(TensorSpec(name=self.output_name, dtype="float32", shape=(None, 1)),),
        )

    def to_onnx(self) -> bytes:
        """Export the model with a sigmoid head as ONNX (opset 17, dynamic batch)."""
        wrapped = _WithSigmoid(self.module).eval()
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated upstream but needs no extra packages.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                wrapped,
                (torch.zeros(1, self.num_features, device=self.device),),
                buffer,  # type: ignore[arg-type]  # file-like objects are accepted
                input_names=[self.input_name],
                output_names=[self.output_name],
                dynamic_axes={self.input_name: {0: "batch"}, self.output_name: {0: "batch"}},
                opset_version=_ONNX_OPSET,
                dynamo=False,
            )
        return buffer.getvalue()
