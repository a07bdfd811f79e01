"""Static removal and clip cutting: accuracy against the sample recordings' ground truth, and unit behaviour."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.ingest import run_ingest
from pipeline.evaluate import catalog_accuracy
from pipeline.segment import clips_from_signals, gripper_events
from pipeline.static import static_mask
from schemas.robot import load_robot
from tests.conftest import truth

log = logging.getLogger(__name__)
ROBOTS = {"aloha": "aloha", "agibot": "agibot_g1"}


@pytest.fixture(scope="module")
def signal_segmentation(samples, ray_local, tmp_path_factory):
    """AgiBot again, but cut from robot signals: the accuracy target holds without human labels too."""
    out = tmp_path_factory.mktemp("signals")
    run_ingest(samples / "agibot", out, ignore_labels=True, progress=False)
    return out


def test_accuracy_targets_on_both_formats(ingested, signal_segmentation, capsys):
    measured = catalog_accuracy(ingested.out, truth)
    measured["agibot (signals)"] = catalog_accuracy(signal_segmentation, truth)["agibot"]
    with capsys.disabled():
        for fmt, m in sorted(measured.items()):
            print(f"\n[accuracy] {fmt}: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                                     for k, v in m.items()))
    for fmt, m in measured.items():
        assert m["episodes"] >= 8
        assert m["boundary_f1"] >= 0.9, (fmt, m)
        assert m["static_precision"] >= 0.95, (fmt, m)
        assert m["static_recall"] >= 0.9, (fmt, m)


def test_source_labels_are_kept_as_clips(ingested):
    clips = pq.read_table(ingested.out / "catalog" / "clips.parquet").to_pylist()
    episodes = {e["episode_id"]: e for e in pq.read_table(ingested.out / "catalog" / "episodes.parquet").to_pylist()}
    agibot = [c for c in clips if episodes[c["episode_id"]]["source_format"] == "agibot"]
    aloha = [c for c in clips if episodes[c["episode_id"]]["source_format"] == "aloha"]
    assert agibot and all(c["origin"] == "source_labels" and c["source_text"] for c in agibot)
    assert aloha and all(c["origin"] == "signals" and c["source_text"] is None for c in aloha)
    for c in agibot:  # a label's text is the instruction of the subtask it overlaps most
        gt = truth(episodes[c["episode_id"]])
        best = max(gt["subtasks"], key=lambda s: min(s["end_frame"], c["end_frame"]) - max(s["start_frame"], c["start_frame"]))
        assert c["source_text"].lower().startswith(best["instruction"])


def _robot():
    return load_robot("aloha")


def test_still_robot_is_static_and_moving_robot_is_not():
    robot, fps = _robot(), 50
    rng = np.random.default_rng(0)
    n = 5 * fps
    state = np.zeros((n, 14)) + rng.normal(0, 0.0008, (n, 14))
    state[:, [6, 13]] += 1.0
    moving = slice(2 * fps, 3 * fps)
    state[moving, 0] += np.linspace(0, 1.0, fps)
    state[3 * fps:, 0] += 1.0
    visual = np.full(n, 1.0)
    visual[moving] = 20.0
    static = static_mask(state.astype(np.float32), visual, robot)
    assert static[: 2 * fps - 10].all() and static[3 * fps + 10:].all()
    assert not static[moving].any()
    visual[:] = 20.0  # the joints rest but something moves in view: not static
    assert not static_mask(state.astype(np.float32), visual, robot).any()


def test_short_pause_is_not_static():
    robot, fps = _robot(), 50
    n = 4 * fps
    state = np.zeros((n, 14), np.float32)
    state[:, [6, 13]] = 1.0
    t = np.arange(n) / fps
    state[:, 0] = np.minimum(t, 1.8) + np.maximum(t - 2.2, 0)  # a 0.4 s hold inside motion
    assert not static_mask(state, np.zeros(n), robot).any()


def test_gripper_transition_is_a_cut():
    robot, fps = _robot(), 50
    n = 6 * fps
    state = np.zeros((n, 14), np.float32)
    state[:, [6, 13]] = 1.0
    ramp = np.clip((np.arange(n) - 3 * fps) / (0.5 * fps), 0, 1)
    state[:, 6] = 1.0 - 0.85 * ramp  # left gripper closes over 3.0-3.5 s
    state[:, 7] = np.sin(np.arange(n) / fps * 2.0)  # the right arm keeps moving throughout
    assert abs(gripper_events(state, robot)[0] - 3.5 * fps) <= 2
    clips = clips_from_signals(state, np.zeros(n, bool), robot)
    assert any(abs(c.end - 3.5 * fps) <= 2 for c in clips)
    assert clips[0].start == 0 and clips[-1].end == n


def test_clip_lengths_are_bounded():
    robot = _robot()
    fps = robot.fps
    n = int(50 * fps)
    state = np.zeros((n, 14), np.float32)
    state[:, [6, 13]] = 1.0
    state[:, 0] = np.sin(np.arange(n) / fps * 0.3)  # one long slow motion, no pauses
    clips = clips_from_signals(state, np.zeros(n, bool), robot)
    lengths = [(c.end - c.start) / fps for c in clips]
    assert len(clips) >= 3 and max(lengths) <= robot.segmentation.clip_max_s
    assert min(lengths) >= robot.segmentation.clip_min_s
    assert [c.start for c in clips[1:]] == [c.end for c in clips[:-1]]
