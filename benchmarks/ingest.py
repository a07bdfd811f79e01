"""Ingest benchmark: segmentation accuracy on fresh sample recordings, and ingest throughput side by side with
a baseline that only decodes the same camera streams (the floor any ingest must pay).

    .venv/bin/python benchmarks/ingest.py --episodes 12 --seed 100 [--workdir /tmp/vla-bench]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import h5py  # noqa: E402

from jobs.ingest import run_ingest  # noqa: E402
from pipeline.evaluate import catalog_accuracy  # noqa: E402
from pipeline.video import decode_frames  # noqa: E402
from synth.formats import truth_of  # noqa: E402
from synth.generate import generate  # noqa: E402


def decode_only(raw: Path) -> int:
    """Baseline: decode every camera frame once (JPEG rows for ALOHA, mp4 for AgiBot), nothing else."""
    frames = 0
    for path in raw.rglob("episode_*.hdf5"):
        with h5py.File(path) as f:
            for cam in f["observations/images"].values():
                for i in range(cam.shape[0]):
                    cv2.imdecode(cam[i], cv2.IMREAD_COLOR)
                    frames += 1
    for path in raw.rglob("videos/*.mp4"):
        frames += sum(1 for _ in decode_frames(path))
    return frames


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=12)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vla-bench-ingest"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    shutil.rmtree(a.workdir, ignore_errors=True)
    raw = a.workdir / "raw"
    for fmt in ("aloha", "agibot"):
        generate(fmt, a.episodes, a.seed, raw / fmt)
    t0 = time.perf_counter()
    frames = decode_only(raw)
    t_decode = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = run_ingest(raw, a.workdir / "out", progress=False)
    t_ingest = time.perf_counter() - t0
    print(f"camera frames: {frames} ({2 * a.episodes} episodes, seed {a.seed}, {os.cpu_count()} cores)")
    print(f"baseline decode only, 1 process : {frames / t_decode:8.1f} frames/s  ({t_decode:.1f} s)")
    print(f"vla-data ingest on Ray (all cores): {frames / t_ingest:8.1f} frames/s  ({t_ingest:.1f} s, "
          f"incl. Ray start, ALOHA encode, motion, catalog)")
    print(f"ratio ingest / decode-only: {t_decode / t_ingest:.2f}x")
    signals = run_ingest(raw / "agibot", a.workdir / "out-signals", progress=False, ignore_labels=True)
    measured = catalog_accuracy(result.out, truth_of)
    measured["agibot (clips from signals, labels ignored)"] = catalog_accuracy(signals.out, truth_of)["agibot"]
    measured["agibot"] = measured.pop("agibot") | {"clips": "from its human labels"}
    for fmt, m in sorted(measured.items()):
        print(f"{fmt}: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items()))


if __name__ == "__main__":
    main()
