"""Aggregation strategies behind one interface: FedAvg, FedProx, FedOpt, robust rules, FedBuff, DP-FedAvg."""

from fedloop.federated.strategies.base import ClientUpdate, Strategy, weighted_average
from fedloop.federated.strategies.dpfedavg import DPFedAvg
from fedloop.federated.strategies.factory import STRATEGIES, make_strategy
from fedloop.federated.strategies.fedavg import FedAvg
from fedloop.federated.strategies.fedbuff import FedBuff
from fedloop.federated.strategies.fedopt import FedAdagrad, FedAdam, FedYogi
from fedloop.federated.strategies.fedprox import FedProx
from fedloop.federated.strategies.robust import CoordinateMedian, Krum, MultiKrum, TrimmedMean

__all__ = [
    "STRATEGIES",
    "ClientUpdate",
    "CoordinateMedian",
    "DPFedAvg",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedBuff",
    "FedProx",
    "FedYogi",
    "Krum",
    "MultiKrum",
    "Strategy",
    "TrimmedMean",
    "make_strategy",
    "weighted_average",
]
