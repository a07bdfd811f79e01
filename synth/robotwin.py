"""Sample recordings as RoboTwin 2.0 saves them (aloha-agilex embodiment), in the classic layout
(<task>/demo_clean/data/episode{i}.hdf5) or XPolicyLab's (demo_clean/<task>/aloha_agilex/data/episode_{i:07d}.hdf5).

Simulated data: the joint targets are the scene's joints exactly (no sensor noise), grippers 1 = open."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import h5py
import numpy as np

from synth.formats import recording_start, write_truth
from synth.render import Renderer, depth_frame
from synth.scene import ARMS, Scene, forward

VARIANTS = ("classic", "xpolicy")
TASK_CONFIG, EMBODIMENT = "demo_clean", "aloha_agilex"
CAMERAS = {"classic": {"top": "head_camera", "left_wrist": "left_camera", "right_wrist": "right_camera"},
           "xpolicy": {"top": "cam_head", "left_wrist": "cam_left_wrist", "right_wrist": "cam_right_wrist"}}
CORRUPT_FRAME = 7


def _instructions(scene: Scene) -> dict[str, list[str]]:
    """Seen and unseen phrasings, as RoboTwin fills its instruction templates."""
    text = scene.instruction
    return {"seen": [f"{text.capitalize()}.", f"Please {text}.", f"Use the arms to {text}."],
            "unseen": [f"Could you {text}?", f"{text.capitalize()} now."]}


def _render(scene: Scene, size: tuple[int, int], rng, depth: bool) -> tuple[dict, dict]:
    """Per role: every frame's JPEG bytes, and with `depth` its depth image in mm (uint16)."""
    jpegs = {role: [] for role in CAMERAS["classic"]}
    depths = {role: [] for role in CAMERAS["classic"]}
    for views in Renderer(scene, *size, rng).frames():
        for role, img in views.items():
            # The simulator hands RGB arrays to cv2.imencode (which assumes BGR): we do the same.
            jpegs[role].append(cv2.imencode(".jpg", img)[1].tobytes())
            if depth:
                depths[role].append(depth_frame(img))
    return jpegs, depths


def _fixed_length(bufs: list[bytes]) -> np.ndarray:
    """JPEG rows as RoboTwin stores them: NUL-padded fixed-length strings of the longest one."""
    return np.array(bufs, dtype=f"S{max(map(len, bufs))}")


def _endposes(scene: Scene) -> np.ndarray:
    """(N, 2, 7) fingertip poses [x, y, z, qw, qx, qy, qz] (a yaw about z) per arm."""
    poses = np.zeros((scene.num_frames, 2, 7))
    for t in range(scene.num_frames):
        for i, arm in enumerate(ARMS):
            fk = forward(arm, scene.joints[t, i])
            poses[t, i] = [*fk["tip"], fk["z"], np.cos(fk["yaw"] / 2), 0.0, 0.0, np.sin(fk["yaw"] / 2)]
    return poses


def _camera_matrices(size: tuple[int, int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame a pinhole intrinsic (3, 3) and a fixed camera-to-world pose (4, 4)."""
    w, h = size
    k = np.array([[0.8 * w, 0.0, w / 2], [0.0, 0.8 * w, h / 2], [0.0, 0.0, 1.0]])
    pose = np.eye(4)
    pose[:3, 3] = [0.0, -0.4, 1.2]
    return np.tile(k, (n, 1, 1)), np.tile(pose, (n, 1, 1))


def _write_classic(path: Path, scene: Scene, size, jpegs: dict, depths: dict) -> None:
    T = scene.num_frames
    q, o = scene.joints, scene.openness
    poses = _endposes(scene)
    k, cam2world = _camera_matrices(size, T)
    with h5py.File(path, "w") as f:
        for i, arm in enumerate(ARMS):
            f[f"joint_action/{arm}_arm"] = q[:, i]
            f[f"joint_action/{arm}_gripper"] = o[:, i]
            f[f"endpose/{arm}_endpose"] = poses[:, i]
            f[f"endpose/{arm}_gripper"] = o[:, i]
        f["joint_action/vector"] = np.concatenate([q[:, 0], o[:, :1], q[:, 1], o[:, 1:]], axis=1)
        for role, cam in CAMERAS["classic"].items():
            g = f.create_group(f"observation/{cam}")
            g["rgb"] = _fixed_length(jpegs[role])
            g["intrinsic_cv"] = k
            g["extrinsic_cv"] = np.linalg.inv(cam2world)[:, :3]
            g["cam2world_gl"] = cam2world
            if depths[role]:
                g["depth"] = np.stack(depths[role]).astype(np.float64)
        f["pointcloud"] = np.zeros((T, 0))


def _write_xpolicy(path: Path, scene: Scene, size, jpegs: dict, depths: dict) -> None:
    """XPolicyLab keeps T-1 frames: state = frames 0..T-2, action = the same signals one frame later."""
    n = scene.num_frames - 1
    q, o = scene.joints.astype(np.float32), scene.openness.astype(np.float32)
    poses = _endposes(scene).astype(np.float32)
    k, cam2world = _camera_matrices(size, n)
    with h5py.File(path, "w") as f:
        f.attrs["source_format"], f.attrs["source_path"] = "RoboTwin", "native_collection"
        f["data_format_version"] = "v1.0"
        f["instructions"] = json.dumps(_instructions(scene)["seen"])
        f["additional_info/frequency"] = np.int32(15)
        for group, rows in (("state", slice(0, n)), ("action", slice(1, n + 1))):
            for i, arm in enumerate(ARMS):
                f[f"{group}/{arm}_arm_joint_states"] = q[rows, i]
                f[f"{group}/{arm}_ee_joint_states"] = o[rows, i:i + 1]
                f[f"{group}/{arm}_ee_poses"] = poses[rows, i]
        for role, cam in CAMERAS["xpolicy"].items():
            g = f.create_group(f"vision/{cam}")
            g["colors"] = _fixed_length(jpegs[role][:n])
            g["shape"] = np.array([size[1], size[0], 3], np.int32)
            g["intrinsic_matrix"] = k
            g["extrinsics_matrix"] = cam2world
            if depths[role]:
                g["depths"] = np.stack(depths[role][:n]).astype(np.float32)


def write(out: Path, index: int, scene: Scene, size: tuple[int, int], rng, variant: str, depth: bool = False) -> str:
    """One episode in the given layout with its instruction json; returns its key below `out`."""
    if variant == "classic":
        folder, name = f"{scene.task_name}/{TASK_CONFIG}/", f"episode{index}"
        instruction = f"{folder}instructions/{name}.json"
    else:
        folder, name = f"{TASK_CONFIG}/{scene.task_name}/{EMBODIMENT}/", f"episode_{index:07d}"
        instruction = f"{folder}instruction/{name}.json"
    key = f"{folder}data/{name}.hdf5"
    (out / key).parent.mkdir(parents=True, exist_ok=True)
    (out / instruction).parent.mkdir(parents=True, exist_ok=True)
    jpegs, depths = _render(scene, size, rng, depth)
    (_write_classic if variant == "classic" else _write_xpolicy)(out / key, scene, size, jpegs, depths)
    (out / instruction).write_text(json.dumps(_instructions(scene), indent=1))
    os.utime(out / key, (recording_start(index),) * 2)  # the format keeps no clock: ingest takes the file's mtime
    write_truth(out, key, "robotwin", scene)
    return key


def _camera(key: str, role: str) -> str:
    """The camera group of a role in the episode file of `key`, whichever its layout."""
    if "/data/episode_" in key:
        return f"vision/{CAMERAS['xpolicy'][role]}"
    return f"observation/{CAMERAS['classic'][role]}"


def _colour(key: str, role: str) -> str:
    return _camera(key, role) + ("/colors" if "/data/episode_" in key else "/rgb")


def camera_short(out: Path, key: str, fmt: str) -> None:
    """The left wrist camera lost its last 10 frames."""
    name = _colour(key, "left_wrist")
    with h5py.File(out / key, "a") as f:
        data = f[name][:-10]
        del f[name]
        f[name] = data


def corrupt_jpeg(out: Path, key: str, fmt: str) -> None:
    """One left wrist frame's bytes are garbage (no JPEG marker: bytes below 0xFF)."""
    with h5py.File(out / key, "a") as f:
        data = f[_colour(key, "left_wrist")]
        data[CORRUPT_FRAME] = np.random.default_rng(0).integers(0, 255, data.dtype.itemsize // 2, np.uint8).tobytes()


def truncated_hdf5(out: Path, key: str, fmt: str) -> None:
    os.truncate(out / key, (out / key).stat().st_size * 6 // 10)


def missing_camera(out: Path, key: str, fmt: str) -> None:
    """The right wrist camera was not collected."""
    with h5py.File(out / key, "a") as f:
        del f[_camera(key, "right_wrist")]


FAULTS = {f.__name__: f for f in (camera_short, corrupt_jpeg, truncated_hdf5, missing_camera)}
