"""Galaxea R1 / R1 Pro / R1 Lite raw ROS recordings (see docs/adapters/galaxea.md): one bag per episode, a ROS 2
MCAP file (`.mcap`; or a rosbag2 folder: its .mcap files plus metadata.yaml) or a ROS 1 `.bag`, optionally beside
a raw_data_meta.json naming the robot type and the episode's subtask annotations.

Resampling onto the camera clock: the frames are the head-left colour camera's messages, at their header stamps.
Every other stream (the wrist cameras, depth, joint feedback and targets) gives each frame its nearest-previous
message by header stamp (the latest stamped at or before the frame; its first message for frames before it), so
no frame uses data from its future and every camera has exactly one image per frame. A message further than the
stream's tolerance from its frame is a stalled stream: the episode is quarantined ("signal_gap"), not filled in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag1 import ReaderError as Ros1Error
from rosbags.rosbag2 import ReaderError as Ros2Error
from rosbags.typesys import Stores, get_typestore

from pipeline.adapters import common
from schemas.episode import CameraStream, Episode, QuarantineError, SourceRef, SourceSegment
from schemas.robot import RobotConfig

VERSION = "galaxea-1.0"
META = "raw_data_meta.json"
BAG_ERRORS = (AnyReaderError, Ros1Error, Ros2Error, OSError)  # AnyReader wraps the deserializer's errors

HEAD = "/hdas/camera_head/left_raw/image_raw_color/compressed"
COLOUR = {"top": (HEAD,),  # accepted names per role, first found wins (older recorders: image_rect_raw)
          **{f"{s}_wrist": (f"/hdas/camera_wrist_{s}/color/image_raw/compressed",
                            f"/hdas/camera_wrist_{s}/color/image_rect_raw/compressed") for s in ("left", "right")}}
DEPTH = {"top": "/hdas/camera_head/depth/depth_registered",
         **{f"{s}_wrist": f"/hdas/camera_wrist_{s}/aligned_depth_to_color/image_raw" for s in ("left", "right")}}
# Joint feedback and targets come at 50 Hz or more (20 ms apart or less): a value older than 0.1 s (1.5 frames at
# 15 Hz) means the stream stalled. Cameras come at 15 Hz (67 ms apart) with jitter: 0.2 s lets one dropped frame
# through, not a stalled camera.
JOINT_TOLERANCE_S, IMAGE_TOLERANCE_S = 0.1, 0.2
FRAME_RATE_TOLERANCE = 0.1  # the head camera's median rate may be this fraction off the robot config's fps
ROBOT_TYPES = {"R1Pro": "galaxea_r1_pro", "R1Lite": "galaxea_r1_lite", "R1": "galaxea_r1_lite"}
CONFIG_BY_ARM_JOINTS = {7: "galaxea_r1_pro", 6: "galaxea_r1_lite"}


@dataclass(frozen=True)
class _Signal:
    """A slice of the state or action vector: `width` values of one field from the start of a topic's messages."""

    topic: str
    field: str  # position | velocity | twist (linear x, linear y, angular z)
    width: int
    default: str = ""  # when the topic is absent: "zeros", or another signal's topic; "" = required


def _layout(robot: RobotConfig) -> tuple[list[_Signal], list[_Signal]]:
    """State and action signals in the robot config's order: arms (left, right), grippers, then the torso
    (waist.position) and the chassis velocity (base.velocity) when the config has them."""
    dof = len(robot.arm_joints["left"])
    sides = ("left", "right")
    state = [_Signal(f"/hdas/feedback_arm_{s}", "position", dof) for s in sides]
    state += [_Signal(f"/hdas/feedback_gripper_{s}", "position", 1) for s in sides]
    action = [_Signal(f"/motion_target/target_joint_state_arm_{s}", "position", dof) for s in sides]
    action += [_Signal(f"/motion_target/target_position_gripper_{s}", "position", 1) for s in sides]
    if "waist.position" in robot.joint_groups:  # a torso without a command holds where it is
        state.append(_Signal("/hdas/feedback_torso", "position", 4))
        action.append(_Signal("/motion_target/target_joint_state_torso", "position", 4, "/hdas/feedback_torso"))
    if "base.velocity" in robot.joint_groups:  # a chassis that reports or commands nothing is not driving
        state.append(_Signal("/hdas/feedback_chassis", "velocity", 3, "zeros"))
        action.append(_Signal("/motion_target/target_speed_chassis", "twist", 3, "zeros"))
    return state, action


def _split(path: str) -> tuple[str, str]:
    """(folder, name) of a relative path, folder '' at the top."""
    folder, _, name = path.rpartition("/")
    return folder, name


def discover(root: str, files: list[str]) -> list[SourceRef]:
    """Every .bag and .mcap file in the listing of root; the .mcap files of a rosbag2 folder (one holding
    metadata.yaml) are one recording. A ref's root is the folder above the recording's task folder, its key
    '<task folder>/<file>'; a raw_data_meta.json in the task folder is part of the recording."""
    listed = set(files)
    bag_folders = {_split(f)[0] for f in files if _split(f)[1] == "metadata.yaml"}
    refs, seen = [], set()
    for f in files:
        folder, name = _split(f)
        if name.endswith(".mcap") and folder in bag_folders:
            if folder in seen:
                continue
            seen.add(folder)
            own = sorted(g for g in files if _split(g)[0] == folder and g.endswith(".mcap"))
            own.append(f"{folder}/metadata.yaml")
            unit = folder
        elif name.endswith((".mcap", ".bag")):
            own, unit = [f], f
        else:
            continue
        task_folder = _split(unit)[0]
        prefix = _split(task_folder)[0]
        meta = f"{task_folder}/{META}" if task_folder else META
        own += [meta] if meta in listed else []
        cut = len(prefix) + 1 if prefix else 0
        refs.append(SourceRef("galaxea", f"{root}/{prefix}" if prefix else root, own[0][cut:],
                              tuple(g[cut:] for g in own)))
    return refs


def _meta_file(ref: SourceRef) -> str | None:
    return next((f for f in ref.files if _split(f)[1] == META), None)


def _meta_entry(meta: dict, ref: SourceRef) -> dict:
    """The rawDataList entry of this recording (matched on its file or rosbag2 folder name), {} when none."""
    names = {_split(ref.key)[1], _split(_split(ref.key)[0])[1]}
    return next((e for e in meta.get("rawDataList", []) if e.get("name") in names), {})


def robot_hint(ref: SourceRef, read_json: Callable[[str], dict]) -> str:
    """The robot config the recording's raw_data_meta.json names (robotType), '' when there is none or the file
    does not read (read() then quarantines it). For the caller of discovery, which may open files (read_json(uri),
    e.g. pipeline.storage.read_json)."""
    meta = _meta_file(ref)
    if meta is None:
        return ""
    try:
        entry = _meta_entry(read_json(f"{ref.root}/{meta}"), ref)
    except (OSError, ValueError, AttributeError):
        return ""
    return ROBOT_TYPES.get(str(entry.get("robotType", "")), "")


def nearest_previous(stamps: np.ndarray, clock: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per clock tick the index of the latest sorted stamp at or before it (the first one for ticks before it)
    and its distance from the tick, in the stamps' unit."""
    idx = np.clip(np.searchsorted(stamps, clock, side="right") - 1, 0, None)
    return idx, np.abs(clock - stamps[idx])


@contextmanager
def _open_bag(path: Path, what: str) -> Iterator[AnyReader]:
    """An open reader; any failure to read the bag (truncated, not a bag, undecodable message) quarantines."""
    try:
        with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
            yield reader
    except BAG_ERRORS as e:
        raise QuarantineError("unreadable_bag", f"{path.name} ({what}): {type(e).__name__}: {e}") from e


@dataclass
class _Stream:
    stamps: np.ndarray  # (M,) int64 header stamps, ns, in bag order
    values: list[np.ndarray]  # per message the field a signal reads (empty for images)


def _field(msg, field: str) -> np.ndarray:
    if field == "twist":
        return np.array([msg.twist.linear.x, msg.twist.linear.y, msg.twist.angular.z])
    return np.asarray(getattr(msg, field), np.float64)


def _scan(path: Path, wanted: dict[str, str]) -> dict[str, _Stream]:
    """One pass over the bag: header stamps of every wanted topic (topic -> field, '' for images) and the field of
    its messages. Topics absent from the bag are absent from the result."""
    stamps: dict[str, list[int]] = {}
    values: dict[str, list[np.ndarray]] = {}
    with _open_bag(path, "scan") as reader:
        connections = [c for c in reader.connections if c.topic in wanted]
        for conn, _, data in reader.messages(connections):
            msg = reader.deserialize(data, conn.msgtype)
            stamps.setdefault(conn.topic, []).append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
            if wanted[conn.topic]:
                values.setdefault(conn.topic, []).append(_field(msg, wanted[conn.topic]))
    return {t: _Stream(np.array(s, np.int64), values.get(t, [])) for t, s in stamps.items()}


def _check_order(topic: str, stream: _Stream) -> None:
    back = np.flatnonzero(np.diff(stream.stamps) < 0)
    if len(back):
        raise QuarantineError("non_monotonic_timestamps", f"{topic}: header stamp goes back at message "
                              f"{int(back[0]) + 1} ({len(back)} times)")


def _picks(topic: str, stream: _Stream, clock: np.ndarray, tolerance: float) -> np.ndarray:
    """The message each frame takes (nearest-previous), or signal_gap where one is further than `tolerance`."""
    _check_order(topic, stream)
    idx, gap = nearest_previous(stream.stamps, clock)
    gap_s = gap / 1e9
    bad = np.flatnonzero(gap_s > tolerance)
    if len(bad):
        worst = int(bad[np.argmax(gap_s[bad])])
        at = (clock[bad[[0, -1]]] - clock[0]) / 1e9
        raise QuarantineError("signal_gap", f"{topic}: no message within {tolerance} s for {len(bad)} frames between "
                              f"frame {bad[0]} and {bad[-1]} ({at[0]:.2f}-{at[1]:.2f} s into the episode), largest "
                              f"gap {gap_s[worst]:.3f} s at frame {worst}")
    return idx


def _rows(topic: str, signal: _Signal, stream: _Stream, idx: np.ndarray) -> np.ndarray:
    short = [i for i, v in enumerate(stream.values) if len(v) < signal.width]
    if short:
        raise QuarantineError("joint_dimension", f"{topic}: message {short[0]} has {len(stream.values[short[0]])} "
                              f"{signal.field} values, {signal.width} needed")
    return np.stack([stream.values[i][:signal.width] for i in idx])


def _vector(signals: list[_Signal], streams: dict[str, _Stream], clock: np.ndarray) -> np.ndarray:
    parts = []
    for s in signals:
        topic = s.topic if s.topic in streams else s.default
        if topic == "zeros":
            parts.append(np.zeros((len(clock), s.width)))
            continue
        parts.append(_rows(topic, s, streams[topic], _picks(topic, streams[topic], clock, JOINT_TOLERANCE_S)))
    return np.concatenate(parts, axis=1).astype(np.float32)


def _check_arms(robot: RobotConfig, streams: dict[str, _Stream]) -> None:
    """The left arm's target carries exactly its joints (feedback may carry more values): another count is the
    other robot type."""
    dof, topic = len(robot.arm_joints["left"]), "/motion_target/target_joint_state_arm_left"
    n = len(streams[topic].values[0])
    if n != dof:
        right = CONFIG_BY_ARM_JOINTS.get(n)
        raise QuarantineError("robot_mismatch", f"{topic} carries {n} arm joints but robot {robot.name} has {dof}"
                              + (f": ingest this recording with --robot {right}" if right else ""))


def _frame_rate(clock: np.ndarray, robot: RobotConfig) -> None:
    if len(clock) < 2:
        raise QuarantineError("empty_episode", f"{HEAD} has {len(clock)} messages")
    rate = 1e9 / float(np.median(np.diff(clock)))
    if abs(rate - robot.fps) > FRAME_RATE_TOLERANCE * robot.fps:
        raise QuarantineError("frame_rate", f"{HEAD} runs at {rate:.2f} Hz (median), robot {robot.name} expects "
                              f"{robot.fps:g} Hz")


def _colour(msg, topic: str, frame: int) -> np.ndarray:
    """A JPEG/PNG CompressedImage as RGB: the cameras encode BGR arrays (cv_bridge's convention), which
    imdecode returns, so the channels are swapped."""
    data = np.asarray(msg.data, np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise QuarantineError("corrupt_image", f"{topic} frame {frame}: image does not decode")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _depth(msg, topic: str, frame: int) -> np.ndarray:
    """A depth Image as uint16 mm: 16UC1 / mono16 is mm already, 32FC1 is metres (NaN = no reading = 0)."""
    kind = {"16UC1": "u2", "mono16": "u2", "32FC1": "f4"}.get(msg.encoding)
    raw = np.asarray(msg.data, np.uint8)
    if kind is None or raw.size < msg.height * msg.step:
        raise QuarantineError("corrupt_image", f"{topic} frame {frame}: {msg.encoding} image of {raw.size} bytes "
                              f"is not {msg.height} rows of {msg.step}")
    dtype = np.dtype(kind).newbyteorder(">" if msg.is_bigendian else "<")
    rows = raw[:msg.height * msg.step].reshape(msg.height, msg.step)[:, :msg.width * dtype.itemsize]
    px = np.ascontiguousarray(rows).view(dtype)
    if kind == "u2":
        return px.astype(np.uint16)
    return np.rint(np.nan_to_num(px * 1000.0, nan=0.0, posinf=0.0, neginf=0.0)).clip(0, 65535).astype(np.uint16)


def _frames(path: Path, topic: str, picks: np.ndarray, decode: Callable) -> Callable[[], Iterator[np.ndarray]]:
    """One image per frame, read from the bag and decoded while iterated (picks are the messages' indices in bag
    order, non-decreasing: a message picked by several frames is decoded once)."""

    def gen():
        with _open_bag(path, topic) as reader:
            connections = [c for c in reader.connections if c.topic == topic]
            j = 0
            for i, (conn, _, data) in enumerate(reader.messages(connections)):
                if j == len(picks):
                    break
                if picks[j] != i:
                    continue
                img = decode(reader.deserialize(data, conn.msgtype), topic, j)
                while j < len(picks) and picks[j] == i:
                    yield img
                    j += 1

    return gen


def _camera(bag: Path, name: str, role: str, topic: str, streams: dict[str, _Stream], clock: np.ndarray,
            decode: Callable) -> CameraStream:
    picks = _picks(topic, streams[topic], clock, IMAGE_TOLERANCE_S)
    return CameraStream(name, role, frames=_frames(bag, topic, picks, decode))


def _segments(entry: dict, clock: np.ndarray, meta_name: str) -> list[SourceSegment]:
    """Annotation intervals (header time) as frame ranges [first frame at or after start, first at or after end)."""
    segments = []
    try:
        for a in entry.get("annotations", []):
            start = int(a["startSecond"]) * 10**9 + int(a["startNanoSecond"])
            end = int(a["endSecond"]) * 10**9 + int(a["endNanoSecond"])
            text = str(a.get("text", "")).strip()
            first, last = np.searchsorted(clock, [start, end], side="left")
            if last > first and text and text != "null":
                segments.append(SourceSegment(int(first), int(last), text))
    except (KeyError, TypeError, ValueError) as e:
        raise QuarantineError("bad_meta", f"{meta_name}: bad annotation ({type(e).__name__}: {e})") from e
    return segments


def _task(meta: dict, path: Path) -> str:
    """The dataset name as a task ('Adjust_The_Air_Conditioner_20250711_006' -> 'adjust the air conditioner', as
    Galaxea's converter does), else the recording's folder name."""
    name = re.sub(r"[\s_]+", " ", re.sub(r"\d+", "", str(meta.get("rawDataSetName", "")))).strip().lower()
    return name or path.parent.name


def _load_meta(root: Path, ref: SourceRef) -> tuple[dict, dict]:
    meta_file = _meta_file(ref)
    if meta_file is None:
        return {}, {}
    try:
        meta = json.loads((root / meta_file).read_text())
    except (OSError, ValueError) as e:
        raise QuarantineError("bad_meta", f"{meta_file}: {e}") from e
    if not isinstance(meta, dict):
        raise QuarantineError("bad_meta", f"{meta_file}: not a JSON object")
    return meta, _meta_entry(meta, ref)


def read(ref: SourceRef, robot: RobotConfig) -> Episode:
    root = Path(ref.root)
    main = root / ref.key
    bag = main.parent if any(_split(f)[1] == "metadata.yaml" for f in ref.files) else main
    state_signals, action_signals = _layout(robot)
    wanted = {t: "" for topics in COLOUR.values() for t in topics} | {t: "" for t in DEPTH.values()}
    wanted |= {s.topic: s.field for s in state_signals + action_signals}
    streams = _scan(bag, wanted)

    colour = {role: next((t for t in topics if t in streams), topics[0]) for role, topics in COLOUR.items()}
    required = list(colour.values()) + [s.topic for s in state_signals + action_signals if not s.default]
    missing = [t for t in required if t not in streams]
    if missing:
        raise QuarantineError("missing_topic", "no " + ", ".join(missing))
    _check_order(HEAD, streams[HEAD])
    clock = streams[HEAD].stamps
    _frame_rate(clock, robot)
    _check_arms(robot, streams)
    state, action = _vector(state_signals, streams, clock), _vector(action_signals, streams, clock)

    cameras = [_camera(bag, c.name, c.role, colour[c.role], streams, clock, _colour) for c in robot.cameras]
    depth = [_camera(bag, f"{c.name}_depth", c.role, DEPTH[c.role], streams, clock, _depth)
             for c in robot.cameras if DEPTH[c.role] in streams]
    meta, entry = _load_meta(root, ref)
    return Episode(
        source=ref, robot=robot.name, fps=robot.fps, timestamps=(clock - clock[0]) / 1e9, state=state,
        action=action, state_names=robot.state_names, action_names=robot.action_names, cameras=cameras,
        content_hash=common.content_hash(ref), adapter_version=VERSION, task_name=_task(meta, bag),
        recorded_at=datetime.fromtimestamp(clock[0] / 1e9, UTC), depth=depth,
        segments=_segments(entry, clock, _meta_file(ref) or META),
    )
