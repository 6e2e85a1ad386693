"""Row partitioners that split one data set over simulated federated clients (IID and non-IID)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput

__all__ = [
    "dirichlet_partition",
    "iid_partition",
    "partition_summary",
    "quantity_skew_partition",
]

#: Draws :func:`dirichlet_partition` makes before it gives up on ``min_size``.
_MAX_DRAWS = 100


def _check_num_rows(num_rows: int) -> None:
    if isinstance(num_rows, bool) or not isinstance(num_rows, (int, np.integer)) or num_rows < 1:
        raise InvalidInput(
            f"`num_rows` must be an integer >= 1; got {num_rows!r}.",
            field="num_rows",
            value=num_rows,
        )


def _check_num_clients(num_clients: int, num_rows: int) -> None:
    if (
        isinstance(num_clients, bool)
        or not isinstance(num_clients, (int, np.integer))
        or not 1 <= num_clients <= num_rows
    ):
        raise InvalidInput(
            f"`num_clients` must be an integer in [1, {num_rows}] (the number of rows); "
            f"got {num_clients!r}.",
            field="num_clients",
            value=num_clients,
            hint="Use fewer clients or more data.",
        )


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, (int, float, np.floating)) and math.isfinite(alpha) and alpha > 0):
        raise InvalidInput(
            f"`alpha` must be a finite float > 0; got {alpha!r}.",
            field="alpha",
            value=alpha,
            hint="Smaller alpha gives more skewed clients; 0.5 is the W-FL workload's value.",
        )


def _check_labels(labels: npt.ArrayLike) -> npt.NDArray[np.generic]:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise InvalidInput(
            f"`labels` must be one-dimensional (one label per row); got shape {array.shape}.",
            field="labels",
            hint="Pass y, not a one-hot matrix.",
        )
    return array


def _split(
    order: npt.NDArray[np.int64], sizes: npt.NDArray[np.int64]
) -> list[npt.NDArray[np.int64]]:
    """Cut ``order`` into consecutive pieces of ``sizes`` rows and sort each piece."""
    pieces = np.split(order, np.cumsum(sizes)[:-1])
    return [np.sort(piece).astype(np.int64, copy=False) for piece in pieces]


def iid_partition(num_rows: int, num_clients: int, *, seed: int) -> list[npt.NDArray[np.int64]]:
    """Shuffle the rows and deal them out as evenly as possible (sizes differ by at most 1).

    Parameters
    ----------
    num_rows : int
        Number of rows to split (indices ``0 .. num_rows - 1``).
    num_clients : int
        Number of clients, in ``[1, num_rows]``.
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same split.

    Returns
    -------
    list of ndarray of int64
        One sorted index array per client; together they hold every row exactly once.

    Raises
    ------
    InvalidInput
        When ``num_rows < 1`` or ``num_clients`` is outside ``[1, num_rows]``.

    Example
    -------
    >>> [p.tolist() for p in iid_partition(5, 2, seed=0)]  # doctest: +SKIP
    [[0, 2, 4], [1, 3]]
    """
    _check_num_rows(num_rows)
    _check_num_clients(num_clients, num_rows)
    order = np.random.default_rng(seed).permutation(num_rows).astype(np.int64)
    return [np.sort(piece) for piece in np.array_split(order, num_clients)]


def _dirichlet_draw(
    rng: np.random.Generator, by_class: list[npt.NDArray[np.int64]], num_clients: int, alpha: float
) -> list[npt.NDArray[np.int64]]:
    """One draw: per class, shuffle its rows and cut them by Dirichlet(alpha) proportions."""
    pieces: list[list[npt.NDArray[np.int64]]] = [[] for _ in range(num_clients)]
    for rows in by_class:
        shuffled = rng.permutation(rows)
        proportions = rng.dirichlet(np.full(num_clients, alpha))
        cuts = np.floor(np.cumsum(proportions)[:-1] * len(rows)).astype(np.int64)
        for client, chunk in enumerate(np.split(shuffled, cuts)):
            pieces[client].append(chunk)
    return [np.sort(np.concatenate(chunks)).astype(np.int64, copy=False) for chunks in pieces]


def dirichlet_partition(
    labels: npt.ArrayLike,
    num_clients: int,
    *,
    alpha: float,
    seed: int,
    min_size: int = 0,
) -> list[npt.NDArray[np.int64]]:
    """Split rows with label skew: each class is spread over the clients by Dirichlet(alpha).

    For each class (in sorted label order) the class's row indices are shuffled, proportions
    ``p ~ Dirichlet(alpha, ..., alpha)`` over the clients are drawn, and the shuffled rows are
    cut at ``floor(cumsum(p) * class_rows)``. Small ``alpha`` (0.1) gives clients dominated by
    one class; large ``alpha`` (1000) gives every client nearly the global label mix.

    The generator is ``numpy.random.default_rng(seed)``, not the legacy ``np.random.seed``
    state, so ``seed=0`` is deterministic here but does not reproduce splits made by code that
    calls ``np.random.dirichlet`` after ``np.random.seed(0)``.

    Parameters
    ----------
    labels : array-like of shape (rows,)
        One label per row (any hashable, sortable values).
    num_clients : int
        Number of clients, in ``[1, rows]``.
    alpha : float
        Dirichlet concentration, > 0.
    seed : int
        Seed of ``numpy.random.default_rng``.
    min_size : int, default 0
        Smallest number of rows any client may get. When a draw leaves a client smaller, the
        whole split is drawn again (up to 100 draws, continuing the same generator).

    Returns
    -------
    list of ndarray of int64
        One sorted index array per client (possibly empty when ``min_size`` is 0); together they
        hold every row exactly once.

    Raises
    ------
    InvalidInput
        When ``labels`` is not 1-D, ``num_clients`` is outside ``[1, rows]``, ``alpha <= 0``,
        ``min_size`` is negative or above ``rows / num_clients``, or no draw gave every client
        ``min_size`` rows (alpha too small or too many clients for the data).

    Example
    -------
    >>> parts = dirichlet_partition(y_train, 10, alpha=0.5, seed=0)  # doctest: +SKIP
    """
    y = _check_labels(labels)
    _check_num_clients(num_clients, len(y))
    _check_alpha(alpha)
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise InvalidInput(
            f"`min_size` must be an integer >= 0; got {min_size!r}.",
            field="min_size",
            value=min_size,
        )
    if min_size * num_clients > len(y):
        raise InvalidInput(
            f"`min_size` of {min_size} rows for {num_clients} clients needs "
            f"{min_size * num_clients} rows; the data has {len(y)}.",
            field="min_size",
            value=min_size,
            hint="Lower min_size or use fewer clients.",
        )
    classes, inverse = np.unique(y, return_inverse=True)
    by_class = [np.flatnonzero(inverse == c).astype(np.int64) for c in range(len(classes))]
    rng = np.random.default_rng(seed)
    smallest = 0
    for _ in range(_MAX_DRAWS):
        parts = _dirichlet_draw(rng, by_class, num_clients, float(alpha))
        smallest = min(len(p) for p in parts)
        if smallest >= min_size:
            return parts
    raise InvalidInput(
        f"no Dirichlet(alpha={alpha}) split of {len(y)} rows over {num_clients} clients gave "
        f"every client `min_size`={min_size} rows in {_MAX_DRAWS} draws (last smallest: "
        f"{smallest}).",
        field="min_size",
        value=min_size,
        hint="alpha is too small or there are too many clients for the data: raise alpha, "
        "use fewer clients, or lower min_size (0 allows empty clients).",
    )


def quantity_skew_partition(
    num_rows: int, num_clients: int, *, alpha: float, seed: int
) -> list[npt.NDArray[np.int64]]:
    """Split shuffled rows into clients whose sizes follow Dirichlet(alpha) proportions.

    Every client first gets one row; the other ``num_rows - num_clients`` rows are dealt in
    proportion to ``p ~ Dirichlet(alpha, ..., alpha)``, rounding down and then giving the rows
    left over to the largest remainders, so sizes always sum to ``num_rows``.
    Labels are not looked at: each client sees the global label mix, in skewed amounts.

    Parameters
    ----------
    num_rows : int
        Number of rows to split.
    num_clients : int
        Number of clients, in ``[1, num_rows]``.
    alpha : float
        Dirichlet concentration, > 0 (small: a few large clients; large: near-equal sizes).
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    list of ndarray of int64
        One sorted, non-empty index array per client; together they hold every row exactly once.

    Raises
    ------
    InvalidInput
        When ``num_rows < 1``, ``num_clients`` is outside ``[1, num_rows]`` or ``alpha <= 0``.
    """
    _check_num_rows(num_rows)
    _check_num_clients(num_clients, num_rows)
    _check_alpha(alpha)
    rng = np.random.default_rng(seed)
    order = rng.permutation(num_rows).astype(np.int64)
    shares = rng.dirichlet(np.full(num_clients, float(alpha))) * (num_rows - num_clients)
    sizes = np.floor(shares).astype(np.int64)
    # Largest remainder first; a stable sort breaks ties by client index.
    left_over = num_rows - num_clients - int(sizes.sum())
    sizes[np.argsort(sizes - shares, kind="stable")[:left_over]] += 1
    return _split(order, sizes + 1)


def partition_summary(
    parts: list[npt.NDArray[np.int64]], labels: npt.ArrayLike
) -> list[dict[str, int | float]]:
    """Describe each client's share for reports: rows, positives and the positive fraction.

    Parameters
    ----------
    parts : list of ndarray of int
        What a partitioner returned.
    labels : array-like of shape (rows,)
        The labels the rows index; a row is positive when its label equals 1.

    Returns
    -------
    list of dict
        Per client, in order: ``client`` (index), ``rows``, ``positives`` and
        ``fraction_positive`` (0.0 for an empty client).

    Raises
    ------
    InvalidInput
        When ``labels`` is not 1-D or an index is outside ``[0, rows)``.
    """
    y = _check_labels(labels)
    out: list[dict[str, int | float]] = []
    for client, part in enumerate(parts):
        idx = np.asarray(part)
        if idx.size and (
            not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= len(y)
        ):
            raise InvalidInput(
                f"`parts[{client}]` must hold integer row indices in [0, {len(y)}).",
                field=f"parts[{client}]",
                hint="Pass the labels the partition was made from.",
            )
        rows = int(idx.size)
        positives = int(np.count_nonzero(y[idx] == 1)) if rows else 0
        out.append(
            {
                "client": client,
                "rows": rows,
                "positives": positives,
                "fraction_positive": positives / rows if rows else 0.0,
            }
        )
    return out
