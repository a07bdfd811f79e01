"""Export benchmark: the same episodes written by LeRobot's own writer (official lerobot 0.4.4, in its venv) and
by `vla-data export`, side by side in one run, same codec settings (AV1 libsvtav1, crf 30, g 2, preset 12,
native size), each timed from the catalog to a finished dataset on this machine's cores.

    .venv/bin/python benchmarks/export.py [--episodes 6] [--workdir /tmp/vla-bench-export]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pyarrow.parquet as pq  # noqa: E402

from jobs.export import run_export  # noqa: E402
from jobs.ingest import run_ingest  # noqa: E402
from pipeline.export_plan import plan_export  # noqa: E402
from schemas import lerobot as lr  # noqa: E402
from synth.generate import generate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def lerobot_spec(catalog: Path, robot: str) -> dict:
    """The episodes our exporter would write, as LeRobot add_frame input."""
    sources = plan_export(catalog, robot, "clip")
    cam = sources[0].cameras
    features = {"observation.state": lr.vector_feature(sources[0].state_names),
                "action": lr.vector_feature(sources[0].action_names)}
    for c in cam:
        features[f"observation.images.{c['name']}"] = {"dtype": "video", "shape": [c["height"], c["width"], 3],
                                                       "names": ["height", "width", "channels"]}
    episodes = [{"frames_uri": s.frames_uri, "start": ex.spans[0][0], "end": ex.spans[0][1], "task": ex.task,
                 "cameras": {f"observation.images.{c['name']}": c["uri"] for c in s.cameras}}
                for s in sources for ex in s.exports]
    return {"fps": int(round(sources[0].fps)), "robot": robot, "features": features, "episodes": episodes,
            "threads": os.cpu_count()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vla-bench-export"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    shutil.rmtree(a.workdir, ignore_errors=True)
    generate("aloha", a.episodes, a.seed, a.workdir / "raw")
    catalog = a.workdir / "catalog"
    run_ingest(a.workdir / "raw", catalog, progress=False)
    spec = lerobot_spec(catalog, "aloha")
    (a.workdir / "spec.json").write_text(json.dumps(spec))
    frames = sum(e["end"] - e["start"] for e in spec["episodes"])
    venv = subprocess.run([str(REPO / "scripts" / "venv.sh"), "lerobot"], capture_output=True, text=True, check=True)
    python = str(Path(venv.stdout.strip()) / "bin" / "python")

    proc = subprocess.run([python, str(REPO / "benchmarks" / "lerobot_writer.py"), str(a.workdir / "spec.json"),
                           str(a.workdir / "lerobot")], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    t_lerobot = json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]
    t0 = time.perf_counter()
    report = run_export(catalog, a.workdir / "ours", robot="aloha", codec="av1", progress=False)[0]
    t_ours = time.perf_counter() - t0
    assert report.frames == frames
    ours_frames = pq.read_metadata(next((report.path / "data").rglob("*.parquet"))).num_rows
    print(f"{len(spec['episodes'])} clip episodes, {frames} frames x 3 cameras, {os.cpu_count()} cores, "
          f"AV1 crf 30 g 2 preset 12 at native size")
    print(f"lerobot 0.4.4 writer (create/add_frame/save_episode): {frames / t_lerobot:8.1f} frames/s ({t_lerobot:.1f} s)")
    print(f"vla-data export (Ray)                               : {frames / t_ours:8.1f} frames/s ({t_ours:.1f} s, "
          f"{ours_frames} rows)")
    print(f"ratio vla-data / lerobot: {t_lerobot / t_ours:.2f}x")


if __name__ == "__main__":
    main()
