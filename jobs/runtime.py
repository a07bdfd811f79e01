"""Plumbing shared by the jobs: joining or starting Ray, running tasks with a bounded window and a progress bar,
finding a free local port, and running a local server process (vLLM, S3, Ray nodes in tests) stopped by its PID."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import ray
from tqdm import tqdm


def init_ray(address: str | None = None) -> None:
    """Joins the cluster at `address` (or RAY_ADDRESS); otherwise starts Ray in this process."""
    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
    else:  # "local": never attach to whatever cluster a `ray start` on this machine left behind
        ray.init(address="local", include_dashboard=False, log_to_driver=True, logging_level=logging.WARNING)


class TaskPool:
    """Runs a Ray task over many calls with at most `window` in flight, so that a million-recording job keeps a
    bounded number of task specs and results on the driver. `poll()` tops up and collects what finished without
    waiting (for drivers with work of their own to do meanwhile); `results()` yields the rest as it finishes.
    Each wait collects everything finished within a second: one wait per task would be quadratic."""

    def __init__(self, task, calls: Iterable[tuple[object, tuple]], desc: str, unit: str, total: int,
                 progress: bool = True, window: int | None = None):
        self.task, self.calls = task, iter(calls)
        self.window = window or max(16, 4 * int(ray.cluster_resources().get("CPU", 1)))
        self.in_flight: dict = {}  # ref -> key
        self.done: list[tuple[object, object]] = []
        self.bar = tqdm(total=total, desc=desc, unit=unit, disable=not progress)

    def _top_up(self) -> None:
        while len(self.in_flight) < self.window and (call := next(self.calls, None)) is not None:
            key, args = call
            self.in_flight[self.task.remote(*args)] = key

    def _collect(self, timeout: float) -> None:
        ready, _ = ray.wait(list(self.in_flight), num_returns=len(self.in_flight), timeout=timeout)
        for ref in ready:
            self.done.append((self.in_flight.pop(ref), ray.get(ref)))
            self.bar.update(1)

    def poll(self) -> None:
        self._top_up()
        if self.in_flight:
            self._collect(0)

    def results(self) -> Iterator[tuple[object, object]]:
        """(key, result) of every call, in completion order; the poll()ed ones first."""
        while True:
            self._top_up()
            yield from self.done
            self.done = []
            if not self.in_flight:
                break
            self._collect(1.0)
        self.bar.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServiceProcess:
    """A server running in its own process group (so that stopping it reaches every child it spawned)."""

    process: subprocess.Popen
    log_path: Path

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM to the process group, SIGKILL after `timeout`."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def http_answers(url: str) -> bool:
    """Whether a server answers at url at all: any HTTP status counts (e.g. 401 while token auth is on)."""
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def start_service(cmd: list[str], log_path: Path, ready: Callable[[], bool], what: str,
                  env: dict[str, str] | None = None, timeout: float = 120) -> ServiceProcess:
    """Starts `cmd` in a new process group with its output in log_path and waits until `ready()`. If it exits
    or times out first, stops it and raises with the end of its log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    service, deadline = ServiceProcess(proc, log_path), time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            service.stop()
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{what} did not become ready (exit code {proc.returncode}); log {log_path}:\n{tail}")
        time.sleep(0.5)
    return service
