"""Steady-state DataLoader throughput, shared by both sides of benchmarks/loader.py.

Run as a script in the official lerobot venv (scripts/venv.sh lerobot), it measures lerobot 0.4.4's
LeRobotDataset (default video backend, torchcodec) on a dataset folder, with the 50-step action chunk and the
3 camera keys in delta_timestamps, shuffled, and prints one JSON line:

    python benchmarks/lerobot_loader.py ROOT WORKERS BATCH WARMUP BATCHES

benchmarks/loader.py imports measure() from here for our loader, so both sides are timed by the same code.
"""

import json
import os
import sys
import time

import torch


def cpu_seconds() -> float:
    """CPU seconds so far of this process and its live children (the DataLoader workers)."""
    me = os.getpid()
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(pid) == me or int(fields[1]) == me:  # fields[1]: parent pid
            total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def measure(loader: torch.utils.data.DataLoader, warmup: int, batches: int) -> dict:
    """Samples/s over `batches` batches after `warmup` batches (worker start-up, files opening, first decodes),
    and the CPU seconds the whole process tree spent per sample in that window."""
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    t0, c0, samples = time.perf_counter(), cpu_seconds(), 0
    for _ in range(batches):
        samples += len(next(it)["task"])
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    del it
    return {"samples": samples, "seconds": seconds, "samples_per_s": samples / seconds,
            "cpu_s_per_sample": cpu / samples}


def main() -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root, workers, batch, warmup, batches = sys.argv[1], *map(int, sys.argv[2:6])
    info = json.load(open(f"{root}/meta/info.json"))
    fps = info["fps"]
    cams = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    delta = {"action": [t / fps for t in range(50)]} | {c: [0.0] for c in cams}
    ds = LeRobotDataset("local/bench", root=root, delta_timestamps=delta)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    print(json.dumps(measure(loader, warmup, batches) | {"backend": ds.video_backend}))


if __name__ == "__main__":
    main()
