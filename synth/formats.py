"""Writes scenes to disk in the raw layouts of real robots (see shared reference raw-recording-formats).

Ground truth goes to <out>/ground_truth/<source key with '/' as '__'>.json; the pipeline never reads it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import h5py
import numpy as np

from pipeline.video import Mp4Writer
from synth.render import Renderer, depth_frame
from synth.scene import ARMS, Scene, forward

ROLE_NAMES = {
    "aloha": {"top": "cam_high", "left_wrist": "cam_left_wrist", "right_wrist": "cam_right_wrist"},
    "agibot": {"top": "head_color", "left_wrist": "hand_left_color", "right_wrist": "hand_right_color"},
}
FPS = {"aloha": 50, "agibot": 30, "galaxea": 15, "robotwin": 15}
DOF = {"aloha": 6, "agibot": 7, "galaxea": 7, "robotwin": 6}
JOINT_NOISE, GRIPPER_NOISE = 0.0008, 0.002
AGIBOT_TASK_BASE, AGIBOT_EPISODE_BASE = 327, 648642
FIRST_DAY = 1_720_000_000  # epoch seconds (2024-07-03): generated recordings spread over the 3 days from here


def recording_start(index: int) -> int:
    """Epoch seconds at which generated episode `index` was recorded: one of three days, so reports per day
    have something to show."""
    return FIRST_DAY + (index % 3) * 86_400 + index * 600


def truth_path(out: Path, source_key: str) -> Path:
    return out / "ground_truth" / (source_key.replace("/", "__") + ".json")


def truth_of(episode: dict) -> dict:
    """Ground truth of an ingested sample episode (a catalog row): the generator's output folder is the nearest
    folder above the recording that holds its ground_truth/ file (ingest may have been given a folder above it)."""
    uri = Path(episode["source_uri"])
    for root in uri.parents:
        if (path := truth_path(root, uri.relative_to(root).as_posix())).exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(f"no ground truth for {uri} in any folder above it")


def write_truth(out: Path, source_key: str, fmt: str, scene: Scene) -> None:
    path = truth_path(out, source_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "source_key": source_key, "format": fmt, "fps": scene.fps, "num_frames": scene.num_frames,
        "task": scene.task_name, "instruction": scene.instruction,
        "subtasks": [{"start_frame": s.start_frame, "end_frame": s.end_frame, "instruction": s.instruction,
                      "skill": s.skill} for s in scene.subtasks],
        "static_spans": [{"start_frame": a, "end_frame": b} for a, b in scene.static_spans],
    }, indent=1))


def _noisy_joints(scene: Scene, rng) -> tuple[np.ndarray, np.ndarray]:
    """Measured arm joints (N, 2, dof) and gripper openness (N, 2), with sensor noise."""
    q = scene.joints + rng.normal(0, JOINT_NOISE, scene.joints.shape)
    o = scene.openness + rng.normal(0, GRIPPER_NOISE, scene.openness.shape)
    return q, o


def _leader(x: np.ndarray, rng, sigma: float) -> np.ndarray:
    """Commanded values lead the measured ones by one frame, with tracking error."""
    return np.concatenate([x[1:], x[-1:]]) + rng.normal(0, sigma, x.shape)


def write_aloha(out: Path, index: int, scene: Scene, size: tuple[int, int], rng, jpeg: bool = True,
                depth: bool = False) -> str:
    """episode_{i}.hdf5 as ALOHA / Mobile ALOHA write it: float32 qpos/qvel/effort/action, no timestamps,
    images either raw (T,H,W,3) or JPEG-50 padded to the episode's longest frame with /compress_len."""
    key = f"{scene.task_name}/episode_{index}.hdf5"
    path = out / key
    path.parent.mkdir(parents=True, exist_ok=True)
    q, o = _noisy_joints(scene, rng)
    qpos = np.concatenate([q[:, 0], o[:, :1], q[:, 1], o[:, 1:]], axis=1).astype(np.float32)
    action = _leader(qpos, rng, 0.002).astype(np.float32)
    qvel = np.gradient(qpos, 1.0 / scene.fps, axis=0).astype(np.float32)
    effort = (np.gradient(qvel, axis=0) * 5 + rng.normal(0, 0.05, qvel.shape)).astype(np.float32)
    names = ROLE_NAMES["aloha"]
    frames = {names[r]: [] for r in names}
    depths = []  # Cobot Magic's images_depth: the top camera's, uint16 mm
    for views in Renderer(scene, *size, rng).frames():
        if depth:
            depths.append(depth_frame(views["top"]))
        for role, img in views.items():
            # The real recorders hand RGB arrays to cv2.imencode (which assumes BGR): we do the same.
            frames[names[role]].append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 50])[1].ravel()
                                       if jpeg else img)
    T = scene.num_frames
    with h5py.File(path, "w", rdcc_nbytes=2 * 1024**2) as f:
        f.attrs["sim"] = False
        f.attrs["compress"] = jpeg
        obs = f.create_group("observations")
        obs.create_dataset("qpos", data=qpos)
        obs.create_dataset("qvel", data=qvel)
        obs.create_dataset("effort", data=effort)
        f.create_dataset("action", data=action)
        img = obs.create_group("images")
        if jpeg:
            pad = max(len(b) for bufs in frames.values() for b in bufs)
            for cam, bufs in frames.items():
                d = img.create_dataset(cam, (T, pad), dtype="uint8", chunks=(1, pad))
                for i, b in enumerate(bufs):
                    row = np.zeros(pad, np.uint8)
                    row[: len(b)] = b
                    d[i] = row
            f.create_dataset("compress_len", data=np.array([[len(b) for b in frames[c]] for c in frames], np.float32))
        else:
            for cam, imgs in frames.items():
                img.create_dataset(cam, data=np.stack(imgs), chunks=(1, size[1], size[0], 3))
        if depth:
            obs.create_dataset(f"images_depth/{names['top']}", data=np.stack(depths), chunks=(1, size[1], size[0]))
    os.utime(path, (recording_start(index),) * 2)  # the format keeps no clock: ingest takes the file's mtime
    write_truth(out, key, "aloha", scene)
    return key


def write_agibot(out: Path, index: int, scene: Scene, size: tuple[int, int], rng, codec: str,
                 depth: bool = False) -> str:
    """AgiBot World layout: observations/<task>/<ep>/videos/*.mp4, proprio_stats/<task>/<ep>/proprio_stats.h5
    (int64 ns timestamps, float64 values, empty float32 placeholders) and task_info/task_<task>.json."""
    task_id = AGIBOT_TASK_BASE + list(_TASK_IDS).index(scene.task_name)
    episode_id = AGIBOT_EPISODE_BASE + index
    key = f"{task_id}/{episode_id}"
    vdir = out / "observations" / key / "videos"
    names = ROLE_NAMES["agibot"]
    writers = {role: Mp4Writer(vdir / f"{cam}.mp4", FPS["agibot"], codec) for role, cam in names.items()}
    ddir = out / "observations" / key / "depth"
    if depth:
        ddir.mkdir(parents=True, exist_ok=True)
    try:
        for t, views in enumerate(Renderer(scene, *size, rng).frames()):
            for role, img in views.items():
                writers[role].write(img)
            if depth:  # one 16-bit PNG per frame of the head camera, in mm
                cv2.imwrite(str(ddir / f"head_depth_{t:06d}.png"), depth_frame(views["top"]))
    finally:
        for w in writers.values():
            w.close()

    N = scene.num_frames
    q, o = _noisy_joints(scene, rng)
    joints = q.reshape(N, -1)
    effector_mm = 34.0 + 86.0 * o
    t0 = recording_start(index) * 10**9 + int(rng.integers(0, 10**12))
    stamps = t0 + np.round(np.arange(N) * 1e9 / FPS["agibot"] + rng.normal(0, 1e6, N)).astype(np.int64)
    tips = np.array([[forward(a, scene.joints[t, i])["tip"] for i, a in enumerate(ARMS)] for t in range(N)])
    end_pos = np.concatenate([tips, np.full((N, 2, 1), 0.9)], axis=2)
    empty = np.zeros((0,), np.float32)
    pdir = out / "proprio_stats" / key
    pdir.mkdir(parents=True, exist_ok=True)
    with h5py.File(pdir / "proprio_stats.h5", "w") as f:
        f["timestamp"] = stamps
        f["state/joint/position"] = joints.astype(np.float64)
        f["state/joint/current_value"] = np.round(joints * 2000).astype(np.float64)
        f["state/effector/position"] = effector_mm.astype(np.float64)
        f["state/end/position"] = end_pos
        f["state/end/orientation"] = np.tile([0.0, 0.0, 0.0, 1.0], (N, 2, 1))
        f["state/head/position"] = np.zeros((N, 2))
        f["state/waist/position"] = np.tile([0.5, 0.3], (N, 1))
        f["action/joint/position"] = _leader(joints, rng, 0.002)
        f["action/joint/index"] = np.arange(N, dtype=np.int64)
        f["action/effector/position"] = np.clip(1.0 - _leader(o, rng, 0.002), 0, 1)
        f["action/effector/index"] = np.arange(N, dtype=np.int64)
        for k in ("state/joint/effort", "state/joint/velocity", "state/effector/force", "state/end/velocity",
                  "state/head/velocity", "action/effector/force", "action/robot/position"):
            f[k] = empty

    info = out / "task_info" / f"task_{task_id}.json"
    info.parent.mkdir(parents=True, exist_ok=True)
    entries = json.loads(info.read_text()) if info.exists() else []
    jitter = lambda f: int(np.clip(f + rng.integers(-2, 3), 0, N))  # noqa: E731  human labels are a few frames off
    entries = [e for e in entries if e["episode_id"] != episode_id] + [{
        "episode_id": episode_id, "task_name": scene.instruction.capitalize(),
        "init_scene_text": "The robot stands in front of a table with objects on it.",
        "label_info": {"action_config": [
            {"start_frame": jitter(s.start_frame), "end_frame": jitter(s.end_frame),
             "action_text": s.instruction.capitalize() + ".", "skill": s.skill.capitalize()} for s in scene.subtasks]},
    }]
    info.write_text(json.dumps(sorted(entries, key=lambda e: e["episode_id"]), indent=1))
    write_truth(out, key, "agibot", scene)
    return key


_TASK_IDS = ("handover", "put_away", "stack")
