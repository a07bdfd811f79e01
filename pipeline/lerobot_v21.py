"""`--format v2.1`: rewrites a finished v3.0 export whose episodes each have their own video files into the older
per-episode layout that openpi and LingBot-VLA (both pinning lerobot 0cf8648) read: one parquet and one mp4
per camera per episode, meta/episodes.jsonl, tasks.jsonl, episodes_stats.jsonl."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from schemas import lerobot as lr

V21 = "v2.1"
V21_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V21_STATS = ("min", "max", "mean", "std", "count")  # v2.1 episode stats carry no quantiles


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def to_v21(root: Path) -> None:
    info = json.loads((root / "meta" / "info.json").read_text())
    episodes = pq.read_table(sorted((root / "meta" / "episodes").glob("*/*.parquet"))).to_pylist()
    v3_data = sorted((root / "data").glob("*/file-*.parquet"))
    data = pq.read_table(v3_data)
    metadata = pq.read_schema(v3_data[0]).metadata  # the `huggingface` features ("Sequence" style)
    video_keys = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    stats_rows = []
    for e in episodes:
        ep, chunk = e["episode_index"], e["episode_index"] // lr.CHUNKS_SIZE
        path = root / V21_DATA_PATH.format(episode_chunk=chunk, episode_index=ep)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(data.slice(e["dataset_from_index"], e["length"]).replace_schema_metadata(metadata), path)
        for key in video_keys:
            if e[f"videos/{key}/from_timestamp"] != 0:
                raise ValueError(f"episode {ep} does not start its own {key} file: export it with one file per episode")
            src = root / lr.VIDEO_PATH.format(video_key=key, chunk_index=e[f"videos/{key}/chunk_index"],
                                              file_index=e[f"videos/{key}/file_index"])
            dst = root / V21_VIDEO_PATH.format(episode_chunk=chunk, video_key=key, episode_index=ep)
            dst.parent.mkdir(parents=True, exist_ok=True)
            src.rename(dst)
        stats = {}
        for col, value in e.items():
            if col.startswith("stats/"):
                _, feature, stat = col.split("/")
                if stat in V21_STATS:
                    stats.setdefault(feature, {})[stat] = value
        stats_rows.append({"episode_index": ep, "stats": stats})
    for f in v3_data:
        f.unlink()
    for key in video_keys:
        shutil.rmtree(root / "videos" / key)
    shutil.rmtree(root / "meta" / "episodes")
    meta = root / "meta"
    _jsonl(meta / "episodes.jsonl", [{"episode_index": e["episode_index"], "tasks": e["tasks"], "length": e["length"]}
                                     for e in episodes])
    _jsonl(meta / "episodes_stats.jsonl", stats_rows)
    for name, column, text in (("tasks", "task_index", "task"), ("subtasks", "subtask_index", "subtask")):
        if (meta / f"{name}.parquet").exists():
            table = pq.read_table(meta / f"{name}.parquet")
            _jsonl(meta / f"{name}.jsonl", [{column: i, text: t} for i, t in zip(table[column].to_pylist(), table[text].to_pylist())])
            (meta / f"{name}.parquet").unlink()
    chunks = (len(episodes) - 1) // lr.CHUNKS_SIZE + 1
    info = {k: v for k, v in info.items() if k not in ("data_files_size_in_mb", "video_files_size_in_mb")}
    info |= {"codebase_version": V21, "total_chunks": chunks, "total_videos": len(episodes) * len(video_keys),
             "data_path": V21_DATA_PATH, "video_path": V21_VIDEO_PATH}
    (meta / "info.json").write_text(json.dumps(info, indent=2))  # last
