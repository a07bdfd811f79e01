"""LeRobot v3.0 export: layout and invariants, exact values, decodable frames, determinism, atomic publication,
our validator catching broken datasets, and norm stats checked against numpy."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from jobs.cli import app
from jobs.export import run_export, run_norm_stats
from pipeline.export_plan import disjoint
from pipeline.lerobot_validate import validate_dataset
from pipeline.stats import QuantileSummary, StreamingQuantiles
from schemas.robot import load_robot
from pipeline.video import decode_frames

from tests.conftest import EXPORT_SIZE as SIZE


def _data(root):
    return pq.read_table(sorted((root / "data").glob("*/*.parquet")))


def _episodes(root):
    return pq.read_table(sorted((root / "meta" / "episodes").glob("*/*.parquet"))).to_pylist()


def test_layout_and_invariants(exported):
    _, out, reports = exported
    assert set(reports) == {"aloha", "agibot_g1"}
    for robot, r in reports.items():
        info = json.loads((r.path / "meta" / "info.json").read_text())
        assert info["codebase_version"] == "v3.0" and info["fps"] == (50 if robot == "aloha" else 30)
        assert info["total_episodes"] == r.episodes and info["splits"] == {"train": f"0:{r.episodes}"}
        assert {k for k, f in info["features"].items() if f["dtype"] == "video"} == {
            f"observation.images.{c}" for c in (("cam_high", "cam_left_wrist", "cam_right_wrist") if robot == "aloha"
                                                else ("head_color", "hand_left_color", "hand_right_color"))}
        tasks = pq.read_table(r.path / "meta" / "tasks.parquet")
        assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
        assert tasks["task_index"].to_pylist() == list(range(r.tasks)) and all(tasks["task"].to_pylist())
        data = _data(r.path)
        assert data["index"].to_pylist() == list(range(r.frames))
        ts = data["timestamp"].to_numpy()
        assert np.allclose(ts, data["frame_index"].to_numpy() / info["fps"], atol=1e-6)
        eps = _episodes(r.path)
        assert [e["episode_index"] for e in eps] == list(range(r.episodes))
        assert all(e["dataset_to_index"] - e["dataset_from_index"] == e["length"] for e in eps)
        assert validate_dataset(r.path) == []
        assert not list(out.glob(".*"))  # no staging or old folders left


def test_values_equal_the_catalog_with_grippers_as_openness(exported):
    catalog, _, reports = exported
    clips = pq.read_table(catalog / "catalog" / "clips.parquet").to_pylist()
    episodes = {e["episode_id"]: e for e in pq.read_table(catalog / "catalog" / "episodes.parquet").to_pylist()}
    for robot, r in reports.items():
        data, robot_cfg = _data(r.path), load_robot(robot)
        mine = [c for c in clips if c["robot"] == robot]
        mine.sort(key=lambda c: (episodes[c["episode_id"]]["source_key"], c["clip_index"]))
        assert len(mine) == r.episodes
        for i, c in enumerate(mine):
            frames = pq.read_table(episodes[c["episode_id"]]["frames_uri"])
            raw = [np.stack(frames[k].to_numpy(zero_copy_only=False))[c["start_frame"]:c["end_frame"]]
                   for k in ("observation.state", "action")]
            rows = data.filter(pc.equal(data["episode_index"], i))
            got = [np.stack(rows[k].to_numpy(zero_copy_only=False)) for k in ("observation.state", "action")]
            grip = [g.state_index for g in robot_cfg.grippers.values()]
            arm = [j for j in range(raw[0].shape[1]) if j not in grip]
            for exported_, recorded in zip(got, raw):
                np.testing.assert_array_equal(exported_[:, arm], recorded[:, arm])  # joints exactly as recorded
            for gr in robot_cfg.grippers.values():  # grippers: 0 = closed, 1 = open on every robot
                j = gr.state_index
                np.testing.assert_allclose(got[0][:, j], (raw[0][:, j] - gr.closed_value) / (gr.open_value - gr.closed_value), rtol=1e-6)
            assert got[0][:, grip].min() > -0.1 and got[0][:, grip].max() < 1.1
        # the command follows the measurement in the same convention, whatever the raw action's polarity (AgiBot's
        # raw command is 1 = closed: left raw, it would sit about 1 away from the state)
        state, action = (np.stack(data[k].to_numpy(zero_copy_only=False)) for k in ("observation.state", "action"))
        grip = [g.state_index for g in robot_cfg.grippers.values()]
        assert np.abs(state[:, grip] - action[:, grip]).mean() < 0.05
        info = json.loads((r.path / "meta" / "info.json").read_text())
        assert info["gripper_convention"]["closed"] == 0.0 and info["gripper_convention"]["open"] == 1.0
        assert info["gripper_convention"]["joints"] == [robot_cfg.state_names[g.state_index] for g in robot_cfg.grippers.values()]


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def test_every_frame_decodes_at_its_timestamp(exported):
    """Sequential decode of each video file: the frame at from_timestamp + timestamp is the source frame."""
    import cv2

    catalog, _, reports = exported
    clips = pq.read_table(catalog / "catalog" / "clips.parquet").to_pylist()
    episodes = {e["episode_id"]: e for e in pq.read_table(catalog / "catalog" / "episodes.parquet").to_pylist()}
    r = reports["aloha"]
    info = json.loads((r.path / "meta" / "info.json").read_text())
    key, cam = "observation.images.cam_high", "cam_high"
    mine = sorted((c for c in clips if c["robot"] == "aloha"),
                  key=lambda c: (episodes[c["episode_id"]]["source_key"], c["clip_index"]))
    eps = _episodes(r.path)
    path = r.path / info["video_path"].format(video_key=key, chunk_index=0, file_index=0)
    decoded = {round(t * info["fps"]): img for t, img in decode_frames(path)}
    psnrs = []
    for e, c in list(zip(eps, mine))[:6]:
        src_uri = next(x["uri"] for x in episodes[c["episode_id"]]["cameras"] if x["name"] == cam)
        src = [img for i, (_, img) in enumerate(decode_frames(src_uri)) if c["start_frame"] <= i < c["end_frame"]]
        start = round(e[f"videos/{key}/from_timestamp"] * info["fps"])
        for k in range(0, e["length"], 7):
            psnrs.append(_psnr(decoded[start + k], cv2.resize(src[k], SIZE, interpolation=cv2.INTER_AREA)))
    assert min(psnrs) > 30, min(psnrs)


def test_export_is_deterministic(exported, tmp_path):
    catalog, _, reports = exported
    again = run_export(catalog, tmp_path, robot="agibot_g1", codec="h264", size=SIZE, progress=False)[0]
    first = reports["agibot_g1"].path
    for rel in ["meta/info.json", "meta/stats.json", "meta/tasks.parquet", "meta/episodes/chunk-000/file-000.parquet",
                "data/chunk-000/file-000.parquet", "meta/lingbot_robot_config.yaml"]:
        assert (first / rel).read_bytes() == (again.path / rel).read_bytes(), rel


def test_recording_unit_has_subtasks(exported, tmp_path):
    catalog, _, _ = exported
    r = run_export(catalog, tmp_path, robot="agibot_g1", unit="recording", codec="h264", size=SIZE, progress=False)[0]
    episodes = pq.read_table(catalog / "catalog" / "episodes.parquet").to_pylist()
    assert r.episodes == sum(e["robot"] == "agibot_g1" for e in episodes)
    subtasks = pq.read_table(r.path / "meta" / "subtasks.parquet")
    assert json.loads(subtasks.schema.metadata[b"pandas"])["index_columns"] == ["subtask"] and subtasks.num_rows > 4
    data = _data(r.path)
    assert data["subtask_index"].to_numpy().max() == subtasks.num_rows - 1
    assert validate_dataset(r.path) == []


def test_validate_catches_broken_datasets(exported, tmp_path):
    src = exported[2]["aloha"].path
    missing = tmp_path / "missing"
    shutil.copytree(src, missing)
    next((missing / "videos" / "observation.images.cam_left_wrist").rglob("*.mp4")).unlink()
    r = CliRunner().invoke(app, ["validate", str(missing)])
    assert r.exit_code == 1 and "is missing" in r.output
    shifted = tmp_path / "shifted"
    shutil.copytree(src, shifted)
    path = next((shifted / "data").rglob("*.parquet"))
    t = pq.read_table(path)
    t = t.set_column(t.schema.get_field_index("timestamp"), "timestamp", pc.add(t["timestamp"], np.float32(0.004)))
    pq.write_table(t, path)
    problems = validate_dataset(shifted)
    assert any("timestamp != frame_index / fps" in p for p in problems)
    assert CliRunner().invoke(app, ["validate", str(src)]).exit_code == 0


def test_failed_export_publishes_nothing(exported, tmp_path, monkeypatch):
    catalog, _, _ = exported
    import jobs.export

    def broken(*a, **k):
        raise RuntimeError("encoder died")

    monkeypatch.setattr(jobs.export, "encode_to", broken)  # the Ray task that encodes
    with pytest.raises(Exception, match="encoder died"):
        run_export(catalog, tmp_path, robot="aloha", codec="h264", size=SIZE, progress=False)
    assert not (tmp_path / "aloha").exists()
    assert not any(p.name == "info.json" for p in tmp_path.rglob("*"))


def test_quantile_summaries_merge_within_rank_error():
    rng = np.random.default_rng(0)
    parts = [rng.normal(loc, scale, (n, 3)) for loc, scale, n in ((0, 1, 5000), (3, 0.2, 20000), (-1, 5, 777))]
    merged = QuantileSummary.merge_all([QuantileSummary.of(p) for p in parts])
    allx = np.concatenate(parts)
    for q in (0.01, 0.02, 0.1, 0.5, 0.9, 0.98, 0.99):
        rank = (allx <= merged.quantile(q)).mean(axis=0)
        assert np.all(np.abs(rank - q) <= 0.005), (q, rank)


def test_streaming_quantiles_are_exact_in_one_buffer_and_bounded_beyond(monkeypatch):
    rng = np.random.default_rng(1)
    blocks = [rng.normal(i, 1 + i, (3000, 2)) for i in range(7)]
    allx = np.concatenate(blocks)
    exact = StreamingQuantiles()
    for b in blocks:
        exact.add(b)
    assert np.array_equal(exact.quantile(0.01), np.quantile(allx, 0.01, axis=0))
    monkeypatch.setattr(StreamingQuantiles, "BUFFER_ROWS", 4000)  # summaries of ~2 blocks, merged twice
    monkeypatch.setattr(StreamingQuantiles, "MAX_SUMMARIES", 2)
    bounded = StreamingQuantiles()
    for b in blocks:
        bounded.add(b)
    assert bounded.summaries and bounded.buffer
    for q in (0.01, 0.1, 0.5, 0.99):
        rank = (allx <= bounded.quantile(q)).mean(axis=0)
        assert np.all(np.abs(rank - q) <= 3 / 2000), (q, rank)


def test_norm_stats_match_numpy_and_normalize_like_lingbot(exported):
    r = exported[2]["aloha"]
    result = run_norm_stats([r.path], {"arm.position"})
    ns = result["norm_stats"]
    data = _data(r.path)
    state = np.stack(data["observation.state"].to_numpy(zero_copy_only=False)).astype(np.float64)
    action = np.stack(data["action"].to_numpy(zero_copy_only=False)).astype(np.float64)
    arm, grip = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12], [6, 13]
    assert result["count"] == len(state)
    s = ns["observation.state.arm.position"]
    np.testing.assert_allclose(s["mean"], state[:, arm].mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(s["std"], state[:, arm].std(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(s["min"], state[:, arm].min(0))
    for name, q in (("q01", 0.01), ("q99", 0.99), ("q02", 0.02), ("q98", 0.98)):
        rank = (state[:, arm] <= np.array(s[name])).mean(0)
        assert np.all(np.abs(rank - q) <= 0.005), (name, rank)
    # meanstd as the LingBot trainer applies it: (x - mean) / (std + 1e-6)
    z = (state[:, arm] - np.array(s["mean"])) / (np.array(s["std"]) + 1e-6)
    sd = np.array(s["std"])
    assert np.allclose(z.mean(0), 0, atol=1e-6) and np.allclose(z.std(0), sd / (sd + 1e-6), rtol=1e-9)
    # bounds_99: (x - q01) / (q99 - q01 + 1e-6) * 2 - 1, no clipping: about 98% of values land in [-1, 1]
    g = ns["action.effector.position"]
    b = (action[:, grip] - np.array(g["q01"])) / (np.array(g["q99"]) - np.array(g["q01"]) + 1e-6) * 2 - 1
    inside = ((b >= -1 - 1e-9) & (b <= 1 + 1e-9)).mean(0)
    assert np.all(inside >= 0.97), inside
    # relative arm actions: per chunk step [50][12]; step 0 is the frame's own action minus its state
    rel = ns["action.arm.position"]
    assert np.array(rel["mean"]).shape == (50, 12)
    np.testing.assert_allclose(rel["mean"][0], (action[:, arm] - state[:, arm]).mean(0), rtol=1e-9, atol=1e-12)
    twice = run_norm_stats([r.path, r.path], {"arm.position"})
    assert twice["count"] == 2 * result["count"]
    np.testing.assert_allclose(twice["norm_stats"]["observation.state.arm.position"]["mean"], s["mean"], rtol=1e-12)
    with pytest.raises(ValueError, match="different joint groups"):
        run_norm_stats([r.path, exported[2]["agibot_g1"].path])


def test_merge_reindexes_episodes_tasks_and_videos(exported, tmp_path):
    from pipeline.lerobot_merge import merge_datasets

    src = exported[2]["agibot_g1"].path
    merged = tmp_path / "merged"
    r = CliRunner().invoke(app, ["merge", str(src), str(src), str(merged)])
    assert r.exit_code == 0, r.output
    info, one = (json.loads((p / "meta" / "info.json").read_text()) for p in (merged, src))
    assert info["total_episodes"] == 2 * one["total_episodes"] and info["total_frames"] == 2 * one["total_frames"]
    assert info["total_tasks"] == one["total_tasks"]  # the same tasks, not duplicated
    assert validate_dataset(merged) == []
    a, m = _data(src), _data(merged)
    n = one["total_frames"]
    np.testing.assert_array_equal(np.stack(m["observation.state"].to_numpy(zero_copy_only=False))[n:],
                                  np.stack(a["observation.state"].to_numpy(zero_copy_only=False)))
    assert m["episode_index"].to_numpy()[n:].min() == one["total_episodes"]
    eps = _episodes(merged)
    key = "observation.images.head_color"
    second = eps[one["total_episodes"]]
    assert second[f"videos/{key}/file_index"] == 1 and second[f"videos/{key}/from_timestamp"] == 0
    with pytest.raises(ValueError, match="differs from"):
        merge_datasets([src, exported[2]["aloha"].path], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_v21_layout_loads_with_datasets_3_6(exported, tmp_path):
    """openpi and LingBot-VLA pin the v2.1 loader on datasets 3.6, which cannot read datasets-4 "List" metadata."""
    import os
    import subprocess
    from pathlib import Path

    r = run_export(exported[0], tmp_path, robot="agibot_g1", codec="h264", size=SIZE, fmt="v2.1", progress=False)[0]
    info = json.loads((r.path / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v2.1" and info["total_videos"] == 3 * r.episodes == r.video_files
    assert r.data_files == r.episodes and validate_dataset(r.path) == []
    episodes = [json.loads(line) for line in (r.path / "meta" / "episodes.jsonl").read_text().splitlines()]
    assert sum(e["length"] for e in episodes) == r.frames
    repo = Path(__file__).resolve().parents[1]
    venv = subprocess.run([str(repo / "scripts" / "venv.sh"), "datasets36"], capture_output=True, text=True, check=True)
    script = ("import datasets, json, sys; ds = datasets.load_dataset('parquet', data_dir=sys.argv[1], split='train');"
              "f = ds.features['observation.state'];"
              "print(json.dumps({'rows': ds.num_rows, 'type': type(f).__name__, 'length': f.length,"
              " 'dtype': f.feature.dtype, 'first': ds[0]['observation.state'], 'version': datasets.__version__}))")
    proc = subprocess.run([str(Path(venv.stdout.strip()) / "bin" / "python"), "-c", script, str(r.path / "data")],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    first = pq.read_table(r.path / "data" / "chunk-000" / "episode_000000.parquet")["observation.state"][0].as_py()
    assert got["version"] == "3.6.0" and got["rows"] == r.frames
    assert (got["type"], got["length"], got["dtype"]) == ("Sequence", 16, "float32")
    np.testing.assert_array_equal(np.float32(got["first"]), np.float32(first))


def test_files_roll_over_at_the_size_limits(exported, tmp_path):
    """Tiny limits force many data and video files; every episode stays whole inside one file of each."""
    r = run_export(exported[0], tmp_path, robot="aloha", codec="h264", size=SIZE, video_mb=0.05, data_mb=0.02,
                   batch_frames=1500, progress=False)[0]
    assert validate_dataset(r.path) == []
    assert r.data_files > 1 and r.video_files > 3 * 2
    eps = _episodes(r.path)
    key = "observation.images.cam_high"
    starts = [e for e in eps if e[f"videos/{key}/from_timestamp"] == 0]
    assert len(starts) == len({(e[f"videos/{key}/chunk_index"], e[f"videos/{key}/file_index"]) for e in eps}) > 2
    data = _data(r.path)
    assert data["index"].to_pylist() == list(range(r.frames))  # still the row position across all files
    for e in eps:
        assert len({(e["data/chunk_index"], e["data/file_index"])}) == 1
        rows = data.slice(e["dataset_from_index"], e["length"])
        assert set(rows["episode_index"].to_pylist()) == {e["episode_index"]}


def test_lingbot_size_preset(exported, tmp_path):
    r = CliRunner().invoke(app, ["export", str(exported[0]), str(tmp_path), "--robot", "agibot_g1", "--codec", "h264",
                                 "--size", "lingbot"])
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "agibot_g1" / "meta" / "info.json").read_text())
    assert info["features"]["observation.images.head_color"]["shape"] == [224, 224, 3]


def test_sql_over_exported_shards(exported, tmp_path):
    catalog, out, reports = exported
    runner = CliRunner()
    q = ("SELECT dataset, count(*) AS frames, count(DISTINCT episode_index) AS episodes FROM shard_frames "
         "GROUP BY dataset ORDER BY dataset")
    r = runner.invoke(app, ["sql", str(catalog), q, "--datasets", str(out), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == [{"dataset": robot, "frames": rep.frames, "episodes": rep.episodes}
                                    for robot, rep in sorted(reports.items())]
    q = ("SELECT t.dataset, count(*) AS n, any_value(x.episodes) AS reported FROM shard_tasks t "
         "JOIN export_reports x ON x.robot = t.dataset GROUP BY t.dataset ORDER BY t.dataset")
    r = runner.invoke(app, ["sql", str(catalog), q, "--datasets", str(out), "--format", "parquet",
                            "--out", str(tmp_path / "tasks.parquet")])
    assert r.exit_code == 0, r.output
    rows = pq.read_table(tmp_path / "tasks.parquet").to_pylist()
    assert rows == [{"dataset": robot, "n": rep.tasks, "reported": rep.episodes} for robot, rep in sorted(reports.items())]
    r = runner.invoke(app, ["sql", str(catalog), "SELECT 1", "--format", "parquet"])
    assert r.exit_code != 0 and "--out" in r.output
    r = runner.invoke(app, ["sql", str(catalog), "SELECT 1", "--datasets", str(tmp_path)])
    assert r.exit_code == 2 and "no LeRobot datasets" in r.output


def test_overlapping_spans_export_each_frame_once():
    """A reviewer may drag a boundary across its neighbour's: the later span loses the overlap (and is dropped when
    nothing is left), so no source frame lands in two exported episodes and every video has its full length."""
    spans = [(0, 10, "a"), (8, 20, "b"), (15, 18, "c"), (20, 20, "d"), (25, 30, "e")]
    assert disjoint(spans) == [(0, 10, "a"), (10, 20, "b"), (25, 30, "e")]
