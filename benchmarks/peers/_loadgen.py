"""W-SERVE's one load generator: closed-loop HTTP POSTs at a fixed concurrency (run in .venv).

``concurrency`` asyncio tasks share one aiohttp session whose connector holds at most
``concurrency`` keep-alive connections; each task sends its next request as soon as the
previous answer is read (closed loop). After ``--warmup`` seconds a timed window of
``--duration`` seconds starts: every request that starts and ends inside it is recorded
(latency, status code or exception name). Requests are cycled from a pool of pre-encoded bodies
(distinct rows), so the generator does no JSON work while it runs.

At the window's edges it samples the CPU seconds (user + system) of the server's whole process
tree (``--server-pid`` and its children, recursively, via psutil) and of itself, so the
result carries server CPU per request as well as the generator's own cost (both share the
machine's cores), and the cores that everything else on the machine kept busy meanwhile. Writes a JSON result to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import psutil


def _tree_cpu(pid: int | None) -> float:
    """Return the user + system CPU seconds of ``pid`` and all its descendants."""
    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def _busy_cpu() -> float:
    """Return the CPU seconds the whole machine has spent busy (all processes, all cores)."""
    t = psutil.cpu_times()
    # guest time is already inside user/nice on Linux; steal is CPU the host took away.
    fields = ("user", "nice", "system", "irq", "softirq", "steal")
    return sum(float(getattr(t, name, 0.0)) for name in fields)


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Return the ``q`` quantile (0..1) of sorted values, nearest-rank; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), round(q * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


async def run_load(
    url: str,
    bodies: list[bytes],
    headers: dict[str, str],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    server_pid: int | None,
    timeout_s: float,
) -> dict[str, Any]:
    """Drive the server; return the raw measurements of the timed window."""
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=120, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    warm_statuses: Counter[str] = Counter()
    t_start = time.perf_counter()
    window_start = t_start + warmup_s
    window_end = window_start + duration_s
    marks: dict[str, float] = {}

    async def edges() -> None:
        # Sample CPU as close to the window's edges as the event loop allows.
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        marks.update(
            t0=time.perf_counter(), s0=_tree_cpu(server_pid), g0=_own_cpu(), b0=_busy_cpu()
        )
        await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
        marks.update(
            t1=time.perf_counter(), s1=_tree_cpu(server_pid), g1=_own_cpu(), b1=_busy_cpu()
        )

    async def worker(session: aiohttp.ClientSession, offset: int) -> None:
        i = offset
        n = len(bodies)
        while True:
            t0 = time.perf_counter()
            if t0 >= window_end:
                return
            body = bodies[i % n]
            i += concurrency
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = str(resp.status)
            except Exception as err:  # every failure is counted, by kind
                status = type(err).__name__
            t1 = time.perf_counter()
            if t0 >= window_start and t1 <= window_end:
                statuses[status] += 1
                if status == "200":
                    latencies.append(t1 - t0)
            elif t0 < window_start:
                warm_statuses[status] += 1

    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
    ) as session:
        edge_task = asyncio.create_task(edges())
        await asyncio.gather(*(worker(session, k) for k in range(concurrency)))
        await edge_task

    window = marks["t1"] - marks["t0"]
    ok = sorted(latencies)  # latencies of the answers with status 200
    ok_count = len(ok)
    errors = sum(v for k, v in statuses.items() if k != "200")
    return {
        "window_s": window,
        "requests": sum(statuses.values()),
        "ok": ok_count,
        "errors": errors,
        "statuses": dict(statuses),
        "warmup_statuses": dict(warm_statuses),
        "req_per_s": ok_count / window if window > 0 else 0.0,
        "p50_ms": _ms(percentile(ok, 0.50)),
        "p90_ms": _ms(percentile(ok, 0.90)),
        "p99_ms": _ms(percentile(ok, 0.99)),
        "max_ms": _ms(ok[-1] if ok else None),
        "mean_ms": _ms(sum(ok) / len(ok) if ok else None),
        "server_cpu_s": marks["s1"] - marks["s0"],
        "loadgen_cpu_s": marks["g1"] - marks["g0"],
        # Cores kept busy by everything else on the machine during the window: a run whose
        # figure is well above 0 was disturbed.
        "other_cpu_cores": max(
            0.0,
            (marks["b1"] - marks["b0"] - (marks["s1"] - marks["s0"]) - (marks["g1"] - marks["g0"]))
            / window,
        ),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--bodies", type=Path, required=True, help="JSON list of request bodies")
    p.add_argument("--header", action="append", default=[], help="Name: value")
    p.add_argument("--rows", type=int, required=True, help="rows per request (for rows/s)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--server-pid", type=int, default=None)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    bodies = [b.encode() for b in json.loads(args.bodies.read_text())]
    headers = dict(h.split(": ", 1) for h in args.header)
    result = asyncio.run(
        run_load(
            args.url,
            bodies,
            headers,
            args.concurrency,
            args.warmup,
            args.duration,
            args.server_pid,
            args.timeout,
        )
    )
    requests = max(result["ok"], 1)
    result.update(
        rows=args.rows,
        concurrency=args.concurrency,
        rows_per_s=result["req_per_s"] * args.rows,
        server_cpu_ms_per_req=result["server_cpu_s"] * 1000.0 / requests,
        loadgen_cpu_ms_per_req=result["loadgen_cpu_s"] * 1000.0 / requests,
        cpu_count=os.cpu_count(),
    )
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
