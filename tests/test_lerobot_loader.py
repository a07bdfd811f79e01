"""Our export, loaded by the official lerobot 0.4.4 `LeRobotDataset` (in its own virtualenv, offline) with a
50-step action chunk: values, frames, tasks and episode boundaries must be exactly the source's."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.export import run_export
from pipeline.video import decode_frames
from tests.conftest import EXPORT_SIZE

REPO = Path(__file__).resolve().parents[1]
HORIZON = 50
MIN_PSNR_DB = 30.0  # lossy codec at CRF 30: 30 dB is a faithful frame; a wrong frame scores far lower


def _probe(python: str, root: Path, indices: list[int], tmp_path: Path) -> dict:
    out = tmp_path / f"{root.name}.npz"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([python, str(REPO / "tests" / "lerobot_probe.py"), str(root), str(out), str(HORIZON),
                           *map(str, indices)], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def _check(python: str, catalog: Path, dataset: Path, tmp_path: Path, copies: int = 1) -> float:
    """`copies`: the dataset holds the catalog's clips that many times over (a merge of a dataset with itself)."""
    info = json.loads((dataset / "meta" / "info.json").read_text())
    episodes = pq.read_table(sorted((dataset / "meta" / "episodes").glob("*/*.parquet"))).to_pylist()
    data = pq.read_table(sorted((dataset / "data").glob("*/*.parquet")))
    state = np.stack(data["observation.state"].to_numpy(zero_copy_only=False))
    action = np.stack(data["action"].to_numpy(zero_copy_only=False))
    tasks = pq.read_table(dataset / "meta" / "tasks.parquet")["task"].to_pylist()
    # first, last and a middle frame of every third episode, plus the frames just around one boundary
    indices = sorted({i for e in episodes[::3] for i in (e["dataset_from_index"], e["dataset_to_index"] - 1,
                                                          (e["dataset_from_index"] + e["dataset_to_index"]) // 2)})
    got = _probe(python, dataset, indices, tmp_path)
    assert int(got["len"]) == info["total_frames"] and int(got["num_episodes"]) == info["total_episodes"]
    assert str(got["backend"]) == "torchcodec"
    got_tasks = json.loads(str(got["tasks"]))

    # source frames, decoded independently from the catalog's own camera videos
    clips = pq.read_table(catalog / "catalog" / "clips.parquet").to_pylist()
    cat_eps = {e["episode_id"]: e for e in pq.read_table(catalog / "catalog" / "episodes.parquet").to_pylist()}
    robot = info["robot_type"]
    mine = sorted((c for c in clips if c["robot"] == robot), key=lambda c: (cat_eps[c["episode_id"]]["source_key"], c["clip_index"]))
    mine = mine * copies
    cams = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    source_cache: dict[str, list[np.ndarray]] = {}

    def source_frame(clip: dict, cam: str, k: int) -> np.ndarray:
        uri = next(x["uri"] for x in cat_eps[clip["episode_id"]]["cameras"] if f"observation.images.{x['name']}" == cam)
        if uri not in source_cache:
            source_cache[uri] = [img for _, img in decode_frames(uri)]
        w, h = info["features"][cam]["shape"][1], info["features"][cam]["shape"][0]
        return cv2.resize(source_cache[uri][clip["start_frame"] + k], (w, h), interpolation=cv2.INTER_AREA)

    worst, moving = np.inf, 0
    for n, i in enumerate(indices):
        ep = int(got[f"{i}/episode_index"])
        e = episodes[ep]
        assert e["dataset_from_index"] <= i < e["dataset_to_index"]  # episode boundaries as written
        k = int(got[f"{i}/frame_index"])
        assert k == i - e["dataset_from_index"] and int(got[f"{i}/index"]) == i
        np.testing.assert_array_equal(got[f"{i}/observation.state"], state[i])
        chunk_end = min(i + HORIZON, e["dataset_to_index"])
        expect = np.concatenate([action[i:chunk_end], np.repeat(action[chunk_end - 1:chunk_end], i + HORIZON - chunk_end, 0)])
        np.testing.assert_array_equal(got[f"{i}/action"], expect)
        np.testing.assert_array_equal(got[f"{i}/action_is_pad"], np.arange(i, i + HORIZON) >= e["dataset_to_index"])
        assert got_tasks[n] == tasks[data["task_index"][i].as_py()] == e["tasks"][0]
        for cam in cams:
            frame = got[f"{i}/{cam}"].transpose(1, 2, 0)
            worst = min(worst, _psnr(frame, source_frame(mine[ep], cam, k)))
            # and it is that frame, not a neighbour: the best match among source frames k-3..k+3 is k, unless
            # the view barely changed there (the two source frames are closer than codec error)
            near = [j for j in range(k - 3, k + 4) if 0 <= mine[ep]["start_frame"] + j < cat_eps[mine[ep]["episode_id"]]["num_frames"]]
            best = max(near, key=lambda j: _psnr(frame, source_frame(mine[ep], cam, j)))
            assert best == k or _psnr(source_frame(mine[ep], cam, k), source_frame(mine[ep], cam, best)) > MIN_PSNR_DB, (i, cam, best)
            moving += best == k and any(_psnr(source_frame(mine[ep], cam, k), source_frame(mine[ep], cam, j)) < MIN_PSNR_DB for j in near if j != k)
    assert worst > MIN_PSNR_DB, worst
    assert moving >= 10  # the neighbour check was not vacuous: many checked frames had distinguishable neighbours
    return worst


@pytest.mark.parametrize("robot", ["aloha", "agibot_g1"])
def test_official_loader_reads_our_h264_export(lerobot_python, exported, robot, tmp_path, capsys):
    catalog, _, reports = exported
    worst = _check(lerobot_python, catalog, reports[robot].path, tmp_path)
    with capsys.disabled():
        print(f"\n[lerobot 0.4.4] {robot} h264: worst PSNR of checked frames {worst:.1f} dB")


def test_official_loader_reads_our_av1_export(lerobot_python, exported, tmp_path, capsys):
    catalog, _, _ = exported
    report = run_export(catalog, tmp_path / "av1", robot="agibot_g1", codec="av1", size=EXPORT_SIZE, progress=False)[0]
    worst = _check(lerobot_python, catalog, report.path, tmp_path)
    with capsys.disabled():
        print(f"\n[lerobot 0.4.4] agibot_g1 av1: worst PSNR of checked frames {worst:.1f} dB")


def test_official_loader_reads_a_merged_dataset(lerobot_python, exported, tmp_path):
    from pipeline.lerobot_merge import merge_datasets

    catalog, _, reports = exported
    merged = tmp_path / "merged"
    merge_datasets([reports["aloha"].path, reports["aloha"].path], merged)
    _check(lerobot_python, catalog, merged, tmp_path, copies=2)
