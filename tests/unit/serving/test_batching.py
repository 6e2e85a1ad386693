"""AdaptiveBatcher on its own: coalescing, slicing results back, isolation of failures, closing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from _serving import MODEL, reference

from fedloop.registry import ModelRegistry
from fedloop.serving import AdaptiveBatcher, ModelRuntime, load_runtime
from fedloop.serving.batching import INLINE_MAX_ROWS


@pytest.fixture
def runtime(registry: ModelRegistry) -> ModelRuntime:
    """Return version 1 loaded."""
    return load_runtime(registry, registry.get(f"{MODEL}:1"))


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """Return a thread pool for large batches."""
    with ThreadPoolExecutor(2) as executor:
        yield executor


def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)


def _run(batcher: AdaptiveBatcher, requests: list[np.ndarray], *, pending: int = 0) -> list[Any]:
    async def main() -> list[Any]:
        batcher.pending = pending  # requests announced as on their way
        tasks = [asyncio.ensure_future(batcher.infer({"features": x}, len(x))) for x in requests]
        await asyncio.sleep(0)
        batcher.pending = 0
        results = await asyncio.gather(*tasks)
        await batcher.close()
        return results

    return asyncio.run(main())


@pytest.mark.parametrize(
    "sizes", [pytest.param([1] * 20, id="small"), pytest.param([40, 1, 30], id="large")]
)
def test_results_are_sliced_back_in_order(
    runtime: ModelRuntime, pool: ThreadPoolExecutor, sizes: list[int]
) -> None:
    """Each request gets exactly its own rows' predictions, whatever the batch it ran in."""
    # Arrange
    calls: list[tuple[int, int]] = []
    batcher = AdaptiveBatcher(
        runtime, executor=pool, max_batch_size=64, on_batch=lambda r, n: calls.append((r, n))
    )
    batcher.inline_max_rows = INLINE_MAX_ROWS  # batches over 16 rows go through the thread pool
    requests = [_rows(n, i) for i, n in enumerate(sizes)]

    # Act
    results = _run(batcher, requests)

    # Assert
    for x, out in zip(requests, results, strict=True):
        np.testing.assert_allclose(out[0], reference(1, x), rtol=1e-5)
    assert sum(r for r, _ in calls) == len(sizes)
    assert len(calls) < len(sizes)  # coalesced
    assert max(n for _, n in calls) <= 64 or len(calls) == len(sizes)


def test_max_batch_size_bounds_a_call(runtime: ModelRuntime, pool: ThreadPoolExecutor) -> None:
    """No call takes more rows than max_batch_size (unless one request alone is bigger)."""
    # Arrange
    calls: list[int] = []
    batcher = AdaptiveBatcher(
        runtime, executor=pool, max_batch_size=8, on_batch=lambda r, n: calls.append(n)
    )

    # Act
    _run(batcher, [_rows(3, i) for i in range(10)])

    # Assert
    assert max(calls) <= 8
    assert sum(calls) == 30


def test_disabled_runs_each_request_alone(runtime: ModelRuntime, pool: ThreadPoolExecutor) -> None:
    """enabled=False: one call per request."""
    # Arrange
    calls: list[int] = []
    batcher = AdaptiveBatcher(
        runtime, executor=pool, enabled=False, on_batch=lambda r, n: calls.append(r)
    )

    # Act
    _run(batcher, [_rows(1, i) for i in range(5)] + [_rows(100, 9)])

    # Assert
    assert calls == [1] * 6
    assert batcher.inline_max_rows >= INLINE_MAX_ROWS
    assert runtime.seconds_per_row < 0.01


def test_one_failing_request_does_not_fail_its_batch(
    runtime: ModelRuntime, pool: ThreadPoolExecutor
) -> None:
    """A request onnxruntime rejects fails alone; its batch-mates get their answers."""
    # Arrange
    batcher = AdaptiveBatcher(runtime, executor=pool)
    good = _rows(2, 0)
    bad = np.zeros((1, 5), dtype=np.float32)  # bypasses validation on purpose

    async def main() -> list[Any]:
        tasks = [
            asyncio.ensure_future(batcher.infer({"features": x}, len(x))) for x in (good, bad, good)
        ]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.close()
        return results

    # Act
    results = asyncio.run(main())

    # Assert
    np.testing.assert_allclose(results[0][0], reference(1, good), rtol=1e-5)
    assert isinstance(results[1], Exception)
    np.testing.assert_allclose(results[2][0], reference(1, good), rtol=1e-5)


def test_after_close_requests_still_run(runtime: ModelRuntime, pool: ThreadPoolExecutor) -> None:
    """A straggler that reaches a closed batcher (after a swap) is served directly."""
    # Arrange
    batcher = AdaptiveBatcher(runtime, executor=pool)
    x = _rows(1, 0)

    async def main() -> Any:
        await batcher.infer({"features": x}, 1)
        await batcher.close()
        return await batcher.infer({"features": x}, 1)

    # Act
    out = asyncio.run(main())

    # Assert
    np.testing.assert_allclose(out[0], reference(1, x), rtol=1e-5)
