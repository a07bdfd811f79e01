"""ALOHA / AgileX HDF5: <task>/episode_{i}.hdf5 with /observations/qpos, /action and camera images stored
raw (T,H,W,3) or as JPEG rows padded to a common length (root attr compress=True). No timestamps: t = i/fps."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

import h5py
import numpy as np

from pipeline.adapters import common
from pipeline.validate import check_frame_counts
from schemas.episode import CameraStream, Episode, QuarantineError, SourceRef
from schemas.robot import RobotConfig

VERSION = "aloha-1.0"


def discover(root: str, files: list[str]) -> list[SourceRef]:
    """Every episode_*.hdf5 in the listing of root (relative paths)."""
    return [SourceRef("aloha", root, f, (f,)) for f in files if fnmatch(PurePosixPath(f).name, "episode_*.hdf5")]


def _frames(path: Path, cam: str):
    """Streams one camera's frames as RGB: raw rows as they are, JPEG rows through common.rgb_from_jpeg_row."""

    def gen():
        i = 0
        try:
            with h5py.File(path, "r") as f:
                data = f[f"observations/images/{cam}"]
                compressed = data.ndim == 2
                for i in range(data.shape[0]):
                    yield common.rgb_from_jpeg_row(data[i], cam, i) if compressed else data[i]
        except OSError as e:
            raise QuarantineError("unreadable_hdf5", f"camera {cam} frame {i}: {e}") from e

    return gen


def _depth(path: Path, cam: str):
    """Streams one camera's depth (Cobot Magic's /observations/images_depth/<cam>, uint16 mm)."""

    def gen():
        with h5py.File(path, "r") as f:
            data = f[f"observations/images_depth/{cam}"]
            for i in range(data.shape[0]):
                yield np.asarray(data[i], np.uint16)

    return gen


def read(ref: SourceRef, robot: RobotConfig) -> Episode:
    path = Path(ref.root) / ref.key
    try:
        with h5py.File(path, "r") as f:
            qpos = np.asarray(f["observations/qpos"][()], np.float32)
            action = np.asarray(f["action"][()], np.float32)
            images = f["observations/images"]
            lengths = {c.name: images[c.name].shape[0] for c in robot.cameras if c.name in images}
            depth = f.get("observations/images_depth", {})
            depths = [(c, depth[c.name].shape[0]) for c in robot.cameras if c.name in depth]
    except KeyError as e:
        raise QuarantineError("missing_dataset", str(e)) from e
    except OSError as e:
        raise QuarantineError("unreadable_hdf5", str(e)) from e
    cameras = []
    for cam in robot.cameras:
        if cam.name not in lengths:
            raise QuarantineError("missing_camera", f"no /observations/images/{cam.name}")
        cameras.append(CameraStream(cam.name, cam.role, frames=_frames(path, cam.name)))
    n = qpos.shape[0] if qpos.ndim == 2 else 0
    check_frame_counts(n, lengths | {f"{c.name} depth": k for c, k in depths})
    return Episode(
        source=ref, robot=robot.name, fps=robot.fps, timestamps=np.arange(n) / robot.fps, state=qpos,
        action=action, state_names=robot.state_names, action_names=robot.action_names, cameras=cameras,
        content_hash=common.content_hash(ref), adapter_version=VERSION, task_name=path.parent.name,
        recorded_at=common.file_time(path),
        depth=[CameraStream(f"{c.name}_depth", c.role, frames=_depth(path, c.name)) for c, _ in depths],
    )
