"""Fixtures shared by every test: a clean environment, seeded RNGs and PostgreSQL."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator

import numpy as np
import pytest

try:  # tests/ as a package (tests/__init__.py) or, by default, as a directory on sys.path
    from tests import _postgres
except ImportError:
    import _postgres  # type: ignore[no-redef]

_ENV_URL_KEY = pytest.StashKey[str | None]()


def pytest_configure(config: pytest.Config) -> None:
    """Capture ``FEDLOOP_TEST_POSTGRES_URL`` before `_clean_environ` removes it."""
    config.stash[_ENV_URL_KEY] = os.environ.get(_postgres.ENV_URL) or None


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every ``FEDLOOP_*`` variable and seed the random number generators."""
    for key in [k for k in os.environ if k.startswith("FEDLOOP_")]:
        monkeypatch.delenv(key)
    random.seed(0)
    np.random.seed(0)
    torch = sys.modules.get("torch")  # seed torch only if a test already paid for importing it
    if torch is not None:
        torch.manual_seed(0)


@pytest.fixture(scope="session")
def postgres_url(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Yield the URL of a PostgreSQL database for this session.

    ``FEDLOOP_TEST_POSTGRES_URL`` wins when set. Otherwise a private cluster is started with
    ``scripts/postgres-server`` and stopped at the end of the session; without PostgreSQL
    binaries the test is skipped.
    """
    from_env = pytestconfig.stash[_ENV_URL_KEY]
    if from_env:
        yield from_env
        return
    if _postgres.find_bindir() is None:
        pytest.skip(_postgres.MISSING_BINARIES)
    with _postgres.private_cluster(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture
def postgres_db_url(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[str]:
    """Yield the URL of a new, empty database, dropped after the test.

    The test must carry ``@pytest.mark.postgres`` so that ``-m "not postgres"`` deselects it.
    """
    if request.node.get_closest_marker("postgres") is None:
        pytest.fail(
            f"{request.node.nodeid} uses PostgreSQL but is not marked; "
            "add @pytest.mark.postgres (or marks=pytest.mark.postgres on its pytest.param)"
        )
    pytest.importorskip("psycopg", reason='psycopg is missing: pip install -e ".[dev]"')
    with _postgres.fresh_database(postgres_url) as url:
        yield url
