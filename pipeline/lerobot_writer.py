"""Writes the non-video parts of a LeRobot v3.0 dataset (data parquet, meta/*, stats) into a staging folder.

Video files come from pipeline.export_video; this module places them and records where each episode lies."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.export_plan import ExportEpisode, SourceEpisode
from pipeline.export_video import EpisodeVideo
from pipeline.lerobot_validate import validate_dataset
from pipeline.stats import Moments, StreamingQuantiles
from schemas import lerobot as lr


def source_signals(src: SourceEpisode) -> tuple[np.ndarray, np.ndarray]:
    """(state, action) of every frame of a catalog episode."""
    table = pq.read_table(src.frames_uri, columns=["observation.state", "action"])
    return tuple(np.stack(table[c].to_numpy(zero_copy_only=False)).astype(np.float32) for c in table.column_names)


def gripper_openness(signals: tuple[np.ndarray, np.ndarray], robot) -> tuple[np.ndarray, np.ndarray]:
    """(state, action) with every gripper as openness, 0 = closed ... 1 = open, whatever the platform's raw units
    and polarity (AgiBot state mm and action 1 = closed, Galaxea 0..100, ALOHA and RoboTwin already 0..1): one
    convention across robots, so that effector.position means the same in every dataset (GRIPPER_CONVENTION)."""
    state, action = (x.copy() for x in signals)
    for g in robot.grippers.values():
        state[:, g.state_index] = g.openness(state[:, g.state_index])
        action[:, g.state_index] = g.action_openness(action[:, g.state_index])
    return state, action


GRIPPER_CONVENTION = {"unit": "openness", "closed": 0.0, "open": 1.0,
                      "note": "every gripper in observation.state and action, converted from the robot's raw values"}


def episode_rows(src: SourceEpisode, signals: tuple[np.ndarray, np.ndarray], ex: ExportEpisode, first_index: int,
                 task_index: int, subtask_index: dict[str, int] | None) -> dict[str, np.ndarray]:
    """One exported episode's frames: state and action of the chosen source frames, re-timed at a constant
    frame rate (timestamp = frame_index / fps, so static frames removed upstream leave no gap)."""
    state, action = signals
    rows = np.concatenate([np.arange(a, b) for a, b in ex.spans])
    n = len(rows)
    out = {
        "observation.state": state[rows], "action": action[rows],
        "timestamp": (np.arange(n) / src.fps).astype(np.float32), "frame_index": np.arange(n, dtype=np.int64),
        "episode_index": np.full(n, ex.index, np.int64), "index": np.arange(first_index, first_index + n, dtype=np.int64),
        "task_index": np.full(n, task_index, np.int64),
    }
    if subtask_index is not None:
        out["subtask_index"] = np.concatenate([np.full(b - a, subtask_index[s], np.int64)
                                               for (a, b), s in zip(ex.spans, ex.subtasks)])
    return out


def to_table(rows: dict[str, np.ndarray], schema: pa.Schema) -> pa.Table:
    cols = []
    for f in schema:
        v = rows[f.name]
        cols.append(pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), v.shape[1]) if v.ndim == 2 else pa.array(v))
    return pa.Table.from_arrays(cols, schema=schema)


class DataFiles:
    """data/chunk-XXX/file-YYY.parquet, one row group per episode, a new file once one reaches the size limit
    (an episode never spans two files)."""

    def __init__(self, root: Path, schema: pa.Schema, max_bytes: int):
        self.root, self.schema, self.max_bytes = root, schema, max_bytes
        self.number, self.writer, self.path = -1, None, None

    def add(self, table: pa.Table) -> tuple[int, int]:
        if self.writer is None or self.path.stat().st_size + table.nbytes >= self.max_bytes:
            self.close()
            self.number += 1
            chunk, file = lr.chunk_file(self.number)
            self.path = self.root / lr.DATA_PATH.format(chunk_index=chunk, file_index=file)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.path, self.schema, compression="snappy")
        self.writer.write_table(table, row_group_size=max(1, table.num_rows))
        return lr.chunk_file(self.number)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def place_videos(root: Path, key: str, batch_files: list[list[str]], batch_results: list[list[EpisodeVideo]],
                 fps: int) -> dict[int, dict]:
    """Moves each batch's files to consecutive file numbers of the key; returns per episode its video columns."""
    columns, number = {}, 0
    for files, results in zip(batch_files, batch_results):
        first = number
        for f in files:
            chunk, file = lr.chunk_file(number)
            dest = root / lr.VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if storage.is_remote(f):  # encoded on another node, handed over through object storage
                storage.download(f, dest)
            else:
                shutil.move(f, dest)
            number += 1
        for r in results:
            chunk, file = lr.chunk_file(first + r.part)
            columns[r.episode_index] = {
                f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                f"videos/{key}/from_timestamp": r.from_frame / fps,
                f"videos/{key}/to_timestamp": (r.from_frame + r.length) / fps, "stats": r.stats}
    return columns


def stats_columns(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, list]:
    return {f"stats/{feature}/{k}": v.tolist() for feature, s in stats.items() for k, v in s.items()}


def aggregate(per_episode: list[dict[str, np.ndarray]], frames: StreamingQuantiles | None) -> dict[str, list]:
    """stats.json entry of one feature: exact merged moments; quantiles from all frames when given (numeric
    features), else the count-weighted mean of episode quantiles (lerobot's own rule, for images)."""
    moments = None
    for s in per_episode:
        n = int(s["count"][0])
        m = Moments(n, s["mean"].ravel(), s["std"].ravel() ** 2 * n, s["min"].ravel(), s["max"].ravel())
        moments = m if moments is None else moments.merge(m)
    shape = per_episode[0]["mean"].shape
    out = {"min": moments.min, "max": moments.max, "mean": moments.mean, "std": moments.std}
    out = {k: v.reshape(shape) for k, v in out.items()}
    out["count"] = np.array([moments.count])
    for q in lr.QUANTILES:
        key = f"q{int(round(q * 100)):02d}"
        if frames is not None:
            out[key] = frames.quantile(q).reshape(shape)
        else:
            w = np.array([s["count"][0] for s in per_episode], np.float64)
            out[key] = np.tensordot(w / w.sum(), np.stack([s[key] for s in per_episode]), axes=1)
    return {k: v.tolist() for k, v in out.items()}


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))


INFO = "meta/info.json"


def publish(staging: Path, final: str | Path, what: str) -> None:
    """Validates a finished staging folder, then swaps it into place by rename; on any problem nothing is
    published and an existing dataset at `final` stays as it was. Object storage has no rename: there the old
    dataset is retired by deleting its meta/info.json first (readers then find no dataset rather than a mix),
    the new files go up, and the new info.json, written last, commits them."""
    problems = validate_dataset(staging)
    if problems:
        raise RuntimeError(f"{what} failed validation, nothing published:\n- " + "\n- ".join(problems))
    if storage.is_remote(final):
        storage.delete(storage.join(final, INFO))
        storage.delete(final)
        storage.upload_tree(staging, final, skip=(INFO,))
        storage.write_bytes(storage.join(final, INFO), (staging / INFO).read_bytes())
        return
    final = Path(final)
    old = final.parent / f".{final.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.rename(final, old)
    os.rename(staging, final)
    shutil.rmtree(old, ignore_errors=True)
