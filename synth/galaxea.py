"""Sample recordings as Galaxea R1 Pro robots record them (see docs/adapters/galaxea.md): one ROS bag per
episode, <task>/episode_{i}.mcap (ROS 2, MCAP storage, a single file as Galaxea's recorder leaves it) or
<task>/episode_{i}.bag (ROS 1), beside <task>/raw_data_meta.json with each episode's subtask annotations.

Topic names are spelled here independently of the adapter, as the robot publishes them, so that a wrong name on
either side shows up in the tests.
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag1 import Writer as Ros1Writer
from rosbags.rosbag2 import StoragePlugin, Writer as Ros2Writer
from rosbags.typesys import Stores, get_typestore

from synth.formats import GRIPPER_NOISE, JOINT_NOISE, recording_start, write_truth
from synth.render import Renderer, depth_frame
from synth.scene import ARMS, Scene

VARIANTS = ("mcap", "bag")
ROBOT_TYPE = "R1Pro"
DATASET_SUFFIX = "_20240703_001"  # Galaxea names datasets <Task_Name>_<YYYYMMDD>_<NNN>
JOINT_STATE, COMPRESSED, IMAGE, TWIST = ("sensor_msgs/msg/JointState", "sensor_msgs/msg/CompressedImage",
                                         "sensor_msgs/msg/Image", "geometry_msgs/msg/TwistStamped")
COLOUR = {"top": "/hdas/camera_head/left_raw/image_raw_color/compressed",
          "left_wrist": "/hdas/camera_wrist_left/color/image_raw/compressed",
          "right_wrist": "/hdas/camera_wrist_right/color/image_raw/compressed"}
HEAD_RIGHT = "/hdas/camera_head/right_raw/image_raw_color/compressed"  # recorded, not read by the adapter
DEPTH = {"top": "/hdas/camera_head/depth/depth_registered",
         "left_wrist": "/hdas/camera_wrist_left/aligned_depth_to_color/image_raw",
         "right_wrist": "/hdas/camera_wrist_right/aligned_depth_to_color/image_raw"}
FEEDBACK_HZ, TARGET_HZ = 100, 50
TARGET_LEAD_S = 1 / 15  # commands lead the measured joints by about a frame (as synth.formats._leader)
STAMP_JITTER_S = 0.002
WRIST_EARLY_S = 0.01  # wrist cameras fire just before the head camera, so frame k's nearest-previous is k
TRANSPORT_S = (0.001, 0.004)  # a message is logged this long after its header stamp
TORSO = np.array([0.3, -0.6, 0.3, 0.0])  # standing pose (rad); the samples never move the torso
CORRUPT_FRAME, GAP_S = 7, 2.0

Event = tuple[int, str, str, object]  # log time (ns), topic, message type, message


class _Bag:
    """Writes one bag in time order: ROS 1 .bag, or ROS 2 MCAP as a single .mcap file (rosbags writes a rosbag2
    folder with metadata.yaml; Galaxea's recordings are the bare .mcap)."""

    def __init__(self, path: Path):
        self.path, self.ros1 = path, path.suffix == ".bag"
        self.store = get_typestore(Stores.ROS1_NOETIC if self.ros1 else Stores.ROS2_HUMBLE)
        self.folder = path.with_name(path.stem + ".rosbag2")

    def __enter__(self) -> _Bag:
        self.writer = Ros1Writer(self.path) if self.ros1 else Ros2Writer(self.folder, version=9,
                                                                         storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.connections = {}
        return self

    def serialize(self, msg, msgtype: str) -> bytes:
        return bytes(self.store.serialize_ros1(msg, msgtype) if self.ros1 else self.store.serialize_cdr(msg, msgtype))

    def deserialize(self, data: bytes, msgtype: str):
        return self.store.deserialize_ros1(data, msgtype) if self.ros1 else self.store.deserialize_cdr(data, msgtype)

    def write(self, t_ns: int, topic: str, msgtype: str, data: bytes) -> None:
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msgtype, typestore=self.store)
        self.writer.write(self.connections[topic], t_ns, data)

    def __exit__(self, *exc) -> None:
        self.writer.close()
        if not self.ros1:
            next(self.folder.glob("*.mcap")).replace(self.path)
            shutil.rmtree(self.folder)

    def header(self, t_ns: int, frame_id: str = ""):
        stamp = self.store.types["builtin_interfaces/msg/Time"](sec=t_ns // 10**9, nanosec=t_ns % 10**9)
        extra = {"seq": 0} if self.ros1 else {}
        return self.store.types["std_msgs/msg/Header"](**extra, stamp=stamp, frame_id=frame_id)

    def joint_state(self, t_ns: int, position, velocity=None):
        position = np.asarray(position, np.float64)
        velocity = np.zeros_like(position) if velocity is None else np.asarray(velocity, np.float64)
        return self.store.types[JOINT_STATE](header=self.header(t_ns), name=[], position=position,
                                             velocity=velocity, effort=np.zeros_like(position))


def _transport(rng, stamps: np.ndarray) -> np.ndarray:
    return stamps + rng.integers(int(TRANSPORT_S[0] * 1e9), int(TRANSPORT_S[1] * 1e9), len(stamps))


def _sampled(scene: Scene, values: np.ndarray, t0: int, hz: float, lead_s: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Header stamps (ns) at `hz` covering the episode (from a little before its first camera frame) and the
    per-frame `values` (N, ...) linearly interpolated at those times + lead_s."""
    n = scene.num_frames
    times = np.arange(-0.05, n / scene.fps + 0.05, 1 / hz)
    pos = np.clip((times + lead_s) * scene.fps, 0, n - 1)
    flat = values.reshape(n, -1)
    out = np.stack([np.interp(pos, np.arange(n), flat[:, j]) for j in range(flat.shape[1])], axis=1)
    stamps = t0 + np.round(times * 1e9).astype(np.int64) + rng.integers(0, 200_000, len(times))
    return stamps, out.reshape(len(times), *values.shape[1:])


def _stream(rng, topic: str, msgtype: str, stamps: np.ndarray, make: Callable[[int, int], object]) -> Iterator[Event]:
    """One topic's messages in log-time order; make(stamp, sample index) builds a message when it is written."""
    logged = _transport(rng, stamps)
    order = np.argsort(logged, kind="stable")
    return ((int(logged[j]), topic, msgtype, make(int(stamps[j]), j)) for j in order)


def _feedback(bag: _Bag, scene: Scene, t0: int, rng) -> list[Iterator[Event]]:
    """What the joints measure, at FEEDBACK_HZ with sensor noise; grippers 0 = closed .. 100 = open."""
    stamps, q = _sampled(scene, scene.joints, t0, FEEDBACK_HZ, 0.0, rng)
    _, openness = _sampled(scene, scene.openness, t0, FEEDBACK_HZ, 0.0, rng)
    q = q + rng.normal(0, JOINT_NOISE, q.shape)
    speed = np.gradient(q, 1 / FEEDBACK_HZ, axis=0)
    grip = 100.0 * (openness + rng.normal(0, GRIPPER_NOISE, openness.shape))
    torso = TORSO + rng.normal(0, 1e-4, (len(stamps), 4))
    chassis = np.pad(rng.normal(0, 1e-3, (len(stamps), 3)), ((0, 0), (0, 3)))  # 6 velocities, x, y, yaw valid
    makers = {"/hdas/feedback_torso": lambda t, j: bag.joint_state(t, torso[j]),
              "/hdas/feedback_chassis": lambda t, j: bag.joint_state(t, np.zeros(6), chassis[j])}
    for i, side in enumerate(ARMS):
        makers[f"/hdas/feedback_arm_{side}"] = lambda t, j, i=i: bag.joint_state(t, q[j, i], speed[j, i])
        makers[f"/hdas/feedback_gripper_{side}"] = lambda t, j, i=i: bag.joint_state(t, grip[j, i:i + 1])
    return [_stream(rng, topic, JOINT_STATE, stamps, make) for topic, make in makers.items()]


def _targets(bag: _Bag, scene: Scene, t0: int, rng) -> list[Iterator[Event]]:
    """What the teleoperator commands, at TARGET_HZ, TARGET_LEAD_S ahead of the joints with tracking error; the
    torso holds its pose and the chassis is not driven."""
    stamps, q = _sampled(scene, scene.joints, t0, TARGET_HZ, TARGET_LEAD_S, rng)
    _, openness = _sampled(scene, scene.openness, t0, TARGET_HZ, TARGET_LEAD_S, rng)
    q = q + rng.normal(0, 0.002, q.shape)
    grip = 100.0 * (openness + rng.normal(0, GRIPPER_NOISE, openness.shape))
    streams = [_stream(rng, "/motion_target/target_joint_state_torso", JOINT_STATE, stamps,
                       lambda t, j: bag.joint_state(t, TORSO)),
               _stream(rng, "/motion_target/target_speed_chassis", TWIST, stamps, lambda t, j: _twist(bag, t))]
    for i, side in enumerate(ARMS):
        streams.append(_stream(rng, f"/motion_target/target_joint_state_arm_{side}", JOINT_STATE, stamps,
                               lambda t, j, i=i: bag.joint_state(t, q[j, i])))
        streams.append(_stream(rng, f"/motion_target/target_position_gripper_{side}", JOINT_STATE, stamps,
                               lambda t, j, i=i: bag.joint_state(t, grip[j, i:i + 1])))
    return streams


def _twist(bag: _Bag, t_ns: int):
    """A zero chassis velocity command."""
    vec = bag.store.types["geometry_msgs/msg/Vector3"]
    zero = vec(x=0.0, y=0.0, z=0.0)
    twist = bag.store.types["geometry_msgs/msg/Twist"](linear=zero, angular=zero)
    return bag.store.types[TWIST](header=bag.header(t_ns), twist=twist)


def _camera_events(bag: _Bag, scene: Scene, size, rng, stamps: np.ndarray, depth: bool) -> Iterator[Event]:
    """Each frame's images, rendered when the writer gets to them: JPEGs of BGR arrays (as cv_bridge encodes
    the cameras' images), head right = head left, and 16UC1 depth in mm with the colour frame's stamp."""
    w, h = size
    for k, views in enumerate(Renderer(scene, w, h, rng).frames()):
        events = []
        for role, rgb in views.items():
            t = int(stamps[k] - (0 if role == "top" else WRIST_EARLY_S * 1e9 + rng.integers(0, 10**6)))
            jpeg = np.frombuffer(cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes(), np.uint8)
            msg = bag.store.types[COMPRESSED](header=bag.header(t, role), format="bgr8; jpeg compressed bgr8",
                                              data=jpeg)
            topics = [COLOUR[role], HEAD_RIGHT] if role == "top" else [COLOUR[role]]
            events += [(t, topic, COMPRESSED, msg) for topic in topics]
            if depth:
                mm = depth_frame(rgb)
                img = bag.store.types[IMAGE](header=bag.header(t, role), height=h, width=w, encoding="16UC1",
                                             is_bigendian=0, step=2 * w, data=mm.view(np.uint8).ravel())
                events.append((t, DEPTH[role], IMAGE, img))
        logged = _transport(rng, np.array([e[0] for e in events]))
        yield from sorted(((int(t), *e[1:]) for t, e in zip(logged, events)), key=lambda e: e[0])


def _write_meta(out: Path, scene: Scene, name: str, stamps: np.ndarray, rng) -> None:
    """Adds the episode to its task folder's raw_data_meta.json: annotations on header time, a few frames off
    the true subtask boundaries (human labels)."""
    path = out / scene.task_name / "raw_data_meta.json"
    meta = json.loads(path.read_text()) if path.exists() else {
        "rawDataSetName": scene.task_name.title() + DATASET_SUFFIX, "rawDataList": []}
    n = scene.num_frames
    edges = np.append(stamps, stamps[-1] + int(1e9 / scene.fps))

    def at(frame: int) -> dict:
        t = int(edges[int(np.clip(frame + rng.integers(-2, 3), 0, n))])
        return {"Second": t // 10**9, "NanoSecond": t % 10**9}

    annotations = []
    for s in scene.subtasks:
        start, end = at(s.start_frame), at(s.end_frame)
        annotations.append({"text": s.instruction.capitalize(), **{f"start{k}": v for k, v in start.items()},
                            **{f"end{k}": v for k, v in end.items()}, "actionQualityLabel": "qualified"})
    entry = {"name": name, "path": f"{scene.task_name}/{name}", "robotType": ROBOT_TYPE, "annotations": annotations}
    meta["rawDataList"] = [e for e in meta["rawDataList"] if e["name"] != name] + [entry]
    path.write_text(json.dumps(meta, indent=1))


def write(out: Path, index: int, scene: Scene, size: tuple[int, int], rng, variant: str, depth: bool = False) -> str:
    """One episode as <task>/episode_{index}.<mcap|bag> with its raw_data_meta.json entry; returns its key."""
    key = f"{scene.task_name}/episode_{index}.{variant}"
    path = out / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    n = scene.num_frames
    t0 = recording_start(index) * 10**9 + int(rng.integers(0, 10**9))
    stamps = t0 + np.round((np.arange(n) / scene.fps + rng.normal(0, STAMP_JITTER_S, n)) * 1e9).astype(np.int64)
    with _Bag(path) as bag:
        streams = _feedback(bag, scene, t0, rng) + _targets(bag, scene, t0, rng)
        streams.append(_camera_events(bag, scene, size, rng, stamps, depth))
        for t, topic, msgtype, msg in heapq.merge(*streams, key=lambda e: e[0]):
            bag.write(t, topic, msgtype, bag.serialize(msg, msgtype))
    _write_meta(out, scene, path.name, stamps, rng)
    write_truth(out, key, "galaxea", scene)
    return key


def rewrite_bag(path: Path, change: Callable[[_Bag, str, str, int, bytes], bytes | None]) -> None:
    """Copies a bag message by message through change(bag, topic, msgtype, index on topic, data), which returns
    the data to keep (None drops the message)."""
    tmp = path.with_name("rewrite_" + path.name)
    counts: dict[str, int] = {}
    with AnyReader([path]) as reader, _Bag(tmp) as bag:
        for conn, t, data in reader.messages():
            i = counts[conn.topic] = counts.get(conn.topic, -1) + 1
            if (data := change(bag, conn.topic, conn.msgtype, i, data)) is not None:
                bag.write(t, conn.topic, conn.msgtype, data)
    tmp.replace(path)


def missing_camera_topic(out: Path, key: str, fmt: str) -> None:
    """The right wrist camera was not recorded."""
    rewrite_bag(out / key, lambda bag, topic, msgtype, i, data: None if topic == COLOUR["right_wrist"] else data)


def topic_gap(out: Path, key: str, fmt: str) -> None:
    """The left arm's feedback stalls for GAP_S in the middle of the episode."""
    with AnyReader([out / key]) as reader:
        start, end = reader.start_time, reader.end_time
    mid = (start + end) // 2
    rewrite_bag(out / key, lambda bag, topic, msgtype, i, data: None if topic == "/hdas/feedback_arm_left" and
                mid <= _stamp(bag, data, msgtype) < mid + GAP_S * 1e9 else data)


def _stamp(bag: _Bag, data: bytes, msgtype: str) -> int:
    stamp = bag.deserialize(data, msgtype).header.stamp
    return stamp.sec * 10**9 + stamp.nanosec


def corrupt_jpeg(out: Path, key: str, fmt: str) -> None:
    """One left wrist frame's bytes are garbage (no JPEG marker: bytes below 0xFF)."""
    def change(bag, topic, msgtype, i, data):
        if topic != COLOUR["left_wrist"] or i != CORRUPT_FRAME:
            return data
        msg = bag.deserialize(data, msgtype)
        msg.data = np.random.default_rng(0).integers(0, 255, len(msg.data) // 2, np.uint8)
        return bag.serialize(msg, msgtype)

    rewrite_bag(out / key, change)


def truncated_bag(out: Path, key: str, fmt: str) -> None:
    os.truncate(out / key, (out / key).stat().st_size * 6 // 10)


FAULTS = {f.__name__: f for f in (missing_camera_topic, topic_gap, corrupt_jpeg, truncated_bag)}
