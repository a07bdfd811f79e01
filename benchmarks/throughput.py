"""Per-core throughput of every CPU stage on this machine, the figures docs/scaling.md sizes a cluster from.

Each stage's worker function (the one its Ray task runs with num_cpus=1) runs in a fresh single-threaded process
(OMP_NUM_THREADS=1, codecs at thread_count 1 / lp=1, as in the pipeline) and is charged its own CPU time
(user + sys of the process, all threads, from getrusage), not wall time: this machine is shared, and CPU time
is what a dedicated core would spend.

- ingest: pipeline.ingest.ingest_episode on generated recordings at --size (default 640x480): ALOHA (JPEG rows,
  50 Hz, re-encoded to H.264 by ingest), AgiBot with AV1 cameras (the generator's default) and with H.264 cameras
  (30 Hz, decoded only);
- export: pipeline.export_video.encode_camera for one camera over all of a source's recordings (one export batch),
  AV1 (libsvtav1 preset 12, crf 30, g 2) and H.264, resized to --export-size (LingBot's 224x224), clip episodes;
  plus a decode-only pass of the same camera, to split the cost into decode (every source frame) and
  resize + encode + stats (exported frames only);
- annotate, CPU part: annotators.frames.sample_frames (1 Hz x 3 views, at most 12 per view, 320x240 JPEG);
- driver side: the catalog build from N manifests (build_catalog), the export driver's data
  loop (parquet rows + per-episode stats), and ray.wait over a long list of refs (what as_completed calls once
  per finished task).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/throughput.py [--work /tmp/vla-tput] [--size 640x480]
        [--episodes 2] [--manifests 20000] [--ray-refs 20000 100000]

Generated recordings are reused from --work when present.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import memory  # noqa: E402  (benchmarks/memory.py: child runner with wait4 rusage)

MiB = 2**20
SOURCES = {  # name: (format, camera codec of the generated recording)
    "aloha": ("aloha", None),
    "agibot-av1": ("agibot", "libsvtav1"),
    "agibot-h264": ("agibot", "libx264"),
}
ROBOT = {"aloha": ("aloha", "cam_high"), "agibot": ("agibot_g1", "head_color")}


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _timed(fn, *args):
    base, c0, t0 = memory._rss(), _cpu(), time.perf_counter()
    result = fn(*args)
    return result, {"base": base, "work_cpu": _cpu() - c0, "wall": time.perf_counter() - t0}


# ----------------------------------------------------------------------------------------------- children

def child_ingest(raw: str, out: str) -> dict:
    from pipeline import adapters
    from pipeline.ingest import ingest_episode
    from schemas.robot import robot_for_format

    refs = adapters.discover(raw)
    robot = robot_for_format(refs[0].source_format)
    manifests, t = _timed(lambda: [ingest_episode(r, robot, out) for r in refs])
    bad = [m for m in manifests if m["status"] != "ok"]
    if bad:
        raise SystemExit(f"quarantined: {[(m['code'], m['reason']) for m in bad]}")
    eps = [m["episode"] for m in manifests]
    return t | {"episodes": len(eps), "frames": sum(e["num_frames"] for e in eps),
                "seconds": sum(e["duration_s"] for e in eps), "static_s": sum(e["static_s"] for e in eps),
                "clips": sum(e["num_clips"] for e in eps), "width": eps[0]["cameras"][0]["width"],
                "height": eps[0]["cameras"][0]["height"], "fps": eps[0]["fps"]}


def child_export(out: str, robot: str, camera: str, codec: str, size: str, stem: str) -> dict:
    from jobs.export import CRF, GOP
    from pipeline.export_plan import plan_export
    from pipeline.export_video import encode_camera
    from schemas import lerobot as lr

    sources = [s for s in plan_export(out, robot, "clip") if s.exports]
    wh = tuple(int(v) for v in size.split("x"))
    (files, _), t = _timed(encode_camera, sources, camera, stem, int(round(sources[0].fps)), lr.CODECS[codec], wh,
                           GOP, CRF, int(lr.VIDEO_FILES_SIZE_IN_MB * MiB))
    return t | {"frames": sum(e.length for s in sources for e in s.exports),
                "episodes": sum(len(s.exports) for s in sources), "bytes": sum(Path(f).stat().st_size for f in files)}


def child_decode(out: str, robot: str, camera: str) -> dict:
    """Decode-only floor of the export (and of the annotate sampler): every frame decoded, none converted."""
    from pipeline.export_plan import plan_export
    from pipeline.video import decode_frames

    uris = [next(c["uri"] for c in s.cameras if c["name"] == camera) for s in plan_export(out, robot, "clip")]
    seen = []

    def decode_all():
        for u in uris:
            for _ in decode_frames(u, keep=lambda i: seen.append(i) and False):
                pass

    _, t = _timed(decode_all)
    return t | {"frames": len(seen)}


def child_sample(out: str, robot: str) -> dict:
    from annotators.frames import FrameSampling, sample_frames
    from pipeline.catalog import connect

    con = connect(out)
    cols = [d[0] for d in con.execute("SELECT * FROM episodes LIMIT 0").description]
    eps = [dict(zip(cols, r)) for r in con.execute("SELECT * FROM episodes WHERE robot = ?", [robot]).fetchall()]
    frames, t = _timed(lambda: [sample_frames(e, FrameSampling()) for e in eps])
    return t | {"recordings": len(eps), "seconds": sum(e["duration_s"] for e in eps),
                "images": sum(len(f) for f in frames), "jpeg_bytes": sum(len(x.jpeg) for f in frames for x in f)}


def child_catalog(out: str, n: int, scratch: str) -> dict:
    """n manifests (copies of the real ones under `out`, renamed) -> build_catalog."""
    from pipeline.catalog import build_catalog, iter_manifests

    real = [m for batch in iter_manifests(out) for m in batch]
    scratch_p = Path(scratch)
    shutil.rmtree(scratch_p, ignore_errors=True)
    (scratch_p / "_manifests").mkdir(parents=True)
    clips = 0
    for i in range(n):
        m = json.loads(json.dumps(real[i % len(real)]))
        eid = f"{m['episode_id']}-{i:07d}"
        m["episode_id"] = m["episode"]["episode_id"] = eid
        for c in m["clips"]:
            c["episode_id"], c["clip_id"] = eid, f"{eid}-{c['clip_index']:03d}"
        for s in m["static_spans"]:
            s["episode_id"] = eid
        clips += len(m["clips"])
        (scratch_p / "_manifests" / f"{eid}.json").write_text(json.dumps(m, sort_keys=True))
    _, t = _timed(build_catalog, scratch)
    size = sum(f.stat().st_size for f in (scratch_p / "_manifests").iterdir())
    shutil.rmtree(scratch_p)
    return t | {"manifests": n, "clips": clips, "manifest_bytes": size}


def child_driver(out: str, robot: str, scratch: str) -> dict:
    """The export driver's serial data loop (as jobs/export.py export_robot runs it): per exported episode its
    parquet rows and per-feature stats, then the stats.json aggregate over every frame."""
    import numpy as np

    from pipeline.export_plan import plan_export
    from pipeline.lerobot_writer import DataFiles, aggregate, episode_rows, source_signals, to_table
    from pipeline.stats import feature_stats
    from schemas import lerobot as lr
    from schemas.robot import load_robot

    rb = load_robot(robot)
    sources = [s for s in plan_export(out, robot, "clip") if s.exports]
    features = {"observation.state": lr.vector_feature(rb.state_names), "action": lr.vector_feature(rb.action_names)}
    features |= lr.DEFAULT_FEATURES
    schema = lr.data_schema(features)
    Path(scratch).mkdir(parents=True, exist_ok=True)

    def loop():
        data = DataFiles(Path(scratch), schema, int(lr.DATA_FILES_SIZE_IN_MB * MiB))
        numeric, per_ep, index = {"observation.state": [], "action": []}, [], 0
        for src in sources:
            signals = source_signals(src)
            for ex in src.exports:
                rows = episode_rows(src, signals, ex, index, 0, None)
                data.add(to_table(rows, schema))
                per_ep.append({k: feature_stats(rows[k], lr.QUANTILES) for k in schema.names})
                for k in numeric:
                    numeric[k].append(rows[k])
                index += ex.length
        data.close()
        for k in numeric:
            aggregate([s[k] for s in per_ep], np.concatenate(numeric[k]))
        return index

    frames, t = _timed(loop)
    shutil.rmtree(scratch, ignore_errors=True)
    return t | {"frames": frames, "episodes": sum(len(s.exports) for s in sources)}


def child_raywait(n: str) -> dict:
    """Seconds per ray.wait(refs, num_returns=1) call over n ready refs: jobs.runtime.as_completed makes one such
    call per finished task over all the tasks still pending, so a run of N tasks costs about N^2/2 of these."""
    import ray

    ray.init(address="local", include_dashboard=False, num_cpus=1, logging_level="ERROR")
    refs = [ray.put(i) for i in range(int(n))]
    ray.wait(refs, num_returns=len(refs))
    t0 = time.perf_counter()
    calls = 10
    for _ in range(calls):
        ready, rest = ray.wait(refs, num_returns=1)
    per_call = (time.perf_counter() - t0) / calls
    ray.shutdown()
    return {"refs": int(n), "per_call": per_call, "base": 0, "work_cpu": 0, "wall": per_call}


CHILDREN = {"ingest": child_ingest, "export": child_export, "decode": child_decode, "sample": child_sample,
            "catalog": lambda out, n, scratch: child_catalog(out, int(n), scratch), "driver": child_driver,
            "raywait": child_raywait}


# ----------------------------------------------------------------------------------------------- main

def generated(work: Path, name: str, episodes: int, size: tuple[int, int], seed: int) -> Path:
    from synth.generate import generate

    fmt, codec = SOURCES[name]
    root = work / f"raw-{name}-{size[0]}x{size[1]}"
    if not (root / ".done").exists():
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.perf_counter()
        generate(fmt, episodes, seed, root, size=size, variant=codec)
        (root / ".done").touch()
        print(f"  generated {root.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


def du(path: Path, pattern: str = "*") -> int:
    return sum(f.stat().st_size for f in path.rglob(pattern) if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/vla-tput"))
    ap.add_argument("--size", default="640x480", help="camera size of the generated recordings")
    ap.add_argument("--export-size", default="224x224")
    ap.add_argument("--episodes", type=int, default=2, help="recordings per source")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    ap.add_argument("--manifests", type=int, default=20000, help="manifests for the catalog-build timing (0: skip)")
    ap.add_argument("--ray-refs", nargs="*", type=int, default=[20000, 100000], help="ray.wait list sizes")
    ap.add_argument("--driver-catalog", nargs=2, metavar=("OUT", "ROBOT"),
                    help="time the export driver's data loop on this catalog (e.g. benchmarks/memory.py's long "
                         "recordings) instead of the first source's")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, *rest = a.child
        print(json.dumps(CHILDREN[kind](*rest) | {"hwm": memory._hwm()}), flush=True)
        return

    size = tuple(int(v) for v in a.size.split("x"))
    a.work.mkdir(parents=True, exist_ok=True)
    logs = a.work / "logs"
    run = lambda args, name: memory.run_child(args, logs / f"{name}.err", script=__file__)  # noqa: E731
    t_start = time.perf_counter()
    results: dict[str, dict] = {}
    for name in a.sources:
        raw = generated(a.work, name, a.episodes, size, a.seed)
        out = a.work / f"out-{name}"
        shutil.rmtree(out, ignore_errors=True)
        r = run(["ingest", str(raw), str(out)], f"ingest-{name}")
        from pipeline.catalog import build_catalog
        build_catalog(out)
        r["raw_bytes"] = du(raw, "*.hdf5") + du(raw, "*.mp4")
        r["out_bytes"] = du(out / "episodes")
        results[f"ingest {name}"] = r
        print(f"  ingest {name}: {r['seconds']:.1f} s of recording in {r['work_cpu']:.1f} cpu s", flush=True)
        robot, cam = ROBOT[SOURCES[name][0]]
        results[f"decode {name}"] = run(["decode", str(out), robot, cam], f"decode-{name}")
        for codec in ("av1", "h264"):
            stem = a.work / "export" / f"{name}-{codec}" / cam
            shutil.rmtree(stem.parent, ignore_errors=True)
            stem.parent.mkdir(parents=True)
            results[f"export {name} {codec}"] = run(["export", str(out), robot, cam, codec, a.export_size, str(stem)],
                                                    f"export-{name}-{codec}")
            shutil.rmtree(stem.parent, ignore_errors=True)
        results[f"sample {name}"] = run(["sample", str(out), robot], f"sample-{name}")
        print(f"  export/decode/sample {name} done", flush=True)
    first = a.work / f"out-{a.sources[0]}"
    if a.manifests:
        results["catalog"] = run(["catalog", str(first), str(a.manifests), str(a.work / "catalog-scratch")], "catalog")
    robot0 = ROBOT[SOURCES[a.sources[0]][0]][0]
    driver_out, driver_robot = a.driver_catalog or (str(first), robot0)
    results["driver"] = run(["driver", driver_out, driver_robot, str(a.work / "driver-scratch")], "driver")
    for n in a.ray_refs or []:
        results[f"raywait {n}"] = run(["raywait", str(n)], f"raywait-{n}")

    # ------------------------------------------------------------------------------------------- report
    print(f"\nper-core throughput ({os.cpu_count()}-core {cpu_model()}, OMP_NUM_THREADS=1, one process per stage, "
          f"CPU time of the worker call; cameras {a.size}; total {time.perf_counter() - t_start:.0f} s)")
    print(f"{'stage':<34} {'rec s':>7} {'frames':>8} {'cpu s':>7} {'wall s':>7} {'peak MiB':>8} "
          f"{'frames/core-s':>13} {'rec-s/core-s':>12} {'core-h/rec-h':>12}")
    summary = {}
    for name in a.sources:
        ing = results[f"ingest {name}"]
        sec = ing["seconds"]
        active = 1 - ing["static_s"] / sec

        def line(label, r, frames, per_rec_cam=1):
            cpu = r["work_cpu"] * per_rec_cam
            print(f"{label:<34} {sec:>7.1f} {frames:>8} {cpu:>7.1f} {r['wall'] * per_rec_cam:>7.1f} "
                  f"{r['peak'] / MiB:>8.0f} {frames * per_rec_cam / cpu:>13.0f} {sec / cpu:>12.2f} {cpu / sec:>12.3f}")
            return cpu / sec

        s = summary[name] = {"fps": ing["fps"], "active": active, "seconds": sec,
                             "size": f"{ing['width']}x{ing['height']}"}
        s["ingest"] = line(f"ingest {name} (3 cams)", ing, 3 * ing["frames"])
        dec = results[f"decode {name}"]
        s["decode_per_frame"] = dec["work_cpu"] / dec["frames"]
        line("  decode only, 1 cam", dec, dec["frames"])
        for codec in ("av1", "h264"):
            ex = results[f"export {name} {codec}"]
            s[f"export_{codec}"] = line(f"export {codec} {a.export_size} (x3 cams)", ex, ex["frames"], 3)
            s[f"encode_per_frame_{codec}"] = (ex["work_cpu"] - dec["work_cpu"]) / ex["frames"]
            s[f"export_bytes_{codec}"] = ex["bytes"] * 3
        smp = results[f"sample {name}"]
        s["sample"] = line("annotate: sample_frames (3 cams)", smp, smp["images"])
        s["raw_bytes"], s["out_bytes"] = ing["raw_bytes"], ing["out_bytes"]
    print("(frames/core-s: camera frames handled per core-second -- ingest: all frames of 3 cameras; export: exported "
          "frames of 3 cameras (the 1-camera task x3); sample: JPEGs sent. rec-s/core-s: recording seconds per "
          "core-second; core-h/rec-h: its inverse)")
    print("\ncost split (ms of one core per camera frame) and sizes:")
    for name, s in summary.items():
        print(f"  {name:<12} {s['size']} {s['fps']:g} Hz, active {s['active']:.0%}: decode "
              f"{1e3 * s['decode_per_frame']:.2f} ms/source frame; resize+encode+stats "
              f"{1e3 * s['encode_per_frame_av1']:.2f} (AV1) / "
              f"{1e3 * s['encode_per_frame_h264']:.2f} (H.264) ms/exported frame; "
              f"raw {s['raw_bytes'] / s['seconds'] * 3600 / 2**30:.2f} GiB/h, ingest output "
              f"{s['out_bytes'] / s['seconds'] * 3600 / 2**30:.2f} GiB/h, export {a.export_size} "
              f"{s['export_bytes_av1'] / s['seconds'] * 3600 / 2**30:.3f} (AV1) / "
              f"{s['export_bytes_h264'] / s['seconds'] * 3600 / 2**30:.3f} (H.264) GiB/h")
    if "catalog" in results:
        c = results["catalog"]
        print(f"\ndriver: catalog build from {c['manifests']} local manifests ({c['clips']} clips, "
              f"{c['manifest_bytes'] / c['manifests'] / 1024:.1f} KiB each): {c['work_cpu']:.1f} cpu s, "
              f"{c['manifests'] / c['work_cpu']:.0f} manifests/s, peak {c['peak'] / MiB:.0f} MiB "
              f"(+{(c['peak'] - c['base']) / c['manifests'] / 1024:.1f} KiB per manifest)")
    d = results["driver"]
    print(f"driver: export data loop (rows + per-episode stats + stats.json aggregate) over {d['frames']} frames / "
          f"{d['episodes']} episodes: {d['work_cpu']:.2f} cpu s, {d['frames'] / d['work_cpu']:.0f} frames/s, peak "
          f"{d['peak'] / MiB:.0f} MiB (+{(d['peak'] - d['base']) / d['frames']:.0f} B per frame)")
    for n in a.ray_refs or []:
        r = results[f"raywait {n}"]
        print(f"driver: ray.wait(num_returns=1) over {n} refs: {1e3 * r['per_call']:.2f} ms per call "
              f"({1e6 * r['per_call'] / n:.3f} us per pending ref)")
    (a.work / "throughput.json").write_text(json.dumps({"results": results, "summary": summary}, indent=1))
    print(f"\nraw numbers: {a.work / 'throughput.json'}")


def cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return "cpu"


if __name__ == "__main__":
    main()
