"""Card-fraud detection: synthetic imbalanced transactions and the flows that use them."""

from fedloop.scenarios.fraud.data import FraudData, make_fraudlike

__all__ = ["FraudData", "make_fraudlike"]
