"""RoboTwin 2.0 (classic and XPolicyLab layouts): discovery beside ALOHA, the state/action convention, colour
order, depth, segmentation accuracy and quarantine of broken recordings."""

from __future__ import annotations

import json
import re

import cv2
import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.ingest import run_ingest
from pipeline import adapters
from schemas.episode import QuarantineError
from schemas.robot import load_robot
from synth.generate import generate
from tests.conftest import generated_truths

ROBOT = load_robot("robotwin_aloha_agilex")
GOOD = 4  # per layout: 8 episodes pooled for the accuracy targets
SEEDS = {"classic": 5, "xpolicy": 6}
FAULT_CODES = {"camera_short": "frame_count_mismatch", "corrupt_jpeg": "corrupt_image",
               "truncated_hdf5": "unreadable_hdf5", "missing_camera": "missing_camera"}
REASONS = {  # what each fault's reason must name, per layout
    "classic": {"camera_short": "left_camera has", "corrupt_jpeg": "camera left_camera frame 7: JPEG does not decode",
                "truncated_hdf5": "truncated", "missing_camera": "/observation/right_camera/rgb"},
    "xpolicy": {"camera_short": "left_camera has", "corrupt_jpeg": "camera left_camera frame 7: JPEG does not decode",
                "truncated_hdf5": "truncated", "missing_camera": "/vision/cam_right_wrist/colors"},
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory, ray_local):
    """Per layout GOOD good episodes and one per fault, ingested together."""
    raw = tmp_path_factory.mktemp("robotwin") / "raw"
    for layout, seed in SEEDS.items():
        generate("robotwin", GOOD + len(FAULT_CODES), seed, raw / layout, size=(128, 96), faults=list(FAULT_CODES),
                 variant=layout)
    out = tmp_path_factory.mktemp("robotwin_out")
    return raw, out, run_ingest(raw, out, progress=False)


def _refs(root, layout=None):
    refs = [r for r in adapters.discover(root, ["robotwin"]) if layout is None or r.root.endswith(layout)]
    return sorted(refs, key=lambda r: r.key)


def _good(raw, layout):
    truths = generated_truths(raw / layout)
    faulted = {gt["source_key"] for gt in truths if "fault" in gt}
    return [r for r in _refs(raw, layout) if r.key not in faulted]


def test_each_fault_is_quarantined_while_good_episodes_finish(batch):
    raw, out, result = batch
    quarantine = {q["source_key"]: q for q in pq.read_table(out / "catalog" / "quarantine.parquet").to_pylist()}
    seen = set()
    for layout in SEEDS:
        for gt in (gt for gt in generated_truths(raw / layout) if "fault" in gt):
            q = quarantine[gt["source_key"]]
            assert q["reason_code"] == FAULT_CODES[gt["fault"]], (layout, gt["fault"], q)
            assert REASONS[layout][gt["fault"]] in q["reason"], (layout, gt["fault"], q["reason"])
            if gt["fault"] == "camera_short":  # "<T> joint samples but left_camera has <T - 10> frames"
                total, short = map(int, re.findall(r"\d+", q["reason"]))
                assert total - short == 10
            seen.add((layout, gt["fault"]))
    assert seen == {(layout, f) for layout in SEEDS for f in FAULT_CODES} and len(quarantine) == len(seen)
    episodes = pq.read_table(out / "catalog" / "episodes.parquet").to_pylist()
    assert len(episodes) == 2 * GOOD and all(e["num_clips"] > 0 and e["robot"] == ROBOT.name for e in episodes)
    assert result.discovered == 2 * (GOOD + len(FAULT_CODES))


def test_mixed_folder_is_discovered_once_per_recording(tmp_path):
    """ALOHA and both RoboTwin layouts in one folder, even under the same task folder names."""
    expected = {("aloha", k) for k in generate("aloha", 2, 1, tmp_path, size=(64, 48))}
    for layout in SEEDS:
        expected |= {("robotwin", k) for k in generate("robotwin", 2, 1, tmp_path, size=(64, 48), variant=layout)}
    refs = adapters.discover(tmp_path)
    assert sorted((r.source_format, r.key) for r in refs) == sorted(expected)
    assert all(r.root == str(tmp_path) for r in refs)
    robotwin = [r for r in refs if r.source_format == "robotwin"]
    assert all(len(r.files) == 2 and r.files[1].endswith(".json") for r in robotwin)  # the instruction json


def test_classic_state_is_the_target_and_action_the_next_one(batch):
    raw, _, _ = batch
    ref = _good(raw, "classic")[0]
    with h5py.File(raw / "classic" / ref.key) as f:
        vector = f["joint_action/vector"][()]
    ep = adapters.read(ref, ROBOT)
    np.testing.assert_array_equal(ep.state, vector[:-1].astype(np.float32))
    np.testing.assert_array_equal(ep.action, vector[1:].astype(np.float32))
    assert ep.num_frames == len(vector) - 1 and sum(1 for _ in ep.cameras[0].frames()) == ep.num_frames
    np.testing.assert_allclose(ep.timestamps, np.arange(ep.num_frames) / 15)
    seen = json.loads((raw / "classic" / ref.files[1]).read_text())["seen"]
    assert ep.task_name == seen[0] and " " in ep.task_name and ep.recorded_at.year == 2024  # the instruction
    assert ROBOT.grippers["left"].openness(ep.state[0, 6]) == 1.0  # the scene starts with open grippers


def test_xpolicy_state_and_action_are_taken_as_given(batch):
    raw, _, _ = batch
    ref = _good(raw, "xpolicy")[0]
    ep = adapters.read(ref, ROBOT)
    with h5py.File(raw / "xpolicy" / ref.key) as f:
        left = f["state/left_arm_joint_states"][()]
        n = len(left)
        np.testing.assert_array_equal(ep.state[:, :6], left)
        np.testing.assert_array_equal(ep.action[:, 13], f["action/right_ee_joint_states"][()].ravel())
        seen = json.loads(f["instructions"][()])
    assert ep.num_frames == n and [c.name for c in ep.cameras] == ROBOT.camera_names
    np.testing.assert_array_equal(ep.action[:-1], ep.state[1:])  # XPolicyLab's action is the next frame's state
    assert ep.task_name == seen[0] and " " in ep.task_name


@pytest.mark.parametrize("layout", list(SEEDS))
def test_red_stays_red(layout, tmp_path):
    generate("robotwin", 1, 0, tmp_path, size=(64, 48), variant=layout)
    (ref,) = _refs(tmp_path)
    img = np.full((48, 64, 3), 128, np.uint8)
    img[10:30, 10:30] = (255, 0, 0)  # RGB red, handed to imencode as the simulator does
    jpeg = cv2.imencode(".jpg", img)[1].tobytes()
    with h5py.File(tmp_path / ref.key, "a") as f:
        data = f["observation/head_camera/rgb" if layout == "classic" else "vision/cam_head/colors"]
        assert len(jpeg) <= data.dtype.itemsize
        data[0] = jpeg
    frame = next(iter(adapters.read(ref, ROBOT).cameras[0].frames()))
    r, g, b = frame[20, 20].astype(int)
    assert r > 200 and g < 60 and b < 60, (r, g, b)


@pytest.mark.parametrize("layout", list(SEEDS))
def test_depth_streams_only_with_depth(layout, batch, tmp_path):
    raw, _, _ = batch
    assert adapters.read(_good(raw, layout)[0], ROBOT).depth == []
    generate("robotwin", 1, 0, tmp_path, size=(64, 48), variant=layout, depth=True)
    (ref,) = _refs(tmp_path)
    ep = adapters.read(ref, ROBOT)
    assert [(d.name, d.role) for d in ep.depth] == [(f"{c.name}_depth", c.role) for c in ROBOT.cameras]
    frames = list(ep.depth[0].frames())
    assert len(frames) == ep.num_frames and frames[0].dtype == np.uint16 and frames[0].shape == (48, 64)
    assert 200 <= frames[0].min() and frames[0].max() <= 2000  # mm, as synth.render.depth_frame draws them


@pytest.mark.parametrize("dataset,code", [("joint_action/vector", "missing_dataset"),
                                          ("observation/left_camera", "missing_camera")])
def test_missing_datasets_are_named(dataset, code, tmp_path):
    generate("robotwin", 1, 0, tmp_path, size=(64, 48), variant="classic")
    (ref,) = _refs(tmp_path)
    with h5py.File(tmp_path / ref.key, "a") as f:
        del f[dataset]
    with pytest.raises(QuarantineError) as e:
        adapters.read(ref, ROBOT)
    assert e.value.code == code and dataset in e.value.detail


def test_layouts_match_robotwin(batch):
    raw, _, _ = batch
    ref = _good(raw, "classic")[0]
    with h5py.File(raw / "classic" / ref.key) as f:
        T = f["joint_action/vector"].shape[0]
        assert f["joint_action/left_arm"].shape == (T, 6) and f["joint_action/left_gripper"].shape == (T,)
        assert f["endpose/left_endpose"].shape == (T, 7) and f["pointcloud"].shape == (T, 0)
        rgb = f["observation/head_camera/rgb"]
        assert rgb.dtype.kind == "S" and rgb.shape == (T,)
        rows = [rgb[i] for i in range(T)]
        assert all(r.endswith(b"\xff\xd9") for r in rows)
        assert min(map(len, rows)) < rgb.dtype.itemsize  # the shorter rows are NUL-padded
    instructions = json.loads((raw / "classic" / ref.files[1]).read_text())
    assert instructions["seen"] and instructions["unseen"] and ref.files[1] == ref.key.replace("/data/", "/instructions/")[:-4] + "json"
    ref = _good(raw, "xpolicy")[0]
    with h5py.File(raw / "xpolicy" / ref.key) as f:
        assert f["additional_info/frequency"][()] == 15 and f.attrs["source_format"] == "RoboTwin"
        assert json.loads(f["instructions"][()]) == json.loads((raw / "xpolicy" / ref.files[1]).read_text())["seen"]
        assert f["state/left_ee_joint_states"].dtype == np.float32
