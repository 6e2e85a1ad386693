"""The elastic launcher: what it changes in this process is put back; failures become typed errors."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest
from _ddp import KWARGS, config_for, small_data

from fedloop.core import WorkersFailed
from fedloop.distributed import ElasticLauncher, train_data_parallel
from fedloop.distributed.launch import _agent_process_state
from fedloop.store import open_workspace


def test_agent_process_state_is_put_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Env vars, signal handlers and the elastic logger are as before once the agent is done."""
    # Arrange
    monkeypatch.delenv("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", raising=False)
    monkeypatch.setenv("TORCHELASTIC_SIGNALS_TO_HANDLE", "SIGTERM")
    before = signal.getsignal(signal.SIGTERM)
    logger = logging.getLogger("torch.distributed.elastic")

    # Act
    with _agent_process_state(tmp_path / "agent.log"):
        inside = os.environ.get("TORCH_DISABLE_SHARE_RDZV_TCP_STORE")
        os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = "SIGINT"
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        logger.warning("agent says hello")

    # Assert
    assert inside == "1"
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in os.environ
    assert os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before
    assert logger.propagate
    assert "agent says hello" in (tmp_path / "agent.log").read_text(encoding="utf-8")


def test_a_worker_that_cannot_start_fails_the_run_with_its_root_cause(tmp_path: Path) -> None:
    """A real one-worker launch whose worker cannot import its model: WorkersFailed says why."""
    # Arrange: the factory imports here (tests/ is on sys.path) but not in the worker process
    config = config_for(tmp_path, workers=1, max_restarts=0)
    x, y = small_data(200)
    runs: list[str] = []

    # Act / Assert
    with open_workspace(config) as ws:
        with pytest.raises(WorkersFailed, match=r"rank 0: .*cannot be imported") as caught:
            train_data_parallel(
                ws,
                config.distributed,
                adapter="_ddp:crashing_adapter",
                adapter_kwargs=KWARGS,
                x=x,
                y=y,
                epochs=1,
                on_run=runs.append,
            )
        assert caught.value.field == "distributed.max_restarts"
        assert caught.value.hint is not None
        assert f"--resume {runs[0]}" in caught.value.hint
        assert ws.metadata.get_run(runs[0]).status == "failed"  # type: ignore[arg-type]
    logs = tmp_path / ".fedloop" / "distributed" / runs[0] / "logs"
    assert (logs / "agent.log").is_file()
    assert isinstance(ElasticLauncher(config.distributed).config.workers, int)
