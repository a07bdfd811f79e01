"""`vla-data validate DATASET`: checks a LeRobot v3.0 dataset against the invariants its loaders assume.

lerobot's loader retries another index when a frame fails to decode, so a broken dataset can train silently
on the wrong frames; these checks fail loudly instead."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq

from schemas import lerobot as lr

TOLERANCE_S = 1e-4


def _video_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return s.frames or sum(1 for _ in c.demux(s) if _.size)


def validate_dataset(root: str | Path) -> list[str]:
    root = Path(root)
    info_path = root / "meta" / "info.json"
    if not info_path.exists():
        return [f"{info_path} is missing: not a LeRobot dataset (or an unfinished export)"]
    info = json.loads(info_path.read_text())
    if info.get("codebase_version") == "v2.1":
        return _validate_v21(root, info)
    problems = []
    if info.get("codebase_version") != lr.CODEBASE_VERSION:
        problems.append(f"codebase_version is {info.get('codebase_version')!r}, expected {lr.CODEBASE_VERSION}")
    fps = info["fps"]
    tasks_path = root / "meta" / "tasks.parquet"
    if not tasks_path.exists():
        return problems + ["meta/tasks.parquet is missing"]
    tasks = pq.read_table(tasks_path)
    if b"pandas" not in (tasks.schema.metadata or {}):
        problems.append("meta/tasks.parquet has no pandas index metadata: lerobot would load every task as 0")
    if tasks.column("task_index").to_pylist() != list(range(tasks.num_rows)):
        problems.append("meta/tasks.parquet: task_index is not 0..T-1 in row order")
    episodes = pq.read_table(sorted((root / "meta" / "episodes").glob("*/*.parquet"))).to_pylist() \
        if (root / "meta" / "episodes").is_dir() else []
    if [e["episode_index"] for e in episodes] != list(range(info["total_episodes"])):
        problems.append(f"meta/episodes: episode_index is not 0..{info['total_episodes'] - 1} in row order")
    data_files = sorted((root / "data").glob("*/*.parquet"))
    if not data_files:
        return problems + ["no data files"]
    data = pq.read_table(data_files, columns=["timestamp", "frame_index", "episode_index", "index", "task_index"])
    index = data["index"].to_numpy()
    if not np.array_equal(index, np.arange(len(index))):
        problems.append("data: `index` does not equal the row position over all data files")
    if len(index) != info["total_frames"]:
        problems.append(f"data has {len(index)} frames, info.json says {info['total_frames']}")
    ts, fi = data["timestamp"].to_numpy(), data["frame_index"].to_numpy()
    off = np.abs(ts.astype(np.float64) - fi / fps)
    if off.max(initial=0) > TOLERANCE_S:
        bad = int(np.argmax(off))
        problems.append(f"data: timestamp != frame_index / fps at index {bad} (off by {off[bad]:.6f} s)")
    if data["task_index"].to_numpy().max(initial=0) >= tasks.num_rows:
        problems.append("data: task_index beyond meta/tasks.parquet")
    ep_col = data["episode_index"].to_numpy()
    video_keys = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    video_end: dict[Path, float] = {}
    for e in episodes:
        a, b = e["dataset_from_index"], e["dataset_to_index"]
        if b - a != e["length"] or not (ep_col[a:b] == e["episode_index"]).all() or (b < len(ep_col) and ep_col[b] == e["episode_index"]):
            problems.append(f"episode {e['episode_index']}: dataset_from/to_index do not match its data rows")
        for key in video_keys:
            path = root / info["video_path"].format(video_key=key, chunk_index=e[f"videos/{key}/chunk_index"],
                                                    file_index=e[f"videos/{key}/file_index"])
            if not path.exists():
                problems.append(f"episode {e['episode_index']}: video {path.relative_to(root)} is missing")
                continue
            span = e[f"videos/{key}/to_timestamp"] - e[f"videos/{key}/from_timestamp"]
            if abs(span - e["length"] / fps) > TOLERANCE_S:
                problems.append(f"episode {e['episode_index']} {key}: video span {span:.4f} s != length/fps")
            video_end[path] = max(video_end.get(path, 0.0), e[f"videos/{key}/to_timestamp"])
    for path, end in sorted(video_end.items()):
        try:
            frames = _video_frames(path)
        except av.error.FFmpegError as err:
            problems.append(f"{path.relative_to(root)} does not open: {err}")
            continue
        if frames < round(end * fps):
            problems.append(f"{path.relative_to(root)} has {frames} frames, episodes need {round(end * fps)}")
    return problems


def _validate_v21(root: Path, info: dict) -> list[str]:
    """The per-episode layout: every episode's parquet and videos exist and agree, and timestamps step by 1/fps
    (the v2.1 loader rejects the whole dataset at load time otherwise)."""
    problems, fps, index = [], info["fps"], 0
    episodes = [json.loads(line) for line in (root / "meta" / "episodes.jsonl").read_text().splitlines()]
    tasks = [json.loads(line) for line in (root / "meta" / "tasks.jsonl").read_text().splitlines()]
    if [e["episode_index"] for e in episodes] != list(range(info["total_episodes"])):
        problems.append(f"meta/episodes.jsonl: episode_index is not 0..{info['total_episodes'] - 1}")
    if [t["task_index"] for t in tasks] != list(range(len(tasks))):
        problems.append("meta/tasks.jsonl: task_index is not 0..T-1")
    video_keys = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    for e in episodes:
        ep, chunk = e["episode_index"], e["episode_index"] // info["chunks_size"]
        path = root / info["data_path"].format(episode_chunk=chunk, episode_index=ep)
        if not path.exists():
            problems.append(f"episode {ep}: {path.relative_to(root)} is missing")
            continue
        t = pq.read_table(path, columns=["timestamp", "frame_index", "episode_index", "index"])
        if t.num_rows != e["length"] or set(t["episode_index"].to_pylist()) != {ep}:
            problems.append(f"episode {ep}: {path.relative_to(root)} rows do not match episodes.jsonl")
        if not np.array_equal(t["index"].to_numpy(), np.arange(index, index + t.num_rows)):
            problems.append(f"episode {ep}: `index` is not contiguous across episodes")
        if np.abs(np.diff(t["timestamp"].to_numpy().astype(np.float64)) - 1 / fps).max(initial=0) > TOLERANCE_S:
            problems.append(f"episode {ep}: timestamps do not step by 1/fps")
        index += t.num_rows
        for key in video_keys:
            video = root / info["video_path"].format(episode_chunk=chunk, video_key=key, episode_index=ep)
            if not video.exists():
                problems.append(f"episode {ep}: {video.relative_to(root)} is missing")
            elif _video_frames(video) < e["length"]:
                problems.append(f"episode {ep}: {video.relative_to(root)} has fewer frames than the episode")
    if index != info["total_frames"]:
        problems.append(f"data has {index} frames, info.json says {info['total_frames']}")
    return problems
