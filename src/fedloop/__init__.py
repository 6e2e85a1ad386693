"""fedloop: closed-loop MLOps for models trained across many nodes.

``import fedloop`` stays light: the tracking entry points are loaded on first use.

Example
-------
>>> import fedloop
>>> with fedloop.start_run(name="demo") as run:  # doctest: +SKIP
...     run.log_params({"lr": 0.05})
...     run.log_metrics({"loss": 0.3}, step=0)
"""

from __future__ import annotations

import typing as _typing

__version__ = "0.1.0"

__all__ = ["__version__", "start_run"]

if _typing.TYPE_CHECKING:
    from fedloop.store.tracking import start_run


def __getattr__(name: str) -> _typing.Any:
    if name == "start_run":
        from fedloop.store.tracking import start_run

        return start_run
    raise AttributeError(f"module 'fedloop' has no attribute {name!r}")
