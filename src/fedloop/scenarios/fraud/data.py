"""Synthetic card transactions shaped like the "fraudlike" benchmark workload."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split

__all__ = ["FraudData", "make_fraudlike"]


@dataclass(frozen=True)
class FraudData:
    """A standardized train/test split of transactions (30 features, about 3% fraud)."""

    x_train: npt.NDArray[np.float32]
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[np.float32]
    y_test: npt.NDArray[np.int64]
    mean: npt.NDArray[np.float64]
    std: npt.NDArray[np.float64]

    @property
    def num_features(self) -> int:
        """Return the number of feature columns."""
        return int(self.x_train.shape[1])


def make_fraudlike(n_samples: int = 200_000, *, seed: int = 0) -> FraudData:
    """Generate the W-FL/W-SERVE data set: make_classification, stratified split, standardized.

    Parameters
    ----------
    n_samples : int, default 200000
        Total rows before the 80/20 split.
    seed : int, default 0
        Seed of the generator and the split.

    Returns
    -------
    FraudData
        Train and test arrays standardized with the train mean and std.
    """
    x, y = make_classification(
        n_samples=n_samples,
        n_features=30,
        n_informative=12,
        n_redundant=6,
        weights=[0.97],
        flip_y=0.01,
        class_sep=1.0,
        random_state=seed,
    )
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=seed
    )
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0
    return FraudData(
        x_train=((x_train - mean) / std).astype(np.float32),
        y_train=y_train.astype(np.int64),
        x_test=((x_test - mean) / std).astype(np.float32),
        y_test=y_test.astype(np.int64),
        mean=mean,
        std=std,
    )
