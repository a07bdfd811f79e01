"""Stats benchmark: the standard report (`vla-data stats report`, DuckDB over the catalog) and the per-frame
aggregates (`vla-data stats frames`, Dask over the LeRobot shards), each against a plain pandas implementation of
the same numbers, on a synthetic catalog and shard set of --frames shard frames (default 10 million), in one run.
Each implementation runs in a fresh process whose process tree (Dask workers included) is sampled for its peak
RSS; the run checks that both implementations give equal numbers, then prints the times, ratios and peaks.

    .venv/bin/python benchmarks/stats.py [--frames 10000000] [--work /tmp/vla-bench-stats]

The synthetic set (built once per --frames into --work, vectorized numpy, no video): per robot (aloha at 50 fps,
agibot_g1 at 30 fps, half the frames each) recordings of 900-2700 frames with static head and tail spans, the
active middle cut into clips of 120-480 frames; smooth joint trajectories, commanded one frame ahead with
tracking noise, the grippers overshooting their limits now and then. OUT/catalog/*.parquet and
OUT/episodes/<id>/frames.parquet follow schemas/catalog.py; DATASETS/<robot>/ holds the clips as LeRobot v3.0
episodes (data/ and meta/info.json, what the aggregates read), one frame dropped every 500 episodes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402  (a dependency of distributed)
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from tqdm import tqdm  # noqa: E402

from schemas import lerobot as lr  # noqa: E402
from schemas.catalog import SORT_KEYS, TABLES, frames_schema, with_version  # noqa: E402
from schemas.robot import RobotConfig, load_robot  # noqa: E402

ROBOTS = ("aloha", "agibot_g1")
TASKS = ("fold the towel", "stack the cups", "pour the beans", "open the drawer", "hand over the block")
REASONS = ("non_finite", "frame_count_mismatch", "corrupt_video", "joint_dimension")
REPORT_SECTIONS = ("recordings", "hours_per_day", "clip_lengths", "joint_ranges", "quarantine")
ROWS_PER_FILE = 800_000  # about the 100 MB our exporter rolls data files over at
ROW_GROUP = 131_072  # row groups that cut episodes (our exporter writes one per episode): partitions may too
DROP_EVERY = 500  # every DROP_EVERY-th exported episode loses a frame: the gap check has something to find


# ---- the synthetic catalog and shards --------------------------------------------------------------------------

def trajectories(rng, n: int, cfg: RobotConfig, head: int, tail: int) -> tuple[np.ndarray, np.ndarray]:
    """(state, action) float32 of one recording: sines per joint, still during the static head and tail; the
    action is the next frame's state with tracking noise (AgiBot effectors commanded as 1 = closed)."""
    t = np.arange(n)[:, None] / cfg.fps
    dims = len(cfg.state_names)
    state = rng.uniform(-1.5, 1.5, dims) + rng.uniform(0.05, 0.6, dims) * np.sin(
        2 * np.pi * rng.uniform(0.05, 0.4, dims) * t + rng.uniform(0, 2 * np.pi, dims))
    for g in cfg.grippers.values():
        lo, hi = sorted((g.closed_value, g.open_value))
        wave = np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t[:, 0] + rng.uniform(0, 2 * np.pi))
        state[:, g.state_index] = np.clip((lo + hi) / 2 + 0.6 * (hi - lo) * wave, lo, hi)
        if rng.random() < 0.05:  # an overshoot past the end stop, beyond the configured limit
            state[rng.integers(head, n - tail, 3), g.state_index] = hi + 0.1 * (hi - lo)
    state[:head], state[n - tail:] = state[head], state[n - tail - 1]
    action = np.concatenate([state[1:], state[-1:]]) + rng.normal(0, 0.002, state.shape)
    if cfg.source_format == "agibot":
        for g in cfg.grippers.values():
            action[:, g.state_index] = np.clip(1 - g.openness(action[:, g.state_index]), 0, 1)
    return state.astype(np.float32), action.astype(np.float32)


def clip_bounds(rng, head: int, active: int) -> list[tuple[int, int]]:
    """Consecutive clips of 120-480 frames over the active frames; a short remainder joins the last clip."""
    cuts = [head]
    while cuts[-1] - head < active:
        cuts.append(min(cuts[-1] + int(rng.integers(120, 481)), head + active))
    if len(cuts) > 2 and cuts[-1] - cuts[-2] < 60:
        del cuts[-2]
    return list(zip(cuts[:-1], cuts[1:]))


def vector_column(x: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])


class Shards:
    """DATASETS/<robot>/data/chunk-000/file-NNN.parquet, ROWS_PER_FILE rows a file, in index order."""

    def __init__(self, root: Path, cfg: RobotConfig):
        features = {"observation.state": lr.vector_feature(cfg.state_names),
                    "action": lr.vector_feature(cfg.action_names), **lr.DEFAULT_FEATURES}
        self.root, self.schema, self.features = root, lr.data_schema(features), features
        self.pending, self.rows, self.files, self.episodes = [], 0, 0, 0

    def add(self, state: np.ndarray, action: np.ndarray, fps: float, task: int) -> None:
        n = len(state)
        frame = np.arange(n)
        if self.episodes % DROP_EVERY == DROP_EVERY - 1:
            keep = frame != n // 2
            state, action, frame = state[keep], action[keep], frame[keep]
        m = len(frame)
        self.pending.append(pa.Table.from_arrays(
            [vector_column(state), vector_column(action), pa.array((frame / fps).astype(np.float32)),
             pa.array(frame.astype(np.int64)), pa.array(np.full(m, self.episodes, np.int64)),
             pa.array(np.arange(self.rows, self.rows + m, dtype=np.int64)), pa.array(np.full(m, task, np.int64))],
            schema=self.schema))
        self.rows += m
        self.episodes += 1
        if sum(t.num_rows for t in self.pending) >= ROWS_PER_FILE:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            path = self.root / lr.DATA_PATH.format(chunk_index=0, file_index=self.files)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.concat_tables(self.pending), path, row_group_size=ROW_GROUP)
            self.pending, self.files = [], self.files + 1

    def close(self, robot: str, fps: float) -> None:
        self.flush()
        info = {"codebase_version": lr.CODEBASE_VERSION, "robot_type": robot, "total_episodes": self.episodes,
                "total_frames": self.rows, "total_tasks": len(TASKS), "fps": int(fps), "data_path": lr.DATA_PATH,
                "features": self.features}
        (self.root / "meta").mkdir(parents=True, exist_ok=True)
        (self.root / "meta" / "info.json").write_text(json.dumps(info, indent=1))


def build_robot(rng, cfg: RobotConfig, target: int, out: Path, datasets: Path, rows: dict[str, list], bar) -> None:
    """Recordings of one robot until their clips hold `target` frames: catalog rows, frame tables, shards."""
    shards = Shards(datasets / cfg.name, cfg)
    day0 = np.datetime64("2026-06-01T09:00:00", "us")
    while shards.rows < target:
        i = len(rows["episodes"])
        eid = f"{cfg.name}-{i:06d}"
        n, head, tail = int(rng.integers(900, 2701)), int(rng.integers(15, 91)), int(rng.integers(15, 91))
        state, action = trajectories(rng, n, cfg, head, tail)
        clips = clip_bounds(rng, head, n - head - tail)
        task = int(rng.integers(len(TASKS)))
        clip_index = np.full(n, -1, np.int32)
        for c, (a, b) in enumerate(clips):
            clip_index[a:b] = c
            shards.add(state[a:b], action[a:b], cfg.fps, task)
        frames_uri = out / "episodes" / eid / "frames.parquet"
        frames_uri.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_arrays(
            [pa.array(np.full(n, eid)), pa.array(np.arange(n, dtype=np.int32)), pa.array(np.arange(n) / cfg.fps),
             vector_column(state), vector_column(action), pa.array(rng.uniform(0, 20, n).astype(np.float32)),
             pa.array(clip_index < 0), pa.array(clip_index)], schema=frames_schema(state.shape[1], action.shape[1])),
            frames_uri)
        # Recorded between 09:00 and 15:00 UTC: the same day in any time zone DuckDB's cast may use.
        recorded = day0 + np.timedelta64(int(rng.integers(30)), "D") + np.timedelta64(int(rng.integers(6 * 3600)), "s")
        rows["episodes"].append({
            "episode_id": eid, "robot": cfg.name, "source_format": cfg.source_format, "source_key": f"{eid}.hdf5",
            "source_uri": f"/raw/{eid}.hdf5", "content_hash": f"{i:064x}", "adapter_version": "synthetic",
            "task_name": TASKS[task], "recorded_at": recorded.item(), "fps": cfg.fps, "num_frames": n,
            "duration_s": n / cfg.fps, "static_s": (head + tail) / cfg.fps, "active_s": (n - head - tail) / cfg.fps,
            "num_clips": len(clips), "state_names": cfg.state_names, "action_names": cfg.action_names,
            "cameras": [], "frames_uri": str(frames_uri)})
        rows["clips"] += [{"clip_id": f"{eid}-{c:03d}", "episode_id": eid, "robot": cfg.name, "clip_index": c,
                           "start_frame": a, "end_frame": b, "start_s": a / cfg.fps, "end_s": b / cfg.fps,
                           "duration_s": (b - a) / cfg.fps, "origin": "signals"} for c, (a, b) in enumerate(clips)]
        rows["static_spans"] += [{"episode_id": eid, "start_frame": a, "end_frame": b, "start_s": a / cfg.fps,
                                  "duration_s": (b - a) / cfg.fps, "position": p}
                                 for a, b, p in ((0, head, "head"), (n - tail, n, "tail"))]
        if rng.random() < 0.01:
            rows["quarantine"].append({"source_key": f"{eid}-bad.hdf5", "source_format": cfg.source_format,
                                       "robot": cfg.name, "source_uri": f"/raw/{eid}-bad.hdf5",
                                       "reason_code": REASONS[int(rng.integers(len(REASONS)))], "reason": "synthetic"})
        bar.update(sum(b - a for a, b in clips))
    shards.close(cfg.name, cfg.fps)


def build(work: Path, frames: int, seed: int = 0) -> tuple[Path, Path]:
    """work/out (the catalog) and work/lerobot (the shards), built unless work holds them for these arguments."""
    out, datasets, marker = work / "out", work / "lerobot", work / "built.json"
    spec = {"frames": frames, "seed": seed}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return out, datasets
    for folder in (out, datasets):
        shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    rows = {name: [] for name in TABLES}
    with tqdm(total=frames, desc="synthetic shard frames", unit="frame", unit_scale=True) as bar:
        for robot in ROBOTS:
            build_robot(rng, load_robot(robot), frames // len(ROBOTS), out, datasets, rows, bar)
    for name, schema in TABLES.items():
        table = pa.Table.from_pylist(rows[name], schema=with_version(schema))
        (out / "catalog").mkdir(parents=True, exist_ok=True)
        pq.write_table(table.sort_by([(k, "ascending") for k in SORT_KEYS[name]]), out / "catalog" / f"{name}.parquet")
    marker.write_text(json.dumps(spec))
    return out, datasets


# ---- pandas baselines -------------------------------------------------------------------------------------------

def pandas_report(out: Path) -> dict[str, pd.DataFrame]:
    """The report's sections the plain way: read the tables and every frame table, group in pandas."""
    catalog = out / "catalog"
    episodes, clips, quarantine = (pd.read_parquet(catalog / f"{n}.parquet") for n in ("episodes", "clips", "quarantine"))
    episodes["task"] = episodes.task_name.fillna("")
    recordings = episodes.groupby(["robot", "task"]).agg(
        episodes=("episode_id", "size"), hours=("duration_s", "sum"), active_hours=("active_s", "sum"),
        static_s=("static_s", "sum"), clips=("num_clips", "sum")).reset_index()
    recordings["static_fraction"] = recordings.pop("static_s") / recordings.hours
    recordings[["hours", "active_hours"]] /= 3600
    episodes["day"] = episodes.recorded_at.dt.date
    per_day = episodes.groupby(["robot", "day"]).agg(episodes=("episode_id", "size"), hours=("duration_s", "sum"),
                                                      active_hours=("active_s", "sum"),
                                                      clips=("num_clips", "sum")).reset_index()
    per_day[["hours", "active_hours"]] /= 3600
    d = clips.groupby("robot").duration_s
    lengths = pd.DataFrame({"clips": d.size(), "min_s": d.min(), "p10_s": d.quantile(0.1), "p50_s": d.median(),
                            "p90_s": d.quantile(0.9), "max_s": d.max()}).reset_index()
    frames = pd.concat([pd.read_parquet(p, columns=["episode_id", "observation.state"])
                        for p in sorted((out / "episodes").glob("*/frames.parquet"))], ignore_index=True)
    frames = frames.merge(episodes[["episode_id", "robot"]], on="episode_id")
    ranges = []
    for robot, group in frames.groupby("robot"):
        state = np.stack(group["observation.state"].to_numpy())
        cfg = load_robot(robot)
        for j, name in enumerate(cfg.state_names):
            x = state[:, j].astype(np.float64)
            lo, hi = cfg.joint_limits.get(name, (np.nan, np.nan))
            p01, p50, p99 = np.quantile(x, [0.01, 0.5, 0.99])
            ranges.append({"robot": robot, "joint": name, "samples": len(x), "min": x.min(), "p01": p01, "p50": p50,
                           "p99": p99, "max": x.max(), "lower_limit": lo, "upper_limit": hi,
                           "out_of_range": int(((x < lo) | (x > hi)).sum())})
    reasons = quarantine.groupby(["source_format", "reason_code"]).size().rename("recordings").reset_index()
    return {"recordings": recordings[["robot", "task", "episodes", "hours", "active_hours", "static_fraction", "clips"]],
            "hours_per_day": per_day, "clip_lengths": lengths, "joint_ranges": pd.DataFrame(ranges),
            "quarantine": reasons}


def best_lag_votes(frames: pd.DataFrame, state: np.ndarray, action: np.ndarray, max_lag: int) -> np.ndarray:
    """(D, max_lag + 1) episodes per best lag: for each lag a merge of action(f) with state(f + lag) on
    (episode_index, frame_index), per-episode sums grouped in pandas, then |Pearson r| per episode and joint."""
    from pipeline.frame_stats import MIN_PAIRS, STILL

    keys = frames[["episode_index", "frame_index"]]
    episodes, dims = np.unique(keys.episode_index), state.shape[1]
    a_cols, s_cols = [f"a{d}" for d in range(dims)], [f"s{d}" for d in range(dims)]
    acts = pd.concat([keys, pd.DataFrame(action, columns=a_cols)], axis=1)
    states = pd.concat([keys, pd.DataFrame(state, columns=s_cols)], axis=1)
    r, moving = [], []
    for lag in range(max_lag + 1):
        m = acts.merge(states.assign(frame_index=states.frame_index - lag), on=["episode_index", "frame_index"])
        a, s = m[a_cols].to_numpy(), m[s_cols].to_numpy()
        g = m.episode_index.to_numpy()
        sums = [pd.DataFrame(v).groupby(g).sum().reindex(episodes, fill_value=0).to_numpy()
                for v in (a, s, a * a, s * s, a * s)]
        n = pd.Series(g).value_counts().reindex(episodes, fill_value=0).to_numpy()[:, None]
        ma, ms = sums[0] / n, sums[1] / n
        va, vs = sums[2] / n - ma**2, sums[3] / n - ms**2
        moving.append((n >= MIN_PAIRS) & (va > STILL * (ma**2 + 1)) & (vs > STILL * (ms**2 + 1)))
        with np.errstate(invalid="ignore", divide="ignore"):
            r.append(np.abs(sums[4] / n - ma * ms) / np.sqrt(va * vs))
    r, moving = np.stack(r, 1), np.stack(moving, 1)  # (episodes, lags, D)
    best, ok = np.where(moving, r, -1).argmax(1), moving.all(1)
    return np.stack([np.bincount(best[ok[:, d], d], minlength=max_lag + 1) for d in range(dims)])


def pandas_frame_stats(datasets: Path, bins: int, max_lag: int) -> dict[str, list[dict]]:
    """The per-frame aggregates the plain way: each dataset's frames in one DataFrame."""
    out = {name: [] for name in ("histograms", "joint_limits", "action_lag", "frame_rate", "gaps")}
    for root in sorted(p.parents[1] for p in datasets.glob("*/meta/info.json")):
        info = json.loads((root / "meta" / "info.json").read_text())
        cfg, fps, name = load_robot(info["robot_type"]), float(info["fps"]), root.name
        joints = info["features"]["observation.state"]["names"]
        frames = pd.concat([pd.read_parquet(f) for f in sorted((root / "data").glob("*/*.parquet"))], ignore_index=True)
        state = np.stack(frames.pop("observation.state").to_numpy()).astype(np.float64)
        action = np.stack(frames.pop("action").to_numpy()).astype(np.float64)
        for d, j in enumerate(joints):
            lo, hi = cfg.joint_limits[j]
            below, above = int((state[:, d] < lo).sum()), int((state[:, d] > hi).sum())
            out["histograms"].append({"dataset": name, "joint": j, "edges_from": "limits", "lower": lo, "upper": hi,
                                      "counts": np.histogram(state[:, d], np.linspace(lo, hi, bins + 1))[0].tolist()})
            out["joint_limits"].append({"dataset": name, "joint": j, "lower_limit": lo, "upper_limit": hi,
                                        "samples": len(frames), "below": below, "above": above,
                                        "out_of_range_fraction": (below + above) / len(frames)})
        votes = best_lag_votes(frames, state, action, max_lag)
        for d, j in enumerate(joints):
            lags = np.repeat(np.arange(max_lag + 1), votes[d])
            med = float(np.median(lags)) if len(lags) else None
            out["action_lag"].append({"dataset": name, "joint": j, "episodes": len(lags), "lag_frames": med,
                                      "lag_s": None if med is None else med / fps, "votes": votes[d].tolist()})
        frames["timestamp"] = frames.timestamp.astype(np.float64)
        g = frames.groupby("episode_index")
        step, jump = g.timestamp.diff(), g.frame_index.diff()
        per = pd.DataFrame({"gap": step > 1.5 / fps, "break": jump.notna() & (jump != 1), "step": step,
                            "jitter": (step - 1 / fps).abs()}).groupby(frames.episode_index).agg(
            gaps=("gap", "sum"), breaks=("break", "sum"), max_step_s=("step", "max"), max_jitter=("jitter", "max"))
        ends = g.agg(frames=("frame_index", "size"), first_frame=("frame_index", "first"),
                     last_frame=("frame_index", "last"), first_ts=("timestamp", "first"), last_ts=("timestamp", "last"))
        per = per.join(ends).fillna({"max_step_s": 0.0, "max_jitter": 0.0})
        per["noncontiguous"] = (per.breaks > 0) | (per.first_frame != 0)
        flagged = per[(per.gaps > 0) | per.noncontiguous]
        out["gaps"] += [{"dataset": name, "episode_index": int(e), "frames": int(r.frames),
                         "first_frame": int(r.first_frame), "last_frame": int(r.last_frame), "gaps": int(r.gaps),
                         "max_step_s": float(r.max_step_s), "noncontiguous": bool(r.noncontiguous)}
                        for e, r in flagged.iterrows()]
        out["frame_rate"].append({
            "dataset": name, "fps": fps, "episodes": len(per), "frames": len(frames),
            "measured_fps": float((per.frames - 1).sum() / (per.last_ts - per.first_ts).sum()),
            "max_jitter_s": float(per.max_jitter.max()), "gaps": int(per.gaps.sum()),
            "max_step_s": float(per.max_step_s.max()), "episodes_with_gaps": int((per.gaps > 0).sum()),
            "noncontiguous_episodes": int(per.noncontiguous.sum())})
    return out


# ---- one measured implementation per process --------------------------------------------------------------------

def run_one(which: str, out: Path, datasets: Path, bins: int, max_lag: int) -> dict:
    """Runs one implementation in this process: {"seconds", "sections": {name: rows}}."""
    t0 = time.perf_counter()
    if which == "duckdb-report":
        from pipeline.catalog import connect
        from pipeline.stats_report import report

        sections = {k: t.to_pylist() for k, t in report(connect(out)).items() if k in REPORT_SECTIONS}
    elif which == "pandas-report":
        sections = {k: df.to_dict("records") for k, df in pandas_report(out).items()}
    elif which == "dask-frames":
        from pipeline.frame_stats import frame_stats

        sections = {k: t.to_pylist() for k, t in frame_stats(datasets, bins=bins, max_lag=max_lag).items()}
    else:
        sections = pandas_frame_stats(datasets, bins, max_lag)
    return {"seconds": time.perf_counter() - t0, "sections": sections}


def measured(which: str, a: argparse.Namespace) -> dict:
    """Runs `which` in a child process, sampling the RSS and CPU time of its process tree (client and Dask workers)
    every 50 ms: CPU seconds tell more than wall seconds when other work shares the machine."""
    result_path = a.work / f"{which}.json"
    child = subprocess.Popen([sys.executable, __file__, "--only", which, "--frames", str(a.frames),
                              "--work", str(a.work), "--bins", str(a.bins), "--max-lag", str(a.max_lag)])
    proc, peak, cpu = psutil.Process(child.pid), {"tree": 0, "main": 0, "workers": 0}, {}

    def sample() -> None:
        while child.poll() is None:
            try:
                tree = [proc, *proc.children(recursive=True)]
                rss = [p.memory_info().rss for p in tree]
                cpu.update({p.pid: sum(p.cpu_times()[:2]) for p in tree})
                peak.update(tree=max(peak["tree"], sum(rss)), main=max(peak["main"], rss[0]),
                            workers=max(peak["workers"], sum(rss[1:])))
            except psutil.Error:  # a process ended between listing and reading it
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    child.wait()
    sampler.join()
    if child.returncode:
        raise SystemExit(f"{which} failed with exit code {child.returncode}")
    return {**json.loads(result_path.read_text()), **peak, "cpu_s": sum(cpu.values())}


def missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def close(a, b, rel: float) -> bool:
    """Equal: floats within `rel` (DuckDB interpolates float32 samples in float32), None and NaN alike (no value),
    anything else (dates, strings, integers) as text."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, rel) for x, y in zip(a, b))
    if missing(a) or missing(b):
        return missing(a) and missing(b)
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)
    return str(a) == str(b)


def gib(n: int) -> str:
    return f"{n / 2**30:5.2f} GiB"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=10_000_000, help="shard frames in all (the catalog holds more)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/vla-bench-stats"))
    ap.add_argument("--bins", type=int, default=20)
    ap.add_argument("--max-lag", type=int, default=10)
    ap.add_argument("--only", help=argparse.SUPPRESS)  # internal: run one implementation, write work/<name>.json
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    a.work.mkdir(parents=True, exist_ok=True)
    out, datasets = build(a.work, a.frames)
    if a.only:
        result = run_one(a.only, out, datasets, a.bins, a.max_lag)
        (a.work / f"{a.only}.json").write_text(json.dumps(result, default=str))
        return
    runs, load = {}, os.getloadavg()[1]
    for which in ("duckdb-report", "pandas-report", "dask-frames", "pandas-frames"):
        print(f"running {which} ...", file=sys.stderr, flush=True)
        runs[which] = measured(which, a)
    shard_frames = sum(json.loads(p.read_text())["total_frames"] for p in datasets.glob("*/meta/info.json"))
    catalog_frames = sum(pq.read_metadata(p).num_rows for p in (out / "episodes").glob("*/frames.parquet"))
    files = len(list(datasets.glob("*/data/*/*.parquet")))
    print(f"{shard_frames:,} shard frames in {files} data files ({', '.join(ROBOTS)}); catalog of "
          f"{len(list((out / 'episodes').iterdir())):,} recordings, {catalog_frames:,} frames; {os.cpu_count()} cores, "
          f"load average {load:.1f} before and {os.getloadavg()[1]:.1f} after (5 min)")
    for title, ours, theirs, rel in (
            ("standard report (" + ", ".join(REPORT_SECTIONS) + ")", "duckdb-report", "pandas-report", 1e-5),
            ("per-frame aggregates (histograms, joint limits, action lag, frame rate, gaps)", "dask-frames",
             "pandas-frames", 1e-9)):
        o, t = runs[ours], runs[theirs]
        equal = close(o["sections"], t["sections"], rel)
        print(title)
        for name, r in ((ours, o), (theirs, t)):
            workers = f" (client {gib(r['main'])}, workers {gib(r['workers'])})" if name == "dask-frames" else ""
            print(f"  {name:14s} {r['seconds']:7.1f} s ({r['cpu_s']:6.1f} CPU s)   peak RSS {gib(r['tree'])}{workers}")
        print(f"  ratio {theirs} / {ours}: {t['seconds'] / o['seconds']:.2f}x time, {t['cpu_s'] / o['cpu_s']:.2f}x CPU "
              f"time, {t['tree'] / o['tree']:.2f}x peak memory; same numbers: {'yes' if equal else 'NO'}")
        if not equal:
            raise SystemExit(f"{ours} and {theirs} disagree: see {a.work}/{ours}.json and {theirs}.json")


if __name__ == "__main__":
    main()
