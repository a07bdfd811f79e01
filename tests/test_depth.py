"""Depth, off by default (AgiBot PNGs, Cobot Magic images_depth, Galaxea depth topics, RoboTwin depth datasets):
`ingest --depth` archives each source's depth streams losslessly, `export --depth` adds
them as LeRobot depth videos (is_depth_map) that the official loader reads."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.export import run_export
from jobs.ingest import run_ingest
from pipeline import adapters
from pipeline.video import decode_frames
from schemas.lerobot import DEPTH_MAX_MM
from schemas.robot import robot_for_format
from synth.generate import generate
from tests.test_lerobot_loader import _probe

FORMATS = ("aloha", "agibot", "galaxea", "robotwin")


@pytest.fixture(scope="module")
def depth_run(tmp_path_factory, ray_local):
    work = tmp_path_factory.mktemp("depth")
    for fmt in FORMATS:
        generate(fmt, 2, 3, work / "raw" / fmt, size=(64, 48), depth=True)
    generate("aloha", 1, 4, work / "raw" / "aloha-no-depth", size=(64, 48))
    plain = run_ingest(work / "raw", work / "plain", progress=False)
    kept = run_ingest(work / "raw", work / "out", depth=True, progress=False)
    return work, plain, kept


def test_depth_is_kept_only_on_request_and_bit_exact(depth_run):
    work, plain, kept = depth_run
    assert not plain.quarantined and not kept.quarantined
    assert all(not e["depth_cameras"] for e in pq.read_table(work / "plain/catalog/episodes.parquet").to_pylist())
    episodes = pq.read_table(work / "out/catalog/episodes.parquet").to_pylist()
    refs = {adapters.discover(work / "raw")[i].key: r for i, r in enumerate(adapters.discover(work / "raw"))}
    with_depth = [e for e in episodes if e["depth_cameras"]]
    assert {e["source_format"] for e in with_depth} == set(FORMATS) and len(with_depth) == 2 * len(FORMATS)
    for e in with_depth:
        ep = adapters.read(refs[e["source_key"]], robot_for_format(e["source_format"]))
        assert [c["name"] for c in e["depth_cameras"]] == [d.name for d in ep.depth]
        for cam, stream in zip(e["depth_cameras"], ep.depth):
            archived = [mm for _, mm in decode_frames(cam["uri"], format="gray16le")]
            assert cam["codec"] == "ffv1" and len(archived) == cam["num_frames"] == e["num_frames"]
            for a, b in zip(archived, stream.frames()):
                np.testing.assert_array_equal(a, b)  # every millimetre kept


def test_depth_export_loads_in_the_official_loader(depth_run, lerobot_python, tmp_path):
    work, _, _ = depth_run
    reports = run_export(work / "out", tmp_path / "lerobot", codec="h264", progress=False, depth=True)
    assert {r.robot for r in reports} == {"aloha", "agibot_g1", "galaxea_r1_pro", "robotwin_aloha_agilex"}
    for r in reports:
        info = json.loads((r.path / "meta" / "info.json").read_text())
        keys = [k for k, f in info["features"].items() if f["dtype"] == "video" and f["info"]["is_depth_map"]]
        if r.robot == "aloha":  # one aloha recording has no depth: the dataset's features hold for every episode
            assert keys == []
            continue
        assert keys and all(info["features"][k]["info"]["video.pix_fmt"] == "gray12le" for k in keys)
        got = _probe(lerobot_python, r.path, [0], tmp_path)
        for k in keys:
            first = sorted((r.path / "videos" / k).glob("*/*.mp4"))[0]
            mm = next(decode_frames(first, format="gray12le"))[1]
            assert mm.max() <= DEPTH_MAX_MM
            loaded = got[f"0/{k}"].astype(np.float64)  # the loader's 3 channels, 0..255
            assert loaded.shape[0] == 3 and np.abs(loaded[0] - mm / DEPTH_MAX_MM * 255).max() <= 1.0
