"""Plumbing shared by the jobs: joining or starting Ray, collecting task results with a progress bar, and
finding a free local port for the services they start."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator

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


def as_completed(refs: list, desc: str, unit: str, progress: bool = True) -> Iterator[tuple[object, object]]:
    """Yields (ref, result) as Ray tasks finish, advancing a progress bar."""
    remaining = list(refs)
    with tqdm(total=len(remaining), desc=desc, unit=unit, disable=not progress) as bar:
        while remaining:
            ready, remaining = ray.wait(remaining, num_returns=1)
            yield ready[0], ray.get(ready[0])
            bar.update(1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
