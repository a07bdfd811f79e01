"""Loader benchmark: our trainer.data loader against lerobot 0.4.4's LeRobotDataset (in its venv, default video
backend torchcodec) on the same LeRobot v3.0 shards, same DataLoader workers and batch size, both shuffled,
3 camera views and a 50-step action chunk per sample, frames at the dataset's own size (no resize on either
side). Only steady-state batches are timed (after a warm-up); the runs of the two loaders alternate.

    .venv/bin/python benchmarks/loader.py [--dataset DIR] [--codec av1|h264] [--workers 2] [--batch 16]

Without --dataset it builds one with the CLI: synth -> ingest -> export --size lingbot (224x224) -> norm-stats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from lerobot_loader import measure  # noqa: E402  (benchmarks/, this script's folder)

from trainer.data import ShardDataset  # noqa: E402
from trainer.sampler import MixtureSampler  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLI = str(REPO / ".venv" / "bin" / "vla-data")


def build_dataset(workdir: Path, episodes: int, seed: int, codec: str) -> Path:
    """An aloha dataset exported at LingBot's 224x224, made with the vla-data commands."""
    for args in (["synth", "--format", "aloha", "--episodes", str(episodes), "--seed", str(seed),
                  "--out", str(workdir / "raw" / "aloha")],
                 ["ingest", str(workdir / "raw"), str(workdir / "catalog")],
                 ["export", str(workdir / "catalog"), str(workdir / "lerobot"), "--robot", "aloha", "--codec", codec,
                  "--size", "lingbot"]):
        subprocess.run([CLI, *args], check=True, capture_output=True)
    return workdir / "lerobot" / "aloha"


def norm_stats(dataset: Path, workdir: Path) -> Path:
    out = workdir / f"{dataset.name}-norm_stats.json"
    subprocess.run([CLI, "norm-stats", str(dataset), "--out", str(out), "--subtract-state", "arm.position"],
                   check=True, capture_output=True)
    return out


def ours(dataset: Path, stats: Path, size: tuple[int, int], a: argparse.Namespace) -> dict:
    ds = ShardDataset(dataset, stats, size=size)
    loader = torch.utils.data.DataLoader(ds, batch_size=a.batch, sampler=MixtureSampler([len(ds)], seed=0),
                                         num_workers=a.workers, drop_last=True)
    return measure(loader, a.warmup, a.batches)


def theirs(python: str, dataset: Path, a: argparse.Namespace) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(a.workdir / "hf")}
    proc = subprocess.run([python, str(REPO / "benchmarks" / "lerobot_loader.py"), str(dataset), str(a.workers),
                           str(a.batch), str(a.warmup), str(a.batches)], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summary(runs: list[dict], workers: int) -> tuple[float, float, str]:
    """Median samples/s and CPU s per sample of some runs, and a line describing them."""
    rate = statistics.median(r["samples_per_s"] for r in runs)
    cpu = statistics.median(r["cpu_s_per_sample"] for r in runs)
    each = ", ".join(f"{r['samples_per_s']:.1f}" for r in runs)
    return rate, cpu, (f"{rate:7.1f} samples/s (runs {each}), {rate / max(workers, 1):6.1f} per worker core, "
                       f"{1000 * cpu:5.1f} ms CPU per sample")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", type=Path, help="a LeRobot v3.0 dataset folder (default: build one)")
    ap.add_argument("--codec", choices=["av1", "h264"], default="av1", help="codec of the dataset built")
    ap.add_argument("--episodes", type=int, default=6, help="recordings synthesized for the dataset built")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=5, help="batches not timed")
    ap.add_argument("--batches", type=int, default=60, help="batches timed")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each loader, alternating")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vla-bench-loader"))
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    dataset = a.dataset or build_dataset(a.workdir / a.codec, a.episodes, a.seed, a.codec)
    stats = norm_stats(dataset, a.workdir)
    info = json.loads((dataset / "meta" / "info.json").read_text())
    video = next(f for f in info["features"].values() if f["dtype"] == "video")
    height, width = video["shape"][:2]
    venv = subprocess.run([str(REPO / "scripts" / "venv.sh"), "lerobot"], capture_output=True, text=True, check=True)
    python = str(Path(venv.stdout.strip()) / "bin" / "python")

    runs = {"ours": [], "lerobot": []}
    for _ in range(a.repeats):
        runs["lerobot"].append(theirs(python, dataset, a))
        runs["ours"].append(ours(dataset, stats, (width, height), a))
    print(f"{dataset}: {video['info']['video.codec']} {width}x{height}, {info['total_frames']} frames at "
          f"{info['fps']} fps; "
          f"{a.workers} workers, batch {a.batch}, {os.cpu_count()} cores; {a.warmup} warm-up + {a.batches} timed "
          f"batches, shuffled, median of {a.repeats} alternating runs")
    theirs_rate, theirs_cpu, line = summary(runs["lerobot"], a.workers)
    print(f"lerobot 0.4.4 LeRobotDataset ({runs['lerobot'][0]['backend']}): {line}")
    ours_rate, ours_cpu, line = summary(runs["ours"], a.workers)
    print(f"vla-data trainer.data (PyAV)            : {line}")
    print(f"ratio vla-data / lerobot: {ours_rate / theirs_rate:.2f}x samples/s, "
          f"{theirs_cpu / ours_cpu:.2f}x less CPU per sample")


if __name__ == "__main__":
    main()
