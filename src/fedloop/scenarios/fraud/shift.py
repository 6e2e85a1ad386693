"""The demo's data world: card transactions of several banks before and after a fraud-pattern shift."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput
from fedloop.federated.client import AdapterClient

if TYPE_CHECKING:
    from fedloop.learn import TorchAdapter

__all__ = [
    "REGIMES",
    "FraudWorld",
    "bank_data",
    "bank_sizes",
    "central_baseline",
    "feature_names",
    "holdout_data",
    "make_shift_client",
    "make_world",
    "shift_adapter",
    "traffic",
]

#: The two regimes of the world, in time order.
REGIMES = ("before", "after")

_NAMED = (
    "log_amount",
    "hour_sin",
    "hour_cos",
    "merchant_risk",
    "log_distance_km",
    "txn_last_1h",
    "txn_last_24h",
    "card_present",
    "foreign",
    "new_merchant",
    "log_account_age_days",
    "log_minutes_since_last",
    "amount_vs_card_avg",
)
_NUM_ANON = 30 - len(_NAMED)
_FEATURES = _NAMED + tuple(f"v{i}" for i in range(1, _NUM_ANON + 1))

# Split ids seed independent random streams: a bank's training rows never overlap its test rows.
_SPLITS = {"train": 0, "test": 1, "traffic": 2, "reference": 3}

_Array = npt.NDArray[np.float64]
_Labels = npt.NDArray[np.int64]


@dataclasses.dataclass(frozen=True)
class _Regime:
    """What changes at the shift: legitimate behaviour, fraud volume and fraud modes."""

    card_present: float  # share of legitimate purchases made in store
    amount_shift: float  # added to the legitimate log amount
    txn_1h_rate: float  # Poisson rate of a legitimate card's purchases in the last hour
    fraud_scale: float  # multiplies each bank's base fraud rate
    classic: float  # shares of the fraud modes (sum to 1 with burst and camouflaged)
    burst: float
    camouflaged: float


_REGIME = {
    "before": _Regime(0.55, 0.0, 0.4, 1.0, classic=0.9, burst=0.0, camouflaged=0.1),
    "after": _Regime(0.75, -0.35, 0.9, 1.25, classic=0.6, burst=0.3, camouflaged=0.1),
}


@dataclasses.dataclass(frozen=True)
class _Bank:
    amount_offset: float
    card_present_offset: float
    distance_offset: float
    foreign_rate: float


@dataclasses.dataclass(frozen=True, eq=False)
class FraudWorld:
    """The banks, their customers and fraud, and the fixed standardization of the features.

    Build one with :func:`make_world`; everything else is derived from ``seed``. Banks differ
    in size, fraud rate and customers (amounts, in-store share, distances, travel abroad).

    Before the shift, fraud is mostly "classic": card not present, large amounts, at night,
    far from home, at risky or new merchants, often abroad. After it, the fraud rate rises by a
    quarter and a third of the fraud is a new "burst" mode (skimmed cards used in store near
    home: small purchases minutes apart, several in the last hour) that a model trained before
    the shift scores no higher than legitimate traffic. The legitimate traffic moves too (more
    in-store, smaller and busier purchases: the season the attack rides on), so the features
    ``log_amount``, ``card_present``, ``txn_last_1h`` and ``txn_last_24h`` drift. A tenth of
    the fraud in both regimes is indistinguishable from legitimate traffic (an AUC ceiling
    near 0.95). One standardization, fixed from "before" data, applies to both regimes.

    Attributes
    ----------
    seed : int
        Seed the world was made with.
    banks : tuple of str
        Bank (client) ids, ``bank-000`` upwards.
    shares : tuple of float
        Each bank's fraction of all transactions (sums to 1; banks differ in size).
    fraud_rates : tuple of float
        Each bank's fraud rate before the shift, in [0.01, 0.03].
    mean, std : ndarray of shape (30,)
        Standardization of every feature, from "before" training-like data of all banks.
    """

    seed: int
    banks: tuple[str, ...]
    shares: tuple[float, ...]
    fraud_rates: tuple[float, ...]
    mean: _Array
    std: _Array
    _profiles: tuple[_Bank, ...]
    _mixing: _Array  # orthogonal: latent components -> anonymised features
    _old_direction: _Array
    _new_direction: _Array

    def fraud_rate(self, bank: str, regime: str) -> float:
        """Return the expected fraud rate of ``bank`` in ``regime``."""
        return self.fraud_rates[_bank_index(self, bank)] * _regime(regime).fraud_scale


def feature_names() -> tuple[str, ...]:
    """Return the 30 feature names in column order (13 named, then ``v1`` to ``v17``)."""
    return _FEATURES


@functools.lru_cache(maxsize=8)
def make_world(seed: int = 0, num_banks: int = 5) -> FraudWorld:
    """Make the world of ``num_banks`` banks (deterministic per seed; cached per process).

    Parameters
    ----------
    seed : int, default 0
        Seed of the banks' profiles, the anonymised components and all generated rows.
    num_banks : int, default 5
        Banks, 2 to 100.

    Returns
    -------
    FraudWorld
        The world, with its standardization fixed from 40,000 "before" rows.

    Raises
    ------
    InvalidInput
        When ``num_banks`` or ``seed`` is out of range.

    Example
    -------
    >>> world = make_world(0)
    >>> x, y = bank_data(world, world.banks[0], "before", rows=10_000)
    """
    if not 2 <= num_banks <= 100:
        raise InvalidInput(
            f"`num_banks` must be in [2, 100]; got {num_banks}.", field="num_banks", value=num_banks
        )
    if seed < 0:
        raise InvalidInput(f"`seed` must be >= 0; got {seed}.", field="seed", value=seed)
    rng = np.random.default_rng([seed, 7_919])
    # Sizes: a long tail (the offset keeps small banks from vanishing).
    weights = np.sort(rng.lognormal(0.0, 0.6, num_banks))[::-1] + 0.25
    shares = weights / weights.sum()
    # Fraud rates spread over [1%, 3%] in shuffled order, so size and fraud rate are unrelated.
    rates = rng.permutation(np.round(np.linspace(0.01, 0.03, num_banks), 4))
    profiles = tuple(
        _Bank(
            amount_offset=float(rng.uniform(-0.3, 0.3)),
            card_present_offset=float(rng.uniform(-0.08, 0.08)),
            distance_offset=float(rng.uniform(-0.3, 0.3)),
            foreign_rate=float(rng.uniform(0.02, 0.08)),
        )
        for _ in range(num_banks)
    )
    mixing, _ = np.linalg.qr(rng.normal(size=(_NUM_ANON, _NUM_ANON)))
    old_dir, new_dir = np.zeros(_NUM_ANON), np.zeros(_NUM_ANON)
    old_dir[:6], new_dir[6:12] = rng.normal(size=6), rng.normal(size=6)
    world = FraudWorld(
        seed=seed,
        banks=tuple(f"bank-{i:03d}" for i in range(num_banks)),
        shares=tuple(float(s) for s in shares),
        fraud_rates=tuple(float(r) for r in rates),
        mean=np.zeros(len(_FEATURES)),
        std=np.ones(len(_FEATURES)),
        _profiles=profiles,
        _mixing=mixing,
        _old_direction=old_dir / np.linalg.norm(old_dir),
        _new_direction=new_dir / np.linalg.norm(new_dir),
    )
    raw = np.concatenate(
        [
            _raw_rows(world, i, "before", rows, _rng(world, i, "before", "reference"))[0]
            for i, rows in enumerate(_split_rows(shares, 40_000))
        ]
    )
    std = raw.std(axis=0)
    std[std == 0] = 1.0
    world = dataclasses.replace(world, mean=raw.mean(axis=0), std=std)
    for array in (world.mean, world.std, mixing, world._old_direction, world._new_direction):
        array.setflags(write=False)
    return world


def bank_sizes(world: FraudWorld, rows: int) -> dict[str, int]:
    """Split ``rows`` transactions over the banks by their shares (largest remainder).

    Parameters
    ----------
    world : FraudWorld
        The world.
    rows : int
        Total rows, >= the number of banks.

    Returns
    -------
    dict[str, int]
        Bank id -> rows; the counts sum to ``rows`` and each is >= 1.
    """
    _check_rows(rows, minimum=len(world.banks))
    return dict(zip(world.banks, _split_rows(np.array(world.shares), rows), strict=True))


def bank_data(
    world: FraudWorld, bank: str, regime: str, *, rows: int, split: str = "train"
) -> tuple[npt.NDArray[np.float32], _Labels]:
    """Generate ``rows`` standardized transactions of one bank.

    Parameters
    ----------
    world : FraudWorld
        The world.
    bank : str
        One of ``world.banks``.
    regime : {"before", "after"}
        Before or after the shift.
    rows : int
        Rows, >= 1.
    split : {"train", "test", "traffic"}, default "train"
        Independent streams: the same arguments give the same rows, other splits other rows.

    Returns
    -------
    x : ndarray of float32, shape (rows, 30)
        Standardized features (columns in :func:`feature_names` order).
    y : ndarray of int64, shape (rows,)
        1 for fraud.

    Raises
    ------
    InvalidInput
        When the bank, regime, split or row count is unknown or out of range.
    """
    _check_rows(rows)
    if split not in ("train", "test", "traffic"):
        raise InvalidInput(
            f"`split` must be train, test or traffic; got {split!r}.", field="split", value=split
        )
    index = _bank_index(world, bank)
    _regime(regime)
    raw, y = _raw_rows(world, index, regime, rows, _rng(world, index, regime, split))
    return _standardize(world, raw), y


def holdout_data(
    world: FraudWorld, regime: str, *, rows: int
) -> tuple[npt.NDArray[np.float32], _Labels]:
    """Generate a held-out test set of all banks (each by its share), shuffled.

    Parameters
    ----------
    world : FraudWorld
        The world.
    regime : {"before", "after"}
        Before or after the shift.
    rows : int
        Rows, >= the number of banks.

    Returns
    -------
    x, y
        As :func:`bank_data`; drawn independently of every bank's training rows.
    """
    return _pooled(world, regime, rows, split="test", seed=0)


def traffic(
    world: FraudWorld, regime: str, *, rows: int, seed: int = 0
) -> tuple[npt.NDArray[np.float32], _Labels]:
    """Generate live requests: transactions of all banks interleaved, seeded per batch.

    Parameters
    ----------
    world : FraudWorld
        The world.
    regime : {"before", "after"}
        Before or after the shift.
    rows : int
        Requests, >= the number of banks.
    seed : int, default 0
        Seed of this batch (use a new one per batch to get new transactions).

    Returns
    -------
    x, y
        As :func:`bank_data`; ``y`` is the delayed label.
    """
    return _pooled(world, regime, rows, split="traffic", seed=seed)


def shift_adapter(
    seed: int,
    *,
    hidden: Sequence[int] = (32, 16),
    lr: float = 0.05,
    batch_size: int = 64,
) -> TorchAdapter:
    """Build the demo's model: an MLP 30-hidden-1 trained with SGD (imports torch).

    Parameters
    ----------
    seed : int
        Initialization and shuffling seed.
    hidden : sequence of int, default (32, 16)
        Hidden widths.
    lr : float, default 0.05
        SGD learning rate.
    batch_size : int, default 64
        Mini-batch rows.

    Returns
    -------
    TorchAdapter
        A fresh adapter.
    """
    from fedloop.learn import TorchAdapter, mlp

    widths = tuple(int(h) for h in hidden)
    return TorchAdapter(
        lambda: mlp(len(_FEATURES), widths),
        num_features=len(_FEATURES),
        lr=lr,
        batch_size=batch_size,
        seed=seed,
    )


def make_shift_client(
    client_id: str,
    *,
    regime: str,
    rows: int,
    seed: int = 0,
    world_seed: int = 0,
    num_banks: int = 5,
    hidden: Sequence[int] = (32, 16),
    lr: float = 0.05,
    batch_size: int = 64,
) -> AdapterClient:
    """Build one bank's client; its rows are generated here, in the process hosting it.

    The factory that :class:`~fedloop.federated.simulation.LocalBackend` workers import by
    name (``fedloop.scenarios.fraud.shift:make_shift_client``); every argument is JSON.

    Parameters
    ----------
    client_id : str
        A bank of the world (``bank-000`` ...).
    regime : {"before", "after"}
        Which regime the bank's training data comes from.
    rows : int
        Training rows of all banks together; this bank holds its share (:func:`bank_sizes`).
    seed : int, default 0
        The run seed (seeds local training).
    world_seed, num_banks : int
        The world (:func:`make_world`).
    hidden, lr, batch_size
        The model (:func:`shift_adapter`).

    Returns
    -------
    AdapterClient
        The bank's client, holding only its own rows.
    """
    world = make_world(world_seed, num_banks)
    x, y = bank_data(world, client_id, regime, rows=bank_sizes(world, rows)[client_id])
    factory = functools.partial(shift_adapter, hidden=tuple(hidden), lr=lr, batch_size=batch_size)
    return AdapterClient(client_id, factory, x, y, seed=seed)


def central_baseline(
    world: FraudWorld,
    regime: str = "after",
    *,
    rows: int,
    epochs: int,
    seed: int = 0,
    test_rows: int = 50_000,
    hidden: Sequence[int] = (32, 16),
    lr: float = 0.05,
    batch_size: int = 64,
) -> float:
    """Return the test AUC of the model trained centrally on the banks' pooled rows.

    The pooled rows are exactly the union of what :func:`make_shift_client` gives the banks
    for the same ``rows``, so this is the federated run's reference point.

    Parameters
    ----------
    world : FraudWorld
        The world.
    regime : {"before", "after"}, default "after"
        Training and test regime.
    rows : int
        Training rows of all banks together.
    epochs : int
        Passes over the pooled rows (from a fresh model).
    seed : int, default 0
        Initialization and shuffling seed.
    test_rows : int, default 50000
        Rows of :func:`holdout_data`.
    hidden, lr, batch_size
        The model (:func:`shift_adapter`).

    Returns
    -------
    float
        ROC AUC on ``holdout_data(world, regime, rows=test_rows)``.
    """
    parts = [bank_data(world, bank, regime, rows=n) for bank, n in bank_sizes(world, rows).items()]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    model = shift_adapter(seed, hidden=hidden, lr=lr, batch_size=batch_size)
    model.fit(x, y, epochs=epochs)
    x_test, y_test = holdout_data(world, regime, rows=test_rows)
    return float(model.evaluate(x_test, y_test)["auc"])


# -- generation -------------------------------------------------------------------------------


def _regime(regime: str) -> _Regime:
    found = _REGIME.get(regime)
    if found is None:
        raise InvalidInput(
            f"`regime` must be one of {list(REGIMES)}; got {regime!r}.",
            field="regime",
            value=regime,
        )
    return found


def _bank_index(world: FraudWorld, bank: str) -> int:
    if bank not in world.banks:
        raise InvalidInput(
            f"unknown bank {bank!r}; this world has {list(world.banks)}.",
            field="bank",
            value=bank,
            hint="Use an id from world.banks (make_world(num_banks=...) sets how many).",
        )
    return world.banks.index(bank)


def _check_rows(rows: int, *, minimum: int = 1) -> None:
    if not minimum <= rows <= 50_000_000:
        raise InvalidInput(
            f"`rows` must be in [{minimum}, 50000000]; got {rows}.", field="rows", value=rows
        )


def _split_rows(shares: npt.NDArray[np.float64], rows: int) -> list[int]:
    exact = shares * rows
    counts = np.maximum(np.floor(exact).astype(np.int64), 1)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    for i in range(rows - int(counts.sum())):
        counts[order[i % len(order)]] += 1
    while counts.sum() > rows:  # tiny totals: the floor of one row each overshot
        counts[int(np.argmax(counts))] -= 1
    return [int(c) for c in counts]


def _rng(
    world: FraudWorld, bank: int, regime: str, split: str, seed: int = 0
) -> np.random.Generator:
    return np.random.default_rng([world.seed, bank, REGIMES.index(regime), _SPLITS[split], seed])


def _standardize(world: FraudWorld, raw: _Array) -> npt.NDArray[np.float32]:
    return ((raw - world.mean) / world.std).astype(np.float32)


def _pooled(
    world: FraudWorld, regime: str, rows: int, *, split: str, seed: int
) -> tuple[npt.NDArray[np.float32], _Labels]:
    _check_rows(rows, minimum=len(world.banks))
    _regime(regime)
    if seed < 0:
        raise InvalidInput(f"`seed` must be >= 0; got {seed}.", field="seed", value=seed)
    parts = [
        _raw_rows(world, i, regime, n, _rng(world, i, regime, split, seed))
        for i, n in enumerate(_split_rows(np.array(world.shares), rows))
    ]
    order = np.random.default_rng([world.seed, _SPLITS[split], seed, rows]).permutation(rows)
    raw = np.concatenate([p[0] for p in parts])[order]
    y = np.concatenate([p[1] for p in parts])[order]
    return _standardize(world, raw), y


def _raw_rows(
    world: FraudWorld, bank: int, regime: str, n: int, rng: np.random.Generator
) -> tuple[_Array, _Labels]:
    """Draw ``n`` unstandardized rows: legitimate behaviour first, then each fraud mode's."""
    reg = _regime(regime)
    rate = world.fraud_rates[bank] * reg.fraud_scale
    mode = rng.choice(
        4, size=n, p=[1 - rate, rate * reg.classic, rate * reg.burst, rate * reg.camouflaged]
    )
    cols = _legitimate(world._profiles[bank], reg, n, rng)
    latent = rng.normal(size=(n, _NUM_ANON))
    _classic(cols, np.flatnonzero(mode == 1), rng)
    latent[mode == 1] += 1.5 * world._old_direction
    _burst(cols, np.flatnonzero(mode == 2), rng)
    latent[mode == 2] += 1.5 * world._new_direction
    # Mode 3 (camouflaged fraud) keeps the legitimate draws: no feature can tell it apart.
    hour = np.mod(cols.pop("hour"), 24.0) * (2 * np.pi / 24)
    earlier = cols.pop("txn_earlier_24h")
    named = {
        **cols,
        "hour_sin": np.sin(hour),
        "hour_cos": np.cos(hour),
        "txn_last_24h": cols["txn_last_1h"] + earlier,
    }
    x = np.column_stack([named[name] for name in _NAMED] + [latent @ world._mixing])
    return x, (mode > 0).astype(np.int64)


def _legitimate(prof: _Bank, reg: _Regime, n: int, rng: np.random.Generator) -> dict[str, _Array]:
    present = rng.random(n) < reg.card_present + prof.card_present_offset
    # A few cards (busy shoppers) make many purchases an hour: legitimate bursts exist, so a
    # model trained before the shift has seen high velocity and learned it is not fraud.
    busy = rng.random(n) < 0.05
    return {
        "log_amount": rng.normal(3.3 + prof.amount_offset + reg.amount_shift, 0.9, n)
        + np.where(present, 0.0, 0.3),
        "hour": rng.normal(14.0, 4.5, n),
        "merchant_risk": rng.beta(2.0, 8.0, n),
        "log_distance_km": np.log1p(rng.lognormal(1.6 + prof.distance_offset, 1.0, n)),
        "txn_last_1h": rng.poisson(np.where(busy, 3.5, reg.txn_1h_rate)).astype(np.float64),
        "txn_earlier_24h": rng.poisson(3.0, n).astype(np.float64),
        "card_present": present.astype(np.float64),
        "foreign": (rng.random(n) < prof.foreign_rate).astype(np.float64),
        "new_merchant": (rng.random(n) < 0.15).astype(np.float64),
        "log_account_age_days": rng.normal(6.5, 1.0, n),
        "log_minutes_since_last": rng.normal(np.where(busy, 2.5, 5.0), np.where(busy, 1.0, 1.5)),
        "amount_vs_card_avg": rng.normal(0.0, 0.6, n),
    }


def _classic(cols: dict[str, _Array], k: npt.NDArray[np.intp], rng: np.random.Generator) -> None:
    """Make rows ``k`` classic fraud: card not present, large, at night, far away, often abroad."""
    m = len(k)
    cols["card_present"][k] = rng.random(m) < 0.1
    cols["log_amount"][k] = rng.normal(4.6, 1.0, m)
    cols["hour"][k] = rng.normal(2.5, 3.5, m)
    cols["merchant_risk"][k] = rng.beta(4.0, 4.0, m)
    cols["log_distance_km"][k] = np.log1p(rng.lognormal(4.0, 1.2, m))
    cols["foreign"][k] = rng.random(m) < 0.35
    cols["new_merchant"][k] = rng.random(m) < 0.6
    cols["log_account_age_days"][k] = rng.normal(6.0, 1.2, m)
    cols["amount_vs_card_avg"][k] = rng.normal(1.0, 0.8, m)


def _burst(cols: dict[str, _Array], k: npt.NDArray[np.intp], rng: np.random.Generator) -> None:
    """Make rows ``k`` burst fraud: a skimmed card used in store near home, small and fast."""
    m = len(k)
    cols["card_present"][k] = rng.random(m) < 0.9
    cols["log_amount"][k] = rng.normal(3.0, 0.6, m)
    cols["txn_last_1h"][k] = rng.poisson(3.5, m)
    cols["new_merchant"][k] = rng.random(m) < 0.35
    cols["log_minutes_since_last"][k] = rng.normal(1.5, 0.8, m)
