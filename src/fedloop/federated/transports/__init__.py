"""Transports between coordinator and clients: the interface and its implementations."""

from fedloop.federated.transports.base import Transport
from fedloop.federated.transports.inprocess import InProcessTransport

__all__ = ["InProcessTransport", "Transport"]
