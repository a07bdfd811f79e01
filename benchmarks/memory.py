"""Peak memory of one worker vs recording length: the ingest task (pipeline.ingest.ingest_episode, what
jobs/ingest.py runs as a Ray task per recording) and the export video task (pipeline.export_video.encode_camera
for one camera, what jobs/export.py runs per camera batch), each in a fresh process, on 10- and 60-minute
recordings.

Long recordings are built cheaply: one short synthetic episode (synth.generate) is tiled in time. AgiBot: the
camera mp4s are concatenated by copying packets (no re-encode; every copy starts on a keyframe, pts continue),
the proprio arrays are repeated with continuous nanosecond timestamps, the segment labels are repeated with
their frame offsets. ALOHA: the JPEG rows and joint arrays of the HDF5 are repeated (t = i / fps).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/memory.py [--work /tmp/vla-mem] [--minutes 10 60]
        [--formats agibot aloha] [--size 160x120] [--export-minutes 10 60] [--export-codec av1]
        [--export-size 224x224] [--export-units clip recording] [--trace]

Generated recordings are reused from --work when present. Peak RSS is the child's own high-water mark (VmHWM
of /proc/self/status at its end), cross-checked by sampling its RSS with psutil every 0.1 s; "base" is the
child's RSS after its imports, just before the worker function runs, so peak - base is what the work itself
needs. Under Ray a worker process adds its
core-worker overhead (about 100-150 MB) to these figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402
import h5py  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MiB = 2**20


# ----------------------------------------------------------------------------------------------- building inputs

def base_episode(work: Path, fmt: str, size: tuple[int, int], seed: int) -> Path:
    """One short synthetic recording (H.264 cameras for AgiBot, JPEG rows for ALOHA), generated once."""
    from synth.generate import generate

    root = work / f"base-{fmt}-{size[0]}x{size[1]}"
    if not (root / ".done").exists():
        shutil.rmtree(root, ignore_errors=True)
        generate(fmt, 1, seed, root, size=size, variant="libx264")
        (root / ".done").touch()
    return root


def concat_mp4(src: Path, dst: Path, frames: int) -> None:
    """dst = src played over and over until it holds `frames` frames: packets are copied, pts shifted per copy.
    Needs a stream without B-frames (pts == dts), as pipeline.video.Mp4Writer writes."""
    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        packets = [(bytes(p), p.pts, p.dts, p.duration, p.is_keyframe) for p in inp.demux(stream) if p.size]
        step = packets[1][1] - packets[0][1]
        span = packets[-1][1] - packets[0][1] + step
        dst.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(dst), "w") as out:
            ostream = out.add_stream_from_template(stream)
            for i in range(frames):
                k, j = divmod(i, len(packets))
                data, pts, dts, dur, key = packets[j]
                p = av.Packet(data)
                p.pts, p.dts, p.duration = pts + k * span, dts + k * span, dur
                p.is_keyframe = key
                p.time_base = stream.time_base
                p.stream = ostream
                out.mux(p)


def tile_agibot(base: Path, dest: Path, minutes: float) -> None:
    """An AgiBot World dataset root with the base episode tiled to `minutes` (same task/episode ids)."""
    (h5_src,) = base.glob("proprio_stats/*/*/proprio_stats.h5")
    key = h5_src.parent.relative_to(base / "proprio_stats").as_posix()
    task_id = key.split("/")[0]
    fps = 30
    total = int(round(minutes * 60 * fps))
    with h5py.File(h5_src) as f:
        n0 = f["timestamp"].shape[0]
        reps = math.ceil(total / n0)
        h5_dst = dest / "proprio_stats" / key / "proprio_stats.h5"
        h5_dst.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(h5_dst, "w") as g:
            def copy(name, obj):
                if not isinstance(obj, h5py.Dataset):
                    return
                a = obj[()]
                if name == "timestamp":
                    period = int(round(1e9 / fps))
                    shift = a[-1] - a[0] + period
                    a = np.concatenate([a + k * shift for k in range(reps)])[:total]
                elif a.ndim and a.shape[0] == n0:
                    a = np.concatenate([a] * reps)[:total]
                g[name] = a
            f.visititems(copy)
    info = json.loads((base / "task_info" / f"task_{task_id}.json").read_text())
    for e in info:
        labels = e["label_info"]["action_config"]
        e["label_info"]["action_config"] = [
            {**s, "start_frame": s["start_frame"] + k * n0, "end_frame": min(total, s["end_frame"] + k * n0)}
            for k in range(reps) for s in labels if s["start_frame"] + k * n0 < total]
    (dest / "task_info").mkdir(parents=True, exist_ok=True)
    (dest / "task_info" / f"task_{task_id}.json").write_text(json.dumps(info))
    for mp4 in (base / "observations" / key / "videos").glob("*.mp4"):
        concat_mp4(mp4, dest / "observations" / key / "videos" / mp4.name, total)


def tile_aloha(base: Path, dest: Path, minutes: float) -> None:
    """An ALOHA episode_0.hdf5 with the base episode's joint arrays and JPEG rows repeated to `minutes`."""
    (src,) = base.glob("*/episode_*.hdf5")
    fps = 50
    total = int(round(minutes * 60 * fps))
    dst = dest / src.relative_to(base)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(src) as f, h5py.File(dst, "w") as g:
        n0 = f["observations/qpos"].shape[0]
        reps = math.ceil(total / n0)
        g.attrs.update(dict(f.attrs))
        for name in ("observations/qpos", "observations/qvel", "observations/effort", "action"):
            g[name] = np.concatenate([f[name][()]] * reps)[:total]
        g["compress_len"] = np.concatenate([f["compress_len"][()]] * reps, axis=1)[:, :total]
        for cam, d in f["observations/images"].items():
            rows = d[()]
            out = g.create_dataset(f"observations/images/{cam}", (total, rows.shape[1]), dtype=rows.dtype,
                                   chunks=(1, rows.shape[1]))
            for a in range(0, total, n0):
                b = min(total, a + n0)
                out[a:b] = rows[: b - a]
    os.utime(dst, (src.stat().st_mtime,) * 2)


def long_recording(work: Path, fmt: str, size: tuple[int, int], minutes: float, seed: int) -> Path:
    root = work / f"raw-{fmt}-{size[0]}x{size[1]}-{minutes:g}min"
    if not (root / ".done").exists():
        shutil.rmtree(root, ignore_errors=True)
        base = base_episode(work, fmt, size, seed)
        t0 = time.perf_counter()
        (tile_agibot if fmt == "agibot" else tile_aloha)(base, root, minutes)
        (root / ".done").touch()
        print(f"  built {root.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


# ----------------------------------------------------------------------------------------------- child processes

def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm() -> int:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries the pre-exec RSS high-water mark of the
    forking parent into ru_maxrss (with vfork, the parent's own peak), which would floor every child's figure."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _trace_at(module, name: str) -> None:
    """tracemalloc snapshot the first time module.name is called (a point of maximal retained per-frame data)."""
    import tracemalloc

    tracemalloc.start(4)
    fn, done = getattr(module, name), []

    def wrapped(*a, **k):
        if not done:
            done.append(1)
            snap = tracemalloc.take_snapshot()
            cur, peak = tracemalloc.get_traced_memory()
            print(f"tracemalloc at first {name}(): traced {cur / MiB:.1f} MiB (peak {peak / MiB:.1f} MiB); top sites:",
                  file=sys.stderr)
            for s in snap.statistics("lineno")[:8]:
                print(f"  {s.size / MiB:8.1f} MiB {s.count:9d} blocks  {s.traceback[0]}", file=sys.stderr)
        return fn(*a, **k)

    setattr(module, name, wrapped)


def child_ingest(raw: str, out: str, trace: bool) -> dict:
    import pipeline.ingest as ingest
    from pipeline import adapters
    from schemas.robot import robot_for_format

    (ref,) = adapters.discover(raw)
    robot = robot_for_format(ref.source_format)
    if trace:
        _trace_at(ingest, "static_mask")
    base, c0, t0 = _rss(), _cpu(), time.perf_counter()
    m = ingest.ingest_episode(ref, robot, out)  # what the Ray task runs
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    if m["status"] != "ok":
        raise SystemExit(f"quarantined: {m['code']}: {m['reason']}")
    ep = m["episode"]
    return {"base": base, "wall": wall, "work_cpu": cpu, "frames": ep["num_frames"], "seconds": ep["duration_s"],
            "clips": ep["num_clips"], "static_s": ep["static_s"], "episode_id": ep["episode_id"], "robot": ep["robot"]}


def child_export(out: str, robot_name: str, eid: str, camera: str, codec: str, size: str, unit: str,
                 stem: str, trace: bool) -> dict:
    import pipeline.export_video as ev
    from jobs.export import CRF, GOP
    from pipeline.export_plan import plan_export
    from schemas import lerobot as lr

    (src,) = [s for s in plan_export(out, robot_name, unit) if s.episode_id == eid]
    wh = tuple(int(v) for v in size.split("x")) if size != "native" else None
    if trace:
        _trace_at(ev, "image_stats")
    base, c0, t0 = _rss(), _cpu(), time.perf_counter()
    files, placed = ev.encode_camera([src], camera, stem, int(round(src.fps)), lr.CODECS[codec], wh, GOP, CRF,
                                     int(lr.VIDEO_FILES_SIZE_IN_MB * MiB))  # what the Ray task runs
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    frames = sum(e.length for e in src.exports)
    return {"base": base, "wall": wall, "work_cpu": cpu, "frames": frames, "episodes": len(src.exports),
            "bytes": sum(Path(f).stat().st_size for f in files)}


def run_child(args: list[str], log: Path, script: str = __file__) -> dict:
    """Runs `script` (this file by default) with --child args; returns the JSON its last stdout line holds (with
    the child's VmHWM as `peak`), its CPU time from wait4, and its RSS sampled with psutil (max and curve)."""
    try:
        import psutil
    except ImportError:  # sampling is only a cross-check
        psutil = None
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as err, open(log.with_suffix(".out"), "w") as outf:
        p = subprocess.Popen([sys.executable, script, "--child", *args], stdout=outf, stderr=err,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        proc = psutil.Process(p.pid) if psutil else None
        sampled, samples, t0 = 0, [], time.perf_counter()
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if proc is not None:
                try:
                    rss = proc.memory_info().rss
                    sampled = max(sampled, rss)
                    samples.append((time.perf_counter() - t0, rss))
                except psutil.Error:
                    pass
            time.sleep(0.1)
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"child {args} failed ({p.returncode}):\n{log.read_text()[-3000:]}")
    answer = json.loads(log.with_suffix(".out").read_text().strip().splitlines()[-1])
    trace = log.read_text()
    # RSS at 25/50/75/100 % of the run: flat = bounded, rising = grows with length
    curve = [max((r for t, r in samples if t <= f * samples[-1][0]), default=0) / MiB
             for f in (0.25, 0.5, 0.75, 1.0)] if samples else []
    return answer | {"peak": answer["hwm"], "sampled": sampled, "cpu": ru.ru_utime + ru.ru_stime,
                     "curve": curve, "trace": trace if "tracemalloc" in trace else ""}


# ----------------------------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/vla-mem"))
    ap.add_argument("--formats", nargs="+", default=["agibot", "aloha"])
    ap.add_argument("--minutes", nargs="+", type=float, default=[10, 60])
    ap.add_argument("--size", default="160x120", help="camera size of the generated recordings")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--export-formats", nargs="*", default=["agibot"])
    ap.add_argument("--export-minutes", nargs="+", type=float, default=[10, 60])
    ap.add_argument("--export-codec", default="av1", choices=["av1", "h264"])
    ap.add_argument("--export-size", default="224x224", help="WxH or native")
    ap.add_argument("--export-units", nargs="+", default=["clip", "recording"])
    ap.add_argument("--trace", action="store_true", help="tracemalloc top sites in the longest cases")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, *rest = a.child
        trace = rest[-1] == "trace"
        rest = rest[:-1]
        ans = child_ingest(*rest, trace) if kind == "ingest" else child_export(*rest, trace)
        ans["hwm"] = _hwm()
        if trace:
            import tracemalloc
            print(f"tracemalloc over the whole call: peak traced {tracemalloc.get_traced_memory()[1] / MiB:.1f} MiB "
                  f"(numpy and Python objects; not libav/x264/svt/HDF5 buffers)", file=sys.stderr)
        print(json.dumps(ans), flush=True)
        return

    import logging
    logging.basicConfig(level=logging.WARNING)
    size = tuple(int(v) for v in a.size.split("x"))
    a.work.mkdir(parents=True, exist_ok=True)
    rows, episodes = [], {}
    t_start = time.perf_counter()
    longest = max(a.minutes)
    for fmt in a.formats:
        for minutes in a.minutes:
            raw = long_recording(a.work, fmt, size, minutes, a.seed)
            out = a.work / "out"
            # a fresh output per case: the manifest resume marker does not apply to a direct call anyway
            r = run_child(["ingest", str(raw), str(out), "trace" if a.trace and minutes == longest else "-"],
                          a.work / "logs" / f"ingest-{fmt}-{minutes:g}.err")
            episodes[(fmt, minutes)] = r
            rows.append((f"ingest {fmt} {a.size}", minutes, r))
            print(f"  ingest {fmt} {minutes:g} min done: {r['frames']} frames, peak {r['peak'] / MiB:.0f} MiB, "
                  f"cpu {r['work_cpu']:.0f} s, wall {r['wall']:.0f} s", flush=True)
    from pipeline.catalog import build_catalog
    build_catalog(a.work / "out")
    robot_of = {"agibot": ("agibot_g1", "head_color"), "aloha": ("aloha", "cam_high")}
    for fmt in a.export_formats:
        for unit in a.export_units:
            for minutes in a.export_minutes:
                if (fmt, minutes) not in episodes:
                    continue
                robot, cam = robot_of[fmt]
                stem = a.work / "export" / f"{fmt}-{minutes:g}-{unit}" / cam
                shutil.rmtree(stem.parent, ignore_errors=True)
                stem.parent.mkdir(parents=True)
                r = run_child(["export", str(a.work / "out"), robot, episodes[(fmt, minutes)]["episode_id"], cam,
                               a.export_codec, a.export_size, unit, str(stem),
                               "trace" if a.trace and minutes == longest else "-"],
                              a.work / "logs" / f"export-{fmt}-{minutes:g}-{unit}.err")
                rows.append((f"export {fmt} {cam} {a.export_codec} {a.export_size} {unit}", minutes, r))
                print(f"  export {fmt} {unit} {minutes:g} min done: {r['frames']} frames, peak "
                      f"{r['peak'] / MiB:.0f} MiB, cpu {r['work_cpu']:.0f} s", flush=True)
                shutil.rmtree(stem.parent, ignore_errors=True)

    print(f"\nworker peak memory vs recording length ({os.cpu_count()} cores, OMP_NUM_THREADS=1, source cameras "
          f"{a.size}; fresh process per case; total {time.perf_counter() - t_start:.0f} s)")
    head = (f"{'case':<46} {'min':>4} {'frames':>7} {'exp.eps':>7} {'base MiB':>8} {'peak MiB':>8} "
            f"{'sampled':>7} {'work MiB':>8} "
            f"{'cpu s':>6} {'wall s':>6} {'fps/core':>8}  RSS at 25/50/75/100% of run (MiB)")
    print(head)
    print("-" * len(head))
    for case, minutes, r in rows:
        print(f"{case:<46} {minutes:>4g} {r['frames']:>7} {r.get('episodes', r.get('clips', '')):>7} "
              f"{r['base'] / MiB:>8.0f} {r['peak'] / MiB:>8.0f} {r['sampled'] / MiB:>7.0f} "
              f"{(r['peak'] - r['base']) / MiB:>8.0f} {r['work_cpu']:>6.1f} {r['wall']:>6.1f} "
              f"{r['frames'] / r['work_cpu']:>8.0f}  " + " / ".join(f"{v:.0f}" for v in r["curve"]))
    print("(exp.eps: clips cut for ingest rows, exported episodes for export rows; peak = the child's VmHWM, sampled = "
          "max of psutil samples every 0.1 s; work = peak - base; cpu s and wall s "
          "of the worker call alone; fps/core = frames (per camera) / cpu s: ingest does 3 cameras, export 1)")
    by_case = {}
    for case, minutes, r in rows:
        by_case.setdefault(case, {})[minutes] = r
    lo, hi = min(a.minutes), max(a.minutes)
    for case, rs in by_case.items():
        if lo in rs and hi in rs:
            print(f"{case}: peak RSS {hi:g}-min / {lo:g}-min = {rs[hi]['peak'] / rs[lo]['peak']:.2f}x, "
                  f"work part {(rs[hi]['peak'] - rs[hi]['base']) / max(1, rs[lo]['peak'] - rs[lo]['base']):.2f}x")
    for case, minutes, r in rows:
        if r["trace"]:
            print(f"\n{case} {minutes:g} min:\n{r['trace'].strip()}")


if __name__ == "__main__":
    main()
