"""AgiBot World: observations/<task>/<ep>/videos/*.mp4 (kept as is), proprio_stats/<task>/<ep>/proprio_stats.h5
(int64 ns timestamps, float64 values) and task_info/task_<task>.json with per-episode segment labels."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import cv2
import h5py
import numpy as np

from pipeline.adapters import common
from schemas.episode import CameraStream, Episode, QuarantineError, SourceRef, SourceSegment
from schemas.robot import RobotConfig

VERSION = "agibot-1.0"
STATE = ("state/joint/position", "state/effector/position")
ACTION = ("action/joint/position", "action/effector/position")


DEPTH = re.compile(r"^(?:(.+)/)?observations/([^/]+)/([^/]+)/depth/head_depth_?\d+\.png$")
PROPRIO = re.compile(r"^(?:(.+)/)?proprio_stats/([^/]+)/([^/]+)/proprio_stats\.h5$")
VIDEO = re.compile(r"^(?:(.+)/)?observations/([^/]+)/([^/]+)/videos/[^/]+\.mp4$")


def discover(root: str, files: list[str]) -> list[SourceRef]:
    """Episodes of every AgiBot World dataset root (a folder holding proprio_stats/) at or below root, from the
    listing of root. A ref's root is its dataset root and its key the native '<task_id>/<episode_id>'."""
    videos: dict[tuple, list[str]] = {}  # and head depth PNGs: they belong to the episode too
    for f in files:
        if m := VIDEO.match(f) or DEPTH.match(f):
            videos.setdefault(m.groups(), []).append(f[len(m[1]) + 1:] if m[1] else f)
    refs = []
    for f in files:
        if m := PROPRIO.match(f):
            prefix, task_id, episode_id = m.groups()
            dataset = f"{root}/{prefix}" if prefix else root
            own = [f[len(prefix) + 1:] if prefix else f, f"task_info/task_{task_id}.json"]
            refs.append(SourceRef("agibot", dataset, f"{task_id}/{episode_id}",
                                  tuple(own + sorted(videos.get(m.groups(), [])))))
    return refs


@cache
def _task_info(path: str, mtime_ns: int) -> dict[int, dict]:
    return {int(e["episode_id"]): e for e in json.loads(Path(path).read_text())}


def _labels(root: Path, task_id: str, episode_id: str) -> dict:
    path = root / "task_info" / f"task_{task_id}.json"
    if not path.exists():
        return {}
    try:
        return _task_info(str(path), path.stat().st_mtime_ns).get(int(episode_id), {})
    except (ValueError, KeyError) as e:
        raise QuarantineError("bad_task_info", f"{path.name}: {e}") from e


def _stack(f: h5py.File, names: tuple[str, ...]) -> np.ndarray:
    parts = []
    for name in names:
        if name not in f:
            raise QuarantineError("missing_dataset", f"no {name} in proprio_stats.h5")
        a = np.asarray(f[name][()], np.float64)
        if a.shape[0] == 0:
            raise QuarantineError("empty_episode", f"{name} has no rows")
        parts.append(a.reshape(a.shape[0], -1))
    if len({p.shape[0] for p in parts}) != 1:
        raise QuarantineError("length_mismatch", ", ".join(f'{n} has {p.shape[0]} rows' for n, p in zip(names, parts)))
    return np.concatenate(parts, axis=1).astype(np.float32)


def _png(path: Path) -> np.ndarray:
    mm = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mm is None or mm.dtype != np.uint16 or mm.ndim != 2:
        raise QuarantineError("corrupt_image", f"{path.name}: not a 16-bit single-channel PNG")
    return mm


def read(ref: SourceRef, robot: RobotConfig) -> Episode:
    root = Path(ref.root)
    task_id, episode_id = ref.key.split("/")
    proprio = root / "proprio_stats" / ref.key / "proprio_stats.h5"
    try:
        with h5py.File(proprio, "r") as f:
            if "timestamp" not in f:
                raise QuarantineError("missing_dataset", "no timestamp in proprio_stats.h5")
            stamps = np.asarray(f["timestamp"][()], np.int64)
            state = _stack(f, STATE)
            action = _stack(f, ACTION)
    except OSError as e:
        raise QuarantineError("unreadable_hdf5", f"proprio_stats.h5: {e}") from e
    if action.shape[0] != state.shape[0]:
        raise QuarantineError("length_mismatch", f"{state.shape[0]} state rows but {action.shape[0]} action rows")
    cameras = []
    for cam in robot.cameras:
        video = root / "observations" / ref.key / "videos" / f"{cam.name}.mp4"
        if not video.exists():
            raise QuarantineError("missing_camera", f"no videos/{cam.name}.mp4")
        cameras.append(CameraStream(cam.name, cam.role, video_path=str(video)))
    pngs = sorted((root / "observations" / ref.key / "depth").glob("head_depth*.png"))
    if pngs and len(pngs) != state.shape[0]:
        raise QuarantineError("frame_count_mismatch", f"{state.shape[0]} joint samples but {len(pngs)} head depth PNGs")
    depth = [CameraStream("head_depth", "top", frames=lambda: (_png(p) for p in pngs))] if pngs else []
    info = _labels(root, task_id, episode_id)
    segments = [SourceSegment(int(a["start_frame"]), int(a["end_frame"]), str(a.get("action_text", "")),
                              str(a.get("skill", ""))) for a in info.get("label_info", {}).get("action_config", [])]
    return Episode(
        source=ref, robot=robot.name, fps=robot.fps,
        timestamps=(stamps - stamps[0]) / 1e9 if len(stamps) else stamps.astype(np.float64),
        state=state, action=action, state_names=robot.state_names, action_names=robot.action_names,
        cameras=cameras, content_hash=common.content_hash(ref), adapter_version=VERSION,
        task_name=info.get("task_name"), segments=segments, depth=depth,
        recorded_at=datetime.fromtimestamp(stamps[0] / 1e9, UTC) if len(stamps) else common.file_time(proprio),
    )
