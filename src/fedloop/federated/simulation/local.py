"""``LocalBackend``: many virtual clients hosted by a few worker processes on this machine."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import IO, Any

from fedloop.core import InvalidInput, StoreUnavailable, decode_parameters, encode_parameters
from fedloop.federated.messages import FitIns, FitOutcome, FitRes, own_settings
from fedloop.federated.wire import read_frame, write_frame

__all__ = ["LocalBackend"]


class _Worker:
    def __init__(self, index: int, spec: dict[str, Any]) -> None:
        self.index = index
        self.spec = spec
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = False

    def launch(self) -> None:
        """Start the process and send its spec without waiting for it to be ready."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fedloop.federated.simulation.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        )
        self.ready = False
        write_frame(self._pipes()[0], self.spec)

    def await_ready(self) -> None:
        """Wait for the worker's "ready" frame (it has imported the client factory)."""
        if self.ready:
            return
        try:
            header, _ = read_frame(self._pipes()[1])
        except EOFError as err:
            raise StoreUnavailable(
                f"simulation worker {self.index} exited while starting (see its stderr): {err}",
                field="factory",
                hint="Check that the client factory imports in a fresh Python process.",
            ) from err
        if header.get("type") != "ready":
            raise StoreUnavailable(f"simulation worker {self.index} did not start: {header}.")
        self.ready = True

    def start(self) -> None:
        """Start the process and wait until it is ready."""
        self.launch()
        self.await_ready()

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        if self.proc is None or self.proc.stdin is None or self.proc.stdout is None:
            raise EOFError(f"simulation worker {self.index} is not running")
        return self.proc.stdin, self.proc.stdout

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        self.proc = None

    def run_round(
        self,
        round_num: int,
        clients: list[str],
        payload: bytes,
        config: Mapping[str, Any],
        own: Mapping[str, Mapping[str, Any]],
    ) -> list[FitOutcome]:
        """Run the round's clients on this worker, one frame per distinct settings.

        The clients with the round's shared settings go in one frame, each client with
        settings of its own (a secure-aggregation stage) in a frame of its own, so that no
        frame header carries every client's message.
        """
        shared = [c for c in clients if c not in own]
        batches = ([(shared, config)] if shared else []) + [
            ([c], own[c]) for c in clients if c in own
        ]
        with self.lock:
            outcomes: list[FitOutcome] = []
            for ids, settings in batches:
                outcomes.extend(self._run_frame(round_num, ids, payload, settings))
            return outcomes

    def _run_frame(
        self, round_num: int, clients: list[str], payload: bytes, config: Mapping[str, Any]
    ) -> list[FitOutcome]:
        """Send one round frame and read one result per client (call under the lock)."""
        request: dict[str, Any] = {
            "type": "round",
            "round": round_num,
            "clients": clients,
            "config": dict(config),
        }
        first: tuple[dict[str, Any], bytes] | None = None
        for attempt in (1, 2):
            try:
                if not self.alive():
                    self.start()
                self.await_ready()
                write_frame(self._pipes()[0], request, payload)
                first = read_frame(self._pipes()[1])
                break
            except (BrokenPipeError, EOFError):  # died since the last round: replace once
                self.kill()
                if attempt == 2:
                    raise
        stdout = self._pipes()[1]
        outcomes = []
        for _ in clients:
            if first is not None:
                (header, body), first = first, None
            else:
                header, body = read_frame(stdout)
            client_id = str(header.get("client_id"))
            seconds = float(header.get("seconds", 0.0))
            if "error" in header:
                outcomes.append(
                    FitOutcome(
                        client_id,
                        None,
                        str(header["error"]),
                        seconds=seconds,
                        bytes_down=len(payload),
                    )
                )
                continue
            try:
                params = decode_parameters(body, field=f"update from {client_id}")
            except InvalidInput as err:
                outcomes.append(
                    FitOutcome(
                        client_id,
                        None,
                        err.message,
                        seconds=seconds,
                        bytes_up=len(body),
                        bytes_down=len(payload),
                    )
                )
                continue
            res = FitRes(
                params,
                int(header.get("num_examples", 0)),
                {k: float(v) for k, v in dict(header.get("metrics", {})).items()},
                round_num=int(header.get("round", -1)),
            )
            outcomes.append(
                FitOutcome(
                    client_id, res, seconds=seconds, bytes_up=len(body), bytes_down=len(payload)
                )
            )
        return outcomes


class LocalBackend:
    """A process pool of simulation workers behind the :class:`Transport` interface.

    Each worker process imports the client factory once and hosts many virtual clients (a
    client is created on its first round and kept). Client ``i`` (in sorted id order) always
    lives on worker ``i % num_workers``. Tensors travel as safetensors frames over pipes;
    nothing is pickled. A worker that dies is restarted at the next round and its clients of
    the current round are reported failed; one that misses the deadline is killed and its
    clients are reported timed out.

    Parameters
    ----------
    factory : str
        Dotted path ``package.module:function``; ``function(client_id, **kwargs) -> Client``.
    client_ids : sequence of str
        The virtual clients.
    num_workers : int, default: number of CPUs
        Worker processes.
    kwargs : Mapping or None
        JSON-serializable keyword arguments for the factory.
    """

    def __init__(
        self,
        factory: str,
        client_ids: Sequence[str],
        *,
        num_workers: int | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if ":" not in factory:
            raise InvalidInput(
                f"`factory` must be 'package.module:function'; got {factory!r}.", field="factory"
            )
        workers = num_workers or os.cpu_count() or 1
        if workers < 1:
            raise InvalidInput(f"`num_workers` must be >= 1; got {workers}.", field="num_workers")
        self.client_ids = sorted(client_ids)
        if not self.client_ids:
            raise InvalidInput("at least one client is needed.", field="client_ids")
        self.offline: set[str] = set()
        spec = {"type": "spec", "factory": factory, "kwargs": dict(kwargs or {})}
        self._workers = [_Worker(i, spec) for i in range(min(workers, len(self.client_ids)))]
        self._home = {c: i % len(self._workers) for i, c in enumerate(self.client_ids)}
        self._pool = ThreadPoolExecutor(
            max_workers=len(self._workers), thread_name_prefix="fedloop-sim"
        )
        # Workers import torch and the factory (seconds) while the caller opens its store and
        # builds its model; the first fit waits for them.
        for worker in self._workers:
            worker.launch()
        self._started = False
        self._start_lock = threading.Lock()

    def _await_workers(self) -> None:
        with self._start_lock:  # concurrent first fits (FedBuff's loop) wait for the same start
            if self._started:
                return
            for done in wait([self._pool.submit(w.await_ready) for w in self._workers]).done:
                done.result()
            self._started = True

    @property
    def num_workers(self) -> int:
        """Return the number of worker processes."""
        return len(self._workers)

    def worker_pids(self) -> list[int | None]:
        """Return the worker processes' ids (None for a worker not running)."""
        return [w.proc.pid if w.proc is not None else None for w in self._workers]

    def list_clients(self) -> Sequence[str]:
        """Return the ids of the clients not marked offline."""
        return [c for c in self.client_ids if c not in self.offline]

    def fit(
        self,
        round_num: int,
        instructions: Mapping[str, FitIns],
        *,
        timeout_s: float,
        enough: int | None = None,
    ) -> list[FitOutcome]:
        """Send the round's model once per worker and collect one outcome per client."""
        if not instructions:
            return []
        self._await_workers()
        first = next(iter(instructions.values()))
        payload = encode_parameters(first.parameters)
        by_worker: dict[int, list[str]] = {}
        for client_id in sorted(instructions):
            by_worker.setdefault(self._home[client_id], []).append(client_id)
        futures = {
            self._pool.submit(
                self._workers[w].run_round,
                round_num,
                ids,
                payload,
                first.config,
                own_settings(instructions, ids, first.config),
            ): (w, ids)
            for w, ids in by_worker.items()
        }
        done, pending = wait(futures, timeout=timeout_s)
        outcomes: list[FitOutcome] = []
        for future in done:
            w, ids = futures[future]
            try:
                outcomes.extend(future.result())
            except (EOFError, OSError, InvalidInput, StoreUnavailable) as err:
                self._workers[w].kill()
                outcomes.extend(
                    FitOutcome(c, None, f"worker {w} failed: {err}", bytes_down=len(payload))
                    for c in ids
                )
        for future in pending:
            w, ids = futures[future]
            self._workers[w].kill()  # unblocks its reader thread; restarted next round
            outcomes.extend(
                FitOutcome(c, None, "no answer before the round deadline", timed_out=True)
                for c in ids
            )
        time.sleep(0)  # let killed workers' threads finish
        return outcomes

    def close(self) -> None:
        """Stop every worker process (all asked at once, then waited for)."""
        for worker in self._workers:
            if worker.proc is not None and worker.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    worker.proc.stdin.close()
        deadline = time.monotonic() + 5
        for worker in self._workers:
            if worker.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            worker.kill()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
