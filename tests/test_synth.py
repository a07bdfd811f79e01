"""Sample recordings: deterministic, in the real on-disk layouts, with views that show what happens."""

from __future__ import annotations

import json

import av
import cv2
import h5py
import numpy as np
import pytest

from synth.faults import FAULTS
from synth.generate import generate
from synth.render import Renderer
from synth.scene import make_scene


def _h5_arrays(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        out["attrs"] = dict(f.attrs)
    return out


def test_same_seed_same_recording_other_seed_differs(tmp_path):
    for seed, name in ((3, "a"), (3, "b"), (4, "c")):
        generate("aloha", 1, seed, tmp_path / name, size=(96, 72))
    key = next((tmp_path / "a").rglob("episode_0.hdf5")).relative_to(tmp_path / "a")
    a, b = _h5_arrays(tmp_path / "a" / key), _h5_arrays(tmp_path / "b" / key)
    assert a.keys() == b.keys()
    for k in a:
        if k != "attrs":
            np.testing.assert_array_equal(a[k], b[k])
    c = next((tmp_path / "c").rglob("episode_0.hdf5"))
    assert not np.array_equal(_h5_arrays(c)["observations/qpos"][:50], a["observations/qpos"][:50])


def test_aloha_layout_matches_the_recorders(tmp_path):
    generate("aloha", 2, 0, tmp_path, size=(96, 72), raw_images_every=2)
    jpeg, raw = sorted(tmp_path.rglob("episode_*.hdf5"), key=lambda p: p.name)
    with h5py.File(jpeg) as f:
        T = f["observations/qpos"].shape[0]
        assert f.attrs["sim"] is np.False_ and f.attrs["compress"] is np.True_
        for k in ("observations/qpos", "observations/qvel", "observations/effort", "action"):
            assert f[k].shape == (T, 14) and f[k].dtype == np.float32
        assert f["compress_len"].shape == (3, T)
        assert sorted(f["observations/images"]) == ["cam_high", "cam_left_wrist", "cam_right_wrist"]
        row = f["observations/images/cam_high"][5]
        assert row.ndim == 1 and f["observations/images/cam_high"].shape[1] >= f["compress_len"][()].max()
        img = cv2.imdecode(row, cv2.IMREAD_COLOR)
        assert img.shape == (72, 96, 3)
        grip = f["observations/qpos"][:, [6, 13]]
        assert grip.min() > -0.05 and grip.max() < 1.05  # normalized gripper, 1 = open
        assert "timestamp" not in f and "observations/timestamp" not in f
    with h5py.File(raw) as f:
        assert f.attrs["compress"] is np.False_
        assert f["observations/images/cam_left_wrist"].shape[1:] == (72, 96, 3)
        assert "compress_len" not in f


def test_agibot_layout_matches_agibot_world(tmp_path):
    generate("agibot", 1, 0, tmp_path, size=(96, 72))
    (task,) = (tmp_path / "task_info").glob("task_*.json")
    entry = json.loads(task.read_text())[0]
    task_id, ep = task.stem.split("_")[1], str(entry["episode_id"])
    with h5py.File(tmp_path / "proprio_stats" / task_id / ep / "proprio_stats.h5") as f:
        ts = f["timestamp"][()]
        N = len(ts)
        assert ts.dtype == np.int64 and np.all(np.diff(ts) > 0) and 30e6 < np.median(np.diff(ts)) < 37e6
        assert f["state/joint/position"].shape == (N, 14) and f["state/joint/position"].dtype == np.float64
        mm = f["state/effector/position"][()]
        assert mm.shape == (N, 2) and 30 < mm.min() and mm.max() < 125
        assert f["action/effector/position"][()].min() >= 0 and f["action/effector/position"][()].max() <= 1
        assert f["state/joint/effort"].shape == (0,) and f["state/joint/effort"].dtype == np.float32
    for cam in ("head_color", "hand_left_color", "hand_right_color"):
        with av.open(str(tmp_path / "observations" / task_id / ep / "videos" / f"{cam}.mp4")) as c:
            s = c.streams.video[0]
            assert s.codec_context.name == "libdav1d" or s.codec_context.name.startswith("av1")
            assert s.average_rate == 30
            assert sum(1 for _ in c.decode(s)) == N
    spans = entry["label_info"]["action_config"]
    assert all(a["start_frame"] < a["end_frame"] <= N for a in spans) and all(a["action_text"] for a in spans)


def test_ground_truth_is_consistent(samples):
    for path in samples.rglob("ground_truth/*.json"):
        gt = json.loads(path.read_text())
        sub = [(s["start_frame"], s["end_frame"]) for s in gt["subtasks"]]
        idle = [(s["start_frame"], s["end_frame"]) for s in gt["static_spans"]]
        assert len(sub) >= 4 and all(s["instruction"] for s in gt["subtasks"])
        spans = sorted(sub + idle)
        assert spans[0][0] == 0 and spans[-1][1] == gt["num_frames"]  # idle head and tail
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, no overlap
        assert idle[0][0] == 0 and idle[-1][1] == gt["num_frames"]


def test_views_show_the_arms_and_wrist_cameras_move_with_their_arm():
    rng = np.random.default_rng(5)
    scene = make_scene("handover", 30, 6, rng)
    frames = list(Renderer(scene, 160, 120, rng).frames())
    pick = scene.subtasks[0]  # only the left arm moves while picking up

    def change(role, a, b):
        return np.abs(frames[a][role].astype(int) - frames[b][role].astype(int)).mean()

    a, b = pick.start_frame, pick.end_frame - 1
    assert change("left_wrist", a, b) > 4 * change("right_wrist", a, b)
    assert change("top", a, b) > 3 * change("top", 0, 5)  # noise alone changes little
    grip = scene.subtasks[0].end_frame - int(0.6 * scene.fps)  # the left gripper closing
    assert change("left_wrist", grip, pick.end_frame - 1) > 2 * change("left_wrist", 0, 5)


@pytest.mark.parametrize("fmt", ["aloha", "agibot"])
def test_faults_are_declared_per_format(fmt, tmp_path):
    with pytest.raises(ValueError, match="do not apply"):
        generate(fmt, 1, 0, tmp_path, faults=["no_such_fault"])
    assert FAULTS[fmt]
