"""FedProx: FedAvg on the server plus a proximal term the clients add (Li et al., 2020)."""

from __future__ import annotations

from typing import Any, ClassVar

from fedloop.federated.strategies._util import _check_number
from fedloop.federated.strategies.fedavg import FedAvg

__all__ = ["FedProx"]


class FedProx(FedAvg):
    """FedProx: clients minimise ``loss + proximal_mu / 2 * ||w - w_global||^2``.

    The server side is FedAvg's example-weighted average; what differs is the setting sent to
    clients, which add the proximal term during local training.

    Parameters
    ----------
    proximal_mu : float
        Weight of the proximal term, ``>= 0`` (``0`` is plain FedAvg; the paper uses 0.001 to 1).

    Raises
    ------
    InvalidInput
        When ``proximal_mu`` is not a finite number ``>= 0`` (field ``strategy.proximal_mu``).

    Examples
    --------
    >>> from fedloop.federated.strategies import FedProx
    >>> FedProx(0.01).configure_train(1)
    {'proximal_mu': 0.01}
    """

    name: ClassVar[str] = "fedprox"

    def __init__(self, proximal_mu: float) -> None:
        _check_number(proximal_mu, field="proximal_mu", low=0.0)
        self.proximal_mu = proximal_mu

    def get_params(self) -> dict[str, Any]:
        """Return the constructor arguments: ``{"proximal_mu": ...}`` as given."""
        return {"proximal_mu": self.proximal_mu}

    def configure_train(self, round_num: int) -> dict[str, Any]:
        """Return the setting every client needs for its proximal term.

        Parameters
        ----------
        round_num : int
            The round being configured (unused).

        Returns
        -------
        dict
            ``{"proximal_mu": proximal_mu}`` (as a float).
        """
        return {"proximal_mu": float(self.proximal_mu)}
