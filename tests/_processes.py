"""Helpers for tests that run fedloop commands as real processes and read what they print."""

from __future__ import annotations

import re
import subprocess
import time

__all__ = ["stderr_line", "url_in"]

_URL = re.compile(r"http://[0-9.]+:[0-9]+")


def stderr_line(proc: subprocess.Popen[str], pattern: str, timeout_s: float = 60) -> str:
    """Return the next line ``proc`` writes to stderr that matches ``pattern``.

    Raises AssertionError when the process exits or ``timeout_s`` passes first.
    """
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if re.search(pattern, line):
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no line matching {pattern!r}")


def url_in(line: str) -> str:
    """Return the loopback URL (``http://HOST:PORT``) in a printed line."""
    found = _URL.search(line)
    assert found is not None, line
    return found.group(0)
