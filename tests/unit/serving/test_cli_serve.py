"""``fedloop serve``: flag parsing, registration in the CLI, a light --help, one worker for real."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from _serving import MODEL, oip_body, reference
from typer.testing import CliRunner

from fedloop.cli import app
from fedloop.cli.serve import parse_canary
from fedloop.core import ConfigError
from fedloop.store import Workspace


def test_parse_canary() -> None:
    """NAME@ALIAS=FRACTION gives the served name and the canary settings."""
    # Act
    name, settings = parse_canary("fraud@challenger=0.25")

    # Assert
    assert name == "fraud"
    assert settings == {"ref": "fraud@challenger", "fraction": 0.25}


@pytest.mark.parametrize("text", ["fraud@challenger", "fraud@c=2", "=0.1", "fraud@c=x"])
def test_parse_canary_refuses_bad_text(text: str) -> None:
    """Anything but NAME@ALIAS=FRACTION in [0, 1] is a ConfigError naming --canary."""
    # Act / Assert
    with pytest.raises(ConfigError, match="--canary"):
        parse_canary(text)


def test_serve_is_listed_in_help() -> None:
    """`fedloop --help` lists the serve command."""
    # Act
    result = CliRunner().invoke(app, ["--help"])

    # Assert
    assert result.exit_code == 0
    assert "serve" in result.output


def test_help_imports_no_web_stack() -> None:
    """`fedloop serve --help` loads neither uvicorn, starlette nor prometheus_client."""
    # Arrange
    code = (
        "import sys\n"
        "from fedloop.cli.app import app\n"
        "try:\n    app(['serve', '--help'], prog_name='fedloop')\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('uvicorn', 'starlette', 'prometheus_client')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )

    # Act
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    # Assert
    assert "HEAVY []" in out.stdout


def test_unknown_model_fails_with_a_hint(workspace: Workspace, tmp_path: Path) -> None:
    """Serving a model that is not registered exits with the not-found code, no traceback."""
    # Arrange
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLOOP_")}
    env["FEDLOOP_PROJECT__DIR"] = str(tmp_path / ".fedloop")
    fedloop = Path(sys.executable).with_name("fedloop")

    # Act
    out = subprocess.run(
        [str(fedloop), "serve", "--model", "nope@champion", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )

    # Assert
    assert out.returncode == 3
    assert "nope" in out.stderr
    assert "Traceback" not in out.stderr


def test_one_worker_with_canary_flags(workspace: Workspace, tmp_path: Path) -> None:
    """`fedloop serve --canary ... --no-batching` runs one worker that routes both versions."""
    # Arrange
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLOOP_")}
    env["FEDLOOP_PROJECT__DIR"] = str(tmp_path / ".fedloop")
    fedloop = Path(sys.executable).with_name("fedloop")
    proc = subprocess.Popen(
        [
            str(fedloop), "serve", "--model", f"{MODEL}@champion", "--port", "0",
            "--canary", f"{MODEL}@challenger=0.5", "--no-batching", "--alias-poll", "0",
        ],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    rows = np.ones((1, 4), dtype=np.float32)
    try:
        assert proc.stderr is not None
        match = re.search(r"http://[0-9.]+:[0-9]+", proc.stderr.readline())
        assert match
        url = match.group(0)
        deadline = time.monotonic() + 60

        # Act
        versions = set()
        while len(versions) < 2 and time.monotonic() < deadline:
            try:
                answer = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=oip_body(rows))
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            versions.add(answer.json()["model_version"])
            if answer.json()["model_version"] == "1":
                np.testing.assert_allclose(
                    answer.json()["outputs"][0]["data"], reference(1, rows).ravel(), rtol=1e-5
                )
    finally:
        proc.terminate()
        proc.wait(15)
        if proc.stderr is not None:
            proc.stderr.close()

    # Assert
    assert versions == {"1", "2"}
