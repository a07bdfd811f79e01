"""RoboTwin 2.0 simulation HDF5, both layouts (see docs/adapters/robotwin.md):

* classic: <task>/<task_config>/data/episode{i}.hdf5 with /joint_action/vector and JPEG rows in
  /observation/<cam>/rgb, plus <task>/<task_config>/instructions/episode{i}.json;
* XPolicyLab: <task_config>/<task>/<embodiment>/data/episode_{i:07d}.hdf5 with /state/*, /action/* and
  /vision/<cam>/colors, plus .../instruction/episode_{i:07d}.json.

No timestamps: t = i / fps. A ref's root is the folder holding the layout's top level (the simulator's save path),
its key the path below it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.adapters import common
from pipeline.validate import check_frame_counts
from schemas.episode import CameraStream, Episode, QuarantineError, SourceRef
from schemas.robot import RobotConfig

VERSION = "robotwin-1.0"
# prefix, the episode's folder (ending in '/'), task, index
CLASSIC = re.compile(r"^(?:(.+)/)?(([^/]+)/[^/]+/)data/episode(\d+)\.hdf5$")
XPOLICY = re.compile(r"^(?:(.+)/)?([^/]+/([^/]+)/[^/]+/)data/episode_(\d{7})\.hdf5$")
XPOLICY_CAMERAS = {"head_camera": "cam_head", "left_camera": "cam_left_wrist", "right_camera": "cam_right_wrist",
                   "front_camera": "cam_third_view"}
XPOLICY_PARTS = ("left_arm_joint_states", "left_ee_joint_states", "right_arm_joint_states", "right_ee_joint_states")


def _episode_file(f: str) -> tuple[re.Match, str] | None:
    """The layout match of a RoboTwin episode file and the path of its instruction json (below the same prefix)."""
    if m := CLASSIC.match(f):
        return m, f"{m[2]}instructions/episode{m[4]}.json"
    if m := XPOLICY.match(f):
        return m, f"{m[2]}instruction/episode_{m[4]}.json"
    return None


def discover(root: str, files: list[str]) -> list[SourceRef]:
    """Episode files of either layout in the listing of root; the instruction json belongs to its episode
    when listed. ALOHA's <task>/episode_{i}.hdf5 matches neither layout: those need a data/ folder with two
    (classic, unpadded index) or three (XPolicyLab, 7-digit index) folders above it."""
    listed, refs = set(files), []
    for f in files:
        if found := _episode_file(f):
            m, instruction = found
            prefix = m[1]
            own = f[len(prefix) + 1:] if prefix else f
            extra = (instruction,) if (f"{prefix}/{instruction}" if prefix else instruction) in listed else ()
            refs.append(SourceRef("robotwin", f"{root}/{prefix}" if prefix else root, own, (own, *extra)))
    return refs


@dataclass(frozen=True)
class _Layout:
    signals: Callable[[h5py.File], tuple[np.ndarray, np.ndarray, int]]  # state, action, camera frames expected
    colour: Callable[[str], str]  # robot camera name -> colour dataset
    depth: Callable[[str], str]  # robot camera name -> depth dataset
    task_part: int  # which part of the key names the task


def _dataset(f: h5py.File, name: str) -> np.ndarray:
    if name not in f:
        raise QuarantineError("missing_dataset", f"no /{name}")
    return np.asarray(f[name][()], np.float32)


def _classic_signals(f: h5py.File) -> tuple[np.ndarray, np.ndarray, int]:
    """joint_action[t] is the target at frame t, so the policy pair is (vector[t], vector[t+1]): the last frame
    has no next target and is dropped (the cameras' last frame with it), as the XPolicyLab layout does."""
    vector = _dataset(f, "joint_action/vector")
    return vector[:-1], vector[1:], vector.shape[0]


def _stack(f: h5py.File, group: str) -> np.ndarray:
    parts = [_dataset(f, f"{group}/{p}") for p in XPOLICY_PARTS]
    if len({p.shape[0] for p in parts}) != 1:
        raise QuarantineError("length_mismatch", ", ".join(f"/{group}/{n} has {p.shape[0]} rows"
                                                           for n, p in zip(XPOLICY_PARTS, parts)))
    return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)


def _xpolicy_signals(f: h5py.File) -> tuple[np.ndarray, np.ndarray, int]:
    state = _stack(f, "state")
    return state, _stack(f, "action"), state.shape[0]


CLASSIC_LAYOUT = _Layout(_classic_signals, lambda cam: f"observation/{cam}/rgb",
                         lambda cam: f"observation/{cam}/depth", 0)
XPOLICY_LAYOUT = _Layout(_xpolicy_signals, lambda cam: f"vision/{XPOLICY_CAMERAS.get(cam, cam)}/colors",
                         lambda cam: f"vision/{XPOLICY_CAMERAS.get(cam, cam)}/depths", 1)


def _millimetres(row, cam: str, i: int) -> np.ndarray:
    """A float depth image in mm as uint16 mm; no reading (NaN, inf, negative) becomes 0."""
    mm = np.nan_to_num(np.asarray(row, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return np.rint(mm).clip(0, 65535).astype(np.uint16)


def _stream(path: Path, dataset: str, cam: str, n: int, convert: Callable) -> Callable:
    """The first n frames of one dataset, read and converted one at a time when iterated."""

    def gen():
        i = 0
        try:
            with h5py.File(path, "r") as f:
                data = f[dataset]
                for i in range(n):
                    yield convert(data[i], cam, i)
        except OSError as e:
            raise QuarantineError("unreadable_hdf5", f"camera {cam} frame {i}: {e}") from e

    return gen


def read(ref: SourceRef, robot: RobotConfig) -> Episode:
    path = Path(ref.root) / ref.key
    layout = XPOLICY_LAYOUT if XPOLICY.match(ref.key) else CLASSIC_LAYOUT
    try:
        with h5py.File(path, "r") as f:
            state, action, expected = layout.signals(f)
            missing = [layout.colour(c.name) for c in robot.cameras if layout.colour(c.name) not in f]
            if missing:
                raise QuarantineError("missing_camera", "no " + ", ".join(f"/{m}" for m in missing))
            lengths = {c.name: f[layout.colour(c.name)].shape[0] for c in robot.cameras}
            depths = [c for c in robot.cameras if layout.depth(c.name) in f]
            lengths |= {f"{c.name} depth": f[layout.depth(c.name)].shape[0] for c in depths}
    except OSError as e:
        raise QuarantineError("unreadable_hdf5", str(e)) from e
    check_frame_counts(expected, lengths)
    n = state.shape[0]
    return Episode(
        source=ref, robot=robot.name, fps=robot.fps, timestamps=np.arange(n) / robot.fps, state=state,
        action=action, state_names=robot.state_names, action_names=robot.action_names,
        cameras=[CameraStream(c.name, c.role, frames=_stream(path, layout.colour(c.name), c.name, n, common.rgb_from_jpeg_row))
                 for c in robot.cameras],
        depth=[CameraStream(f"{c.name}_depth", c.role,
                            frames=_stream(path, layout.depth(c.name), f"{c.name}_depth", n, _millimetres))
               for c in depths],
        content_hash=common.content_hash(ref), adapter_version=VERSION,
        task_name=_instruction(ref, path) or ref.key.split("/")[layout.task_part], recorded_at=common.file_time(path),
    )


def _instruction(ref: SourceRef, path: Path) -> str | None:
    """The episode's first 'seen' instruction (the instruction json, else the file's /instructions string): the
    task text a policy trains on, like AgiBot's task_name; the task folder name when there is none."""
    try:
        if len(ref.files) > 1:
            seen = json.loads((Path(ref.root) / ref.files[1]).read_text())
            seen = seen.get("seen", []) if isinstance(seen, dict) else seen
        else:
            with h5py.File(path, "r") as f:
                seen = json.loads(f["instructions"][()]) if "instructions" in f else []
    except (OSError, ValueError) as e:
        raise QuarantineError("bad_instructions", f"instructions of {ref.key}: {e}") from e
    return str(seen[0]).strip() if seen else None
