"""Ray job: catalog -> one LeRobot v3.0 dataset per robot (plus the LingBot robot config), published atomically.

`vla-data export CATALOG OUT [--robot R] [--episode-unit clip|recording] [--codec av1|h264] [--size WxH]`
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray
import yaml
from tqdm import tqdm

from jobs.runtime import TaskPool, init_ray
from pipeline import storage
from pipeline.export_plan import DEFAULT_TEMPLATE, LABEL_SOURCES, batches, plan_export
from pipeline.export_video import encode_camera
from pipeline.lerobot_v21 import V21, to_v21
from pipeline.lerobot_validate import validate_dataset
from pipeline.lerobot_writer import (GRIPPER_CONVENTION, DataFiles, aggregate, episode_rows, gripper_openness,
                                     place_videos, publish, source_signals, stats_columns, to_table, write_json)
from pipeline.stats import StreamingQuantiles, feature_stats
from schemas import lerobot as lr
from schemas.robot import load_robot

log = logging.getLogger(__name__)
GOP, CRF = 2, 30  # lerobot's defaults: a keyframe every 2 frames keeps random access cheap
LINGBOT_CAMERAS = {"top": "camera_top", "left_wrist": "camera_wrist_left", "right_wrist": "camera_wrist_right"}


@dataclass
class ExportReport:
    robot: str
    path: Path | str  # a local folder, or an s3:// URI
    episodes: int
    frames: int
    tasks: int
    placeholder_episodes: int  # episodes whose task string is a placeholder
    video_files: int
    data_files: int
    by_source: dict[str, int]  # exported episodes per label source (pipeline.export_plan.LABEL_SOURCES)
    unusable_spans: int  # reviewed spans marked unusable, left out


def _slices(indices: list[int]) -> list[dict]:
    """[0,1,2,5,6] -> [{start: 0, end: 3}, {start: 5, end: 7}] (contiguous runs, LingBot origin_keys style)."""
    runs, start = [], indices[0]
    for a, b in zip(indices, indices[1:] + [None]):
        if b != a + 1:
            runs.append({"start": start, "end": a + 1})
            start = b
    return runs


def lingbot_robot_config(robot, video_keys: dict[str, str]) -> dict:
    """The LingBot-VLA robot config YAML that maps this dataset's columns into its unified joint groups."""
    def group(prefix: str, source: str, action: bool) -> list[dict]:
        out = []
        for name, idx in robot.joint_groups.items():
            entry = {"origin_keys": [{source: s} for s in _slices(idx)]}
            if action:
                entry["subtract_state"] = False
            out.append({f"{prefix}.{name}": entry})
        return out

    return {"states": group("observation.state", "observation.state", False),
            "actions": group("action", "action", True),
            "images": [{f"observation.images.{LINGBOT_CAMERAS[role]}": {"origin_keys": key}}
                       for role, key in video_keys.items()]}


def _video_shape(sources, camera: str, size: tuple[int, int] | None) -> tuple[int, int]:
    if size:
        return size[1], size[0]
    shapes = {(c["height"], c["width"]) for s in sources for c in s.cameras + s.depth_cameras if c["name"] == camera}
    if len(shapes) != 1:
        raise ValueError(f"camera {camera} has several sizes {sorted(shapes)}: pass --size WxH")
    return shapes.pop()


def encode_to(sources, camera: str, stem: str, *args) -> tuple[list[str], list]:
    """encode_camera into `stem`, a local path or an s3:// prefix. Remote parts are encoded node-locally and
    uploaded, so the driver can collect them from any node."""
    if not storage.is_remote(stem):
        return encode_camera(sources, camera, stem, *args)
    with tempfile.TemporaryDirectory(prefix="vla-export-") as tmp:
        files, placed = encode_camera(sources, camera, f"{tmp}/part", *args)
        uris = [f"{stem}{Path(f).name.removeprefix('part')}" for f in files]
        for f, uri in zip(files, uris):
            storage.write_bytes(uri, Path(f).read_bytes())
    return uris, placed


def export_robot(catalog: str, out: str | Path, robot_name: str, unit: str, codec: str, size: tuple[int, int] | None,
                 template: str, batch_frames: int, video_mb: float, data_mb: float, progress: bool,
                 fmt: str = lr.CODEBASE_VERSION, depth: bool = False) -> ExportReport | None:
    robot = load_robot(robot_name)
    planned = plan_export(catalog, robot_name, unit, template)
    sources = [s for s in planned if s.exports]
    if not sources:
        log.warning("no usable clips of robot %s in %s: nothing to export", robot_name, catalog)
        return None
    fps = int(round(sources[0].fps))
    if any(abs(s.fps - fps) > 1e-9 for s in sources):
        raise ValueError(f"{robot_name}: LeRobot needs one integer fps, the catalog has {sorted({s.fps for s in sources})}")
    final = storage.join(out, robot_name)
    # A remote output is assembled in a local folder; video parts meet there through a remote staging prefix.
    local = Path(tempfile.mkdtemp(prefix="vla-export-")) if storage.is_remote(out) else Path(out)
    staging = local / f".{robot_name}.staging"
    parts = storage.join(out, f".{robot_name}.staging", "tmp") if storage.is_remote(out) else str(staging / "tmp")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "tmp").mkdir(parents=True)
    cams = {c.name: c.role for c in robot.cameras}
    video_keys = {role: f"observation.images.{name}" for name, role in cams.items()}
    depths = sorted(set.intersection(*({c["name"] for c in s.depth_cameras} for s in sources))) if depth else []
    if depth and not depths:  # a dataset's features are the same for every episode: depth from all or none
        log.warning("%s: no depth camera that every recording has (ingest with --depth): exported without depth",
                    robot_name)
    videos_of = {**{c: False for c in cams}, **{d: True for d in depths}}  # camera -> is depth

    groups = batches(sources, batch_frames)
    init_ray()
    task = ray.remote(num_cpus=1)(encode_to)
    max_bytes = 0 if fmt == V21 else int(video_mb * 2**20)  # v2.1: every episode starts its own file
    calls = (((cam, b), (batch, cam, f"{parts}/{cam}-b{b:04d}", fps, lr.CODECS[codec], size, GOP, CRF, max_bytes,
                         is_depth)) for cam, is_depth in videos_of.items() for b, batch in enumerate(groups))
    videos = TaskPool(task, calls, f"export {robot_name} video", "batch", len(videos_of) * len(groups), progress)
    videos.poll()  # the encodes run while this driver writes the data files

    features = {"observation.state": lr.vector_feature(robot.state_names), "action": lr.vector_feature(robot.action_names)}
    for cam, is_depth in videos_of.items():
        h, w = _video_shape(sources, cam, size)
        features[f"observation.images.{cam}"] = (lr.depth_feature(h, w, fps, GOP) if is_depth
                                                 else lr.video_feature(h, w, fps, codec, GOP, CRF))
    features |= lr.DEFAULT_FEATURES
    if unit == "recording":
        features["subtask_index"] = {"dtype": "int64", "shape": [1], "names": None}
    schema = lr.data_schema(features)

    exports = [(s, ex) for s in sources for ex in s.exports]
    tasks = list(dict.fromkeys(ex.task for _, ex in exports))
    subtasks = list(dict.fromkeys(st for _, ex in exports for st in ex.subtasks)) if unit == "recording" else None
    task_index = {t: i for i, t in enumerate(tasks)}
    subtask_index = {t: i for i, t in enumerate(subtasks)} if subtasks is not None else None

    data = DataFiles(staging, schema, int(data_mb * 2**20))
    rows_meta, numeric = [], {"observation.state": StreamingQuantiles(), "action": StreamingQuantiles()}
    index = 0
    signals = None
    for src, ex in tqdm(exports, desc=f"export {robot_name} data", unit="episode", disable=not progress):
        if signals is None or signals[0] is not src:
            signals = (src, gripper_openness(source_signals(src), robot))
        rows = episode_rows(src, signals[1], ex, index, task_index[ex.task], subtask_index)
        chunk, file = data.add(to_table(rows, schema))
        stats = {k: feature_stats(rows[k], lr.QUANTILES) for k in schema.names}
        for k in numeric:
            numeric[k].add(rows[k])
        videos.poll()
        rows_meta.append({"episode_index": ex.index, "tasks": [ex.task], "length": ex.length,
                          "data/chunk_index": chunk, "data/file_index": file,
                          "dataset_from_index": index, "dataset_to_index": index + ex.length, "stats": stats})
        index += ex.length
    data.close()

    results = dict(videos.results())
    for cam in videos_of:
        key = f"observation.images.{cam}"
        files = [results[(cam, b)][0] for b in range(len(groups))]
        columns = place_videos(staging, key, files, [results[(cam, b)][1] for b in range(len(groups))], fps)
        for row in rows_meta:
            col = columns[row["episode_index"]]
            row["stats"][key] = col.pop("stats")
            row.update(col)
    shutil.rmtree(staging / "tmp")
    storage.delete(parts)

    feature_keys = [k for k in features if k in rows_meta[0]["stats"]]
    stats_json = {k: aggregate([r["stats"][k] for r in rows_meta], numeric.get(k)) for k in feature_keys}
    ep_rows = [{**{k: v for k, v in r.items() if k != "stats"}, **stats_columns(r.pop("stats")),
                "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0} for r in rows_meta]
    meta_path = staging / lr.EPISODES_PATH.format(chunk_index=0, file_index=0)
    meta_path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ep_rows), meta_path)
    pq.write_table(lr.tasks_table(tasks), staging / "meta" / "tasks.parquet")
    if subtasks is not None:
        pq.write_table(lr.tasks_table(subtasks, "subtask", "subtask_index"), staging / "meta" / "subtasks.parquet")
    write_json(staging / "meta" / "stats.json", stats_json)
    (staging / "meta" / "lingbot_robot_config.yaml").write_text(
        yaml.safe_dump(lingbot_robot_config(robot, video_keys), sort_keys=False))
    placeholders = sum(ex.placeholder for _, ex in exports)
    by_source = {k: sum(len(s.exports) for s in sources if s.labels == k) for k in LABEL_SOURCES}
    unusable = sum(s.unusable for s in planned)
    report = {"robot": robot_name, "episode_unit": unit, "episodes": len(exports), "frames": index,
              "tasks": len(tasks), "placeholder_task_episodes": placeholders, "episodes_by_source": by_source,
              "unusable_spans_left_out": unusable, "codec": codec, "size": list(size) if size else None,
              "source_episodes": len(sources)}
    write_json(staging / "meta" / "export_report.json", report)
    info = {
        "codebase_version": lr.CODEBASE_VERSION, "robot_type": robot_name, "total_episodes": len(exports),
        "total_frames": index, "total_tasks": len(tasks), "chunks_size": lr.CHUNKS_SIZE,
        "data_files_size_in_mb": data_mb, "video_files_size_in_mb": video_mb, "fps": fps,
        "splits": {"train": f"0:{len(exports)}"}, "data_path": lr.DATA_PATH, "video_path": lr.VIDEO_PATH,
        "features": features,
        "gripper_convention": {**GRIPPER_CONVENTION, "joints": [robot.state_names[g.state_index]
                                                               for g in robot.grippers.values()]},
    }
    write_json(staging / "meta" / "info.json", info)  # last: a folder without info.json is not a dataset
    if fmt == V21:
        problems = validate_dataset(staging)  # check the v3.0 form before rewriting it
        if problems:
            raise RuntimeError(f"export of {robot_name} failed validation, nothing published:\n- " + "\n- ".join(problems))
        to_v21(staging)
    publish(staging, final, f"export of {robot_name}")
    if storage.is_remote(out):
        shutil.rmtree(local)
    files = storage.list_files(final)
    return ExportReport(robot_name, final if storage.is_remote(final) else Path(final), len(exports), index,
                        len(tasks), placeholders, sum(f.startswith("videos/") and f.endswith(".mp4") for f in files),
                        sum(f.startswith("data/") and f.endswith(".parquet") for f in files), by_source, unusable)


def run_export(catalog: str | Path, out: str | Path, robot: str | None = None, unit: str = "clip",
               codec: str = "av1", size: tuple[int, int] | None = None, template: str = DEFAULT_TEMPLATE,
               batch_frames: int = 20_000, video_mb: float = lr.VIDEO_FILES_SIZE_IN_MB,
               data_mb: float = lr.DATA_FILES_SIZE_IN_MB, progress: bool = True,
               fmt: str = lr.CODEBASE_VERSION, depth: bool = False) -> list[ExportReport]:
    catalog, out = storage.absolute(catalog), storage.absolute(out)
    if codec not in lr.CODECS:
        raise ValueError(f"codec must be one of {sorted(lr.CODECS)}, got {codec!r}")
    if fmt not in (lr.CODEBASE_VERSION, V21):
        raise ValueError(f"format must be {lr.CODEBASE_VERSION} or {V21}, got {fmt!r}")
    episodes = pq.read_table(storage.join(catalog, "catalog", "episodes.parquet"), columns=["robot"])
    robots = sorted(set(episodes["robot"].to_pylist()))
    if robot:
        if robot not in robots:
            raise ValueError(f"robot {robot!r} is not in the catalog (it has {robots})")
        robots = [robot]
    reports = [export_robot(catalog, out, r, unit, codec, size, template, batch_frames, video_mb, data_mb, progress, fmt,
                            depth) for r in robots]
    return [r for r in reports if r]


def run_norm_stats(datasets: list[str | Path], relative: set[str] = frozenset(), address: str | None = None) -> dict:
    """`vla-data norm-stats`: one Ray task per data file, merged across files and datasets by frame count."""
    from pipeline.norm_stats import file_partials, groups_of, merge_partials, to_json

    jobs = []
    for ds in map(Path, datasets):
        groups = groups_of(ds, relative)
        files = sorted((ds / "data").glob("*/*.parquet"))
        if not files:
            raise FileNotFoundError(f"{ds} has no data/*/*.parquet: not a LeRobot v3.0 dataset")
        jobs += [(str(f), groups) for f in files]
    init_ray(address)
    task = ray.remote(num_cpus=1)(file_partials)
    parts = ray.get([task.remote(f, g) for f, g in jobs])
    relative_keys = {g.key for _, groups in jobs for g in groups if g.state_slices is not None}
    return to_json(merge_partials(parts), relative_keys)
