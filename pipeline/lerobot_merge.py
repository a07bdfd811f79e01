"""`vla-data merge DS... OUT`: concatenates LeRobot v3.0 datasets with the same features into one.

Episodes, frame indices, tasks (and subtasks) are re-indexed; video files are copied, never re-encoded, so an
episode keeps its from/to timestamps and only its file number changes. Published like an export: staging
folder, info.json last, validated, renamed into place."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.lerobot_writer import DataFiles, aggregate, publish, write_json
from pipeline.stats import StreamingQuantiles
from schemas import lerobot as lr

ENCODER_KEYS = {"video.g", "video.crf", "video.preset", "video.fast_decode", "video.video_backend", "video.extra_options"}


def _comparable(features: dict) -> dict:
    """Features without encoder settings, which may differ between datasets whose streams still concatenate."""
    return {k: ({**f, "info": {i: v for i, v in f["info"].items() if i not in ENCODER_KEYS}} if "info" in f else f)
            for k, f in features.items()}


def _table_index(path: Path, column: str) -> list[str]:
    return pq.read_table(path).column(column).to_pylist() if path.exists() else []


def merge_datasets(inputs: list[str | Path], out: str | Path) -> dict:
    inputs = [Path(p) for p in inputs]
    if len(inputs) < 2:
        raise ValueError("merge needs at least two datasets")
    infos = [json.loads((p / "meta" / "info.json").read_text()) for p in inputs]
    for p, info in zip(inputs[1:], infos[1:]):
        for key in ("fps", "robot_type", "codebase_version"):
            if info[key] != infos[0][key]:
                raise ValueError(f"{p}: {key} {info[key]!r} differs from {inputs[0]}'s {infos[0][key]!r}")
        if _comparable(info["features"]) != _comparable(infos[0]["features"]):
            raise ValueError(f"{p}: features differ from {inputs[0]}'s; only datasets with the same features merge")
    features = infos[0]["features"]
    video_keys = [k for k, f in features.items() if f["dtype"] == "video"]
    has_subtasks = "subtask_index" in features
    tasks = list(dict.fromkeys(t for p in inputs for t in _table_index(p / "meta" / "tasks.parquet", "task")))
    subtasks = list(dict.fromkeys(t for p in inputs for t in _table_index(p / "meta" / "subtasks.parquet", "subtask")))

    # assembled next to a local output (same filesystem: publish renames), else in a local temporary folder
    staging = (Path(tempfile.mkdtemp(prefix="vla-merge-")) if storage.is_remote(out)
               else Path(out).parent) / f".{Path(str(out).rstrip('/')).name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    schema = lr.data_schema(features)
    data = DataFiles(staging, schema, int(infos[0]["data_files_size_in_mb"] * 2**20))
    video_count = {k: 0 for k in video_keys}
    rows, numeric, ep_offset, frame_offset = [], {"observation.state": StreamingQuantiles(), "action": StreamingQuantiles()}, 0, 0
    for p, info in zip(inputs, infos):
        task_map = np.array([tasks.index(t) for t in _table_index(p / "meta" / "tasks.parquet", "task")], np.int64)
        sub_map = np.array([subtasks.index(t) for t in _table_index(p / "meta" / "subtasks.parquet", "subtask")], np.int64)
        new_file = {}
        for key in video_keys:  # copy this dataset's video files under the next free file numbers
            for src in sorted((p / "videos" / key).glob("*/*.mp4")):
                chunk, file = lr.chunk_file(video_count[key])
                dest = staging / lr.VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
                new_file[(key, int(src.parent.name.split("-")[1]), int(src.stem.split("-")[1]))] = (chunk, file)
                video_count[key] += 1
        episodes = pq.read_table(sorted((p / "meta" / "episodes").glob("*/*.parquet"))).to_pylist()
        table = pq.read_table(sorted((p / "data").glob("*/*.parquet")), schema=schema)
        for e in episodes:
            part = table.slice(e["dataset_from_index"], e["length"])
            cols = {name: part[name] for name in schema.names}
            cols["episode_index"] = pa.array(np.full(e["length"], e["episode_index"] + ep_offset, np.int64))
            cols["index"] = pa.array(np.arange(e["length"], dtype=np.int64) + e["dataset_from_index"] + frame_offset)
            cols["task_index"] = pa.array(task_map[part["task_index"].to_numpy()])
            if has_subtasks:
                cols["subtask_index"] = pa.array(sub_map[part["subtask_index"].to_numpy()])
            chunk, file = data.add(pa.Table.from_pydict(cols, schema=schema))
            row = {**e, "episode_index": e["episode_index"] + ep_offset, "data/chunk_index": chunk,
                   "data/file_index": file, "dataset_from_index": e["dataset_from_index"] + frame_offset,
                   "dataset_to_index": e["dataset_to_index"] + frame_offset,
                   "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            for key in video_keys:
                row[f"videos/{key}/chunk_index"], row[f"videos/{key}/file_index"] = new_file[
                    (key, e[f"videos/{key}/chunk_index"], e[f"videos/{key}/file_index"])]
            rows.append(row)
            for k in numeric:
                numeric[k].add(np.stack(part[k].to_numpy(zero_copy_only=False)))
        ep_offset += info["total_episodes"]
        frame_offset += info["total_frames"]
    data.close()

    def episode_stats(row: dict, feature: str) -> dict:
        prefix = f"stats/{feature}/"
        return {k[len(prefix):]: np.asarray(v) for k, v in row.items() if k.startswith(prefix)}

    stats_features = sorted({k.split("/")[1] for k in rows[0] if k.startswith("stats/")})
    stats = {f: aggregate([episode_stats(r, f) for r in rows], numeric.get(f))
             for f in stats_features}
    meta_path = staging / lr.EPISODES_PATH.format(chunk_index=0, file_index=0)
    meta_path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), meta_path)
    pq.write_table(lr.tasks_table(tasks), staging / "meta" / "tasks.parquet")
    if has_subtasks:
        pq.write_table(lr.tasks_table(subtasks, "subtask", "subtask_index"), staging / "meta" / "subtasks.parquet")
    write_json(staging / "meta" / "stats.json", stats)
    lingbot = inputs[0] / "meta" / "lingbot_robot_config.yaml"
    if lingbot.exists():
        shutil.copyfile(lingbot, staging / "meta" / "lingbot_robot_config.yaml")
    info = {**infos[0], "total_episodes": ep_offset, "total_frames": frame_offset, "total_tasks": len(tasks),
            "splits": {"train": f"0:{ep_offset}"}}
    write_json(staging / "meta" / "info.json", info)  # last
    publish(staging, out, "merged dataset")
    if storage.is_remote(out):
        shutil.rmtree(staging.parent, ignore_errors=True)
    return {"episodes": ep_offset, "frames": frame_offset, "tasks": len(tasks), "path": str(out)}


