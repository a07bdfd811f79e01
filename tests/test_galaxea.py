"""Galaxea R1 Pro ROS bags (ROS 2 MCAP and ROS 1): resampling onto the head camera clock, colour order, depth,
human labels from raw_data_meta.json, segmentation accuracy and quarantine of broken recordings."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from jobs.ingest import run_ingest
from pipeline import adapters, storage
from pipeline.adapters import galaxea
from schemas.episode import QuarantineError
from schemas.robot import load_robot
from synth.formats import truth_of
from synth.galaxea import COLOUR, rewrite_bag
from synth.generate import generate
from tests.conftest import generated_truths

ROBOT = load_robot("galaxea_r1_pro")
GOOD = 4  # per variant: 8 episodes pooled for the accuracy targets
SEEDS = {"mcap": 5, "bag": 6}  # the mcap episodes keep their raw_data_meta.json, the bag ones lose it
FAULT_CODES = {"missing_camera_topic": "missing_topic", "topic_gap": "signal_gap", "corrupt_jpeg": "corrupt_image",
               "truncated_bag": "unreadable_bag"}
REASONS = {"missing_camera_topic": "no /hdas/camera_wrist_right/color/image_raw/compressed",
           "topic_gap": "/hdas/feedback_arm_left: no message within 0.1 s",
           "corrupt_jpeg": "/hdas/camera_wrist_left/color/image_raw/compressed frame 7: image does not decode",
           "truncated_bag": "{name} (scan): AnyReaderError"}


@pytest.fixture(scope="module")
def batch(tmp_path_factory, ray_local):
    """Per variant GOOD good episodes and one per fault, ingested together as R1 Pro."""
    raw = tmp_path_factory.mktemp("galaxea") / "raw"
    for variant, seed in SEEDS.items():
        generate("galaxea", GOOD + len(FAULT_CODES), seed, raw / variant, size=(128, 96), faults=list(FAULT_CODES),
                 variant=variant)
    for meta in (raw / "bag").rglob(galaxea.META):
        meta.unlink()
    out = tmp_path_factory.mktemp("galaxea_out")
    return raw, out, run_ingest(raw, out, robot=ROBOT.name, progress=False)


def _good(raw, variant):
    truths = generated_truths(raw / variant)
    faulted = {gt["source_key"] for gt in truths if "fault" in gt}
    refs = adapters.discover(raw / variant, ["galaxea"])
    return sorted((r for r in refs if r.key not in faulted), key=lambda r: r.key)


def test_clips_come_from_labels_only_where_the_meta_file_is(batch):
    _, out, _ = batch
    episodes = {e["episode_id"]: e for e in pq.read_table(out / "catalog" / "episodes.parquet").to_pylist()}
    clips = pq.read_table(out / "catalog" / "clips.parquet").to_pylist()
    origins = {}
    for c in clips:
        origins.setdefault(episodes[c["episode_id"]]["source_key"].rsplit(".", 1)[1], set()).add(c["origin"])
    assert origins == {"mcap": {"source_labels"}, "bag": {"signals"}}
    for c in clips:  # a label's text is the instruction of the subtask it overlaps most
        if c["origin"] == "source_labels":
            gt = truth_of(episodes[c["episode_id"]])
            best = max(gt["subtasks"], key=lambda s: min(s["end_frame"], c["end_frame"]) - max(s["start_frame"],
                                                                                           c["start_frame"]))
            assert c["source_text"].lower() == best["instruction"]
    for e in episodes.values():  # from rawDataSetName ('Put_Away_20240703_001' -> 'put away'), else the folder
        task = truth_of(e)["task"]
        assert e["task_name"] == (task.replace("_", " ") if e["source_key"].endswith(".mcap") else task)


def test_each_fault_is_quarantined_while_good_episodes_finish(batch):
    raw, out, result = batch
    quarantine = {q["source_uri"]: q for q in pq.read_table(out / "catalog" / "quarantine.parquet").to_pylist()}
    seen = set()
    for variant in SEEDS:
        for gt in (gt for gt in generated_truths(raw / variant) if "fault" in gt):
            q = quarantine[str(raw / variant / gt["source_key"])]
            assert q["reason_code"] == FAULT_CODES[gt["fault"]], (variant, gt["fault"], q)
            expected = REASONS[gt["fault"]].format(name=gt["source_key"].split("/")[-1])
            assert expected in q["reason"], (variant, gt["fault"], q["reason"])
            if gt["fault"] == "topic_gap":  # the 2 s without left arm feedback, less one sample period
                assert 1.9 <= float(re.search(r"largest gap ([\d.]+) s", q["reason"])[1]) <= 2.0
            seen.add((variant, gt["fault"]))
    assert seen == {(v, f) for v in SEEDS for f in FAULT_CODES} and len(quarantine) == len(seen)
    episodes = pq.read_table(out / "catalog" / "episodes.parquet").to_pylist()
    assert len(episodes) == 2 * GOOD and all(e["num_clips"] > 0 and e["robot"] == ROBOT.name for e in episodes)
    assert result.discovered == 2 * (GOOD + len(FAULT_CODES))


def test_nearest_previous_sample():
    stamps = np.array([10, 20, 30, 30, 50])
    idx, gap = galaxea.nearest_previous(stamps, np.array([5, 10, 19, 21, 30, 49, 60]))
    # 19 takes 10 although 20 is nearer (no data from the future); before the first: the first; a tie: the last
    np.testing.assert_array_equal(idx, [0, 0, 0, 1, 3, 3, 4])
    np.testing.assert_array_equal(gap, [5, 0, 9, 1, 0, 19, 10])


def test_signals_on_the_camera_clock(batch):
    raw, _, _ = batch
    ref = _good(raw, "mcap")[0]
    ep = adapters.read(ref, ROBOT)
    with AnyReader([raw / "mcap" / ref.key]) as reader:
        def stamped(topic):
            conns = [c for c in reader.connections if c.topic == topic]
            msgs = [reader.deserialize(d, c.msgtype) for c, _, d in reader.messages(conns)]
            return np.array([m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in msgs]), msgs
        head, _ = stamped(COLOUR["top"])
        arm, msgs = stamped("/hdas/feedback_arm_right")
        wrist, images = stamped(COLOUR["left_wrist"])
    np.testing.assert_allclose(ep.timestamps, (head - head[0]) / 1e9)
    assert ep.recorded_at.timestamp() == pytest.approx(head[0] / 1e9)
    for k in (0, 50, ep.num_frames - 1):
        j = max(0, np.searchsorted(arm, head[k], side="right") - 1)
        assert arm[j] <= head[k] or j == 0
        np.testing.assert_array_equal(ep.state[k, 7:14], np.float32(msgs[j].position[:7]))
    assert ep.state.shape == ep.action.shape == (ep.num_frames, 23)
    assert ROBOT.grippers["left"].openness(ep.state[0, 14]) == pytest.approx(1.0, abs=0.02)  # starts open
    assert np.abs(ep.action[:, 20:]).max() == 0.0 and np.abs(ep.state[:, 20:]).max() < 0.01  # chassis still
    frames = [list(c.frames()) for c in ep.cameras]
    assert [len(f) for f in frames] == [ep.num_frames] * 3
    for k in (3, 60):  # the wrist camera fires just before the head one: frame k takes wrist image k
        assert wrist[k] <= head[k] < wrist[k + 1]
        bgr = cv2.imdecode(np.asarray(images[k].data, np.uint8), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(frames[1][k], cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def test_red_stays_red(tmp_path):
    generate("galaxea", 1, 0, tmp_path, size=(64, 48), variant="mcap")
    (ref,) = adapters.discover(tmp_path)
    rgb = np.full((48, 64, 3), 128, np.uint8)
    rgb[10:30, 10:30] = (255, 0, 0)
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1]  # BGR, as the cameras encode

    def red_first_frame(bag, topic, msgtype, i, data):
        if topic != COLOUR["top"] or i:
            return data
        msg = bag.deserialize(data, msgtype)
        msg.data = jpeg.ravel()
        return bag.serialize(msg, msgtype)

    rewrite_bag(tmp_path / ref.key, red_first_frame)
    frame = next(iter(adapters.read(ref, ROBOT).cameras[0].frames()))
    r, g, b = frame[20, 20].astype(int)
    assert r > 200 and g < 60 and b < 60, (r, g, b)


def test_depth_streams_only_with_depth(batch, tmp_path):
    raw, _, _ = batch
    assert adapters.read(_good(raw, "bag")[0], ROBOT).depth == []
    generate("galaxea", 1, 0, tmp_path, size=(64, 48), variant="bag", depth=True)
    (ref,) = adapters.discover(tmp_path)
    ep = adapters.read(ref, ROBOT)
    assert [(d.name, d.role) for d in ep.depth] == [(f"{c.name}_depth", c.role) for c in ROBOT.cameras]
    frames = list(ep.depth[1].frames())
    assert len(frames) == ep.num_frames and frames[0].dtype == np.uint16 and frames[0].shape == (48, 64)
    assert 200 <= frames[0].min() and frames[0].max() <= 2000  # mm, as synth.render.depth_frame draws them


def test_discovery_and_robot_hint(tmp_path):
    """Bare .mcap and .bag files and a rosbag2 folder; a task folder's meta file belongs to each recording in it."""
    raw = tmp_path / "raw"
    keys = generate("galaxea", 2, 0, raw, size=(64, 48), variant="mcap")
    keys += generate("galaxea", 2, 0, raw, size=(64, 48), variant="bag")  # same names, beside the .mcap files
    task, name = keys[0].split("/")
    with AnyReader([raw / keys[0]]) as reader, Writer(raw / task / "session_7", version=9,
                                                      storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=reader.typestore)
                 for c in reader.connections}
        for c, t, data in reader.messages():
            writer.write(conns[c.id], t, data)
    refs = {r.key: r for r in adapters.discover(tmp_path)}
    in_folder = f"{task}/session_7/session_7.mcap"
    assert sorted(refs) == sorted([*keys, in_folder])
    assert all(r.root == str(raw) and r.source_format == "galaxea" for r in refs.values())
    meta = f"{task}/{galaxea.META}"
    assert refs[keys[0]].files == (keys[0], meta)
    assert refs[in_folder].files == (in_folder, f"{task}/session_7/metadata.yaml", meta)
    assert galaxea.robot_hint(refs[keys[0]], storage.read_json) == "galaxea_r1_pro"
    assert galaxea.robot_hint(refs[in_folder], storage.read_json) == ""  # the meta file does not list it
    np.testing.assert_array_equal(adapters.read(refs[in_folder], ROBOT).state,
                                  adapters.read(refs[keys[0]], ROBOT).state)
    inside = {r.key: r for r in adapters.discover(raw / task)}  # ingest given the task folder itself
    assert inside[name].root == str(raw / task) and inside[name].files == (name, galaxea.META)


def test_wrong_robot_and_frame_rate_are_named(batch):
    raw, _, _ = batch
    ref = _good(raw, "bag")[0]
    with pytest.raises(QuarantineError) as e:
        adapters.read(ref, load_robot("galaxea_r1_lite"))
    assert e.value.code == "robot_mismatch" and "--robot galaxea_r1_pro" in e.value.detail
    with pytest.raises(QuarantineError) as e:
        adapters.read(ref, ROBOT.model_copy(update={"fps": 30.0}))
    assert e.value.code == "frame_rate" and re.search(r"runs at 1[45]\.\d\d Hz", e.value.detail)
