"""The ingest job on Ray: catalog contents, atomic publication, resume without duplicates, SQL, entry points."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from jobs.cli import app
from jobs.ingest import run_ingest
from schemas.catalog import CATALOG_VERSION, TABLES

REPO = Path(__file__).resolve().parents[1]


def _tables(out: Path) -> dict:
    return {name: pq.read_table(out / "catalog" / f"{name}.parquet") for name in TABLES}


def test_catalog_tables_follow_the_contract(ingested):
    tables = _tables(ingested.out)
    for name, table in tables.items():
        assert table.schema.remove_metadata().equals(TABLES[name]), name
        assert table.schema.metadata[b"vla_data.catalog_version"].decode() == CATALOG_VERSION
    episodes = tables["episodes"].to_pylist()
    assert {e["robot"] for e in episodes} == {"aloha", "agibot_g1"}
    assert len(episodes) == len({e["episode_id"] for e in episodes}) == 16
    for e in episodes:
        assert len(e["cameras"]) == 3 and all(c["num_frames"] == e["num_frames"] for c in e["cameras"])
        assert all(Path(c["uri"]).exists() for c in e["cameras"])
        assert len(e["content_hash"]) == 64 and e["adapter_version"]
        assert e["static_s"] + e["active_s"] == e["duration_s"]
        # ALOHA frames are encoded once by ingest; AgiBot mp4s are kept where they are.
        assert all(c["encoded_by_ingest"] == (e["source_format"] == "aloha") for c in e["cameras"])


def test_clips_cover_active_frames_only(ingested):
    tables = _tables(ingested.out)
    clips = tables["clips"].to_pylist()
    for e in tables["episodes"].to_pylist():
        frames = pq.read_table(e["frames_uri"]).to_pydict()
        static, clip_index = np.array(frames["static"]), np.array(frames["clip_index"])
        mine = sorted((c for c in clips if c["episode_id"] == e["episode_id"]), key=lambda c: c["clip_index"])
        assert len(mine) == e["num_clips"] > 0
        for a, b in zip(mine, mine[1:]):
            assert a["end_frame"] <= b["start_frame"]
        for c in mine:
            assert 0 <= c["start_frame"] < c["end_frame"] <= e["num_frames"]
            assert not static[c["start_frame"]:c["end_frame"]].any()
            assert (clip_index[c["start_frame"]:c["end_frame"]] == c["clip_index"]).all()
        assert abs(static.sum() / e["fps"] - e["static_s"]) < 1e-9
        assert np.array_equal(frames["frame_index"], np.arange(e["num_frames"]))


def test_rerun_skips_finished_episodes_and_gives_identical_tables(samples, ingested):
    before = {name: (ingested.out / "catalog" / f"{name}.parquet").read_bytes() for name in TABLES}
    again = run_ingest(samples, ingested.out, progress=False)
    assert again.processed == 0 and again.skipped == again.discovered == 16
    after = {name: (ingested.out / "catalog" / f"{name}.parquet").read_bytes() for name in TABLES}
    assert before == after


def test_changed_recording_is_reprocessed_once(samples, ray_local, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(samples / "aloha", raw / "aloha")
    out = tmp_path / "out"
    first = run_ingest(raw, out, progress=False)
    victim = sorted(raw.rglob("episode_*.hdf5"))[0]
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    second = run_ingest(raw, out, progress=False)
    assert (first.processed, second.processed, second.skipped) == (8, 1, 7)
    assert pq.read_table(out / "catalog" / "episodes.parquet").num_rows == 8


def test_sql_answers_over_the_catalog(ingested):
    runner = CliRunner()
    q = "SELECT robot, sum(duration_s)/3600 AS hours FROM episodes GROUP BY robot ORDER BY robot"
    r = runner.invoke(app, ["sql", str(ingested.out), q, "--format", "csv"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[0] == "robot,hours" and [ln.split(",")[0] for ln in lines[1:]] == ["agibot_g1", "aloha"]
    hours = sum(row["hours"] for row in ingested.per_robot)
    assert abs(sum(float(ln.split(",")[1]) for ln in lines[1:]) - hours) < 1e-9
    r = runner.invoke(app, ["sql", str(ingested.out), "SELECT count(*) AS n FROM frames WHERE static"])
    assert r.exit_code == 0 and "n" in r.output
    r = runner.invoke(app, ["sql", str(ingested.out), "SELECT nope FROM episodes"])
    assert r.exit_code == 2 and "nope" in r.output


def test_module_entry_point_runs_the_job(samples, tmp_path):
    raw = tmp_path / "raw"
    key = sorted((samples / "aloha").rglob("episode_*.hdf5"))[0]
    (raw / key.parent.name).mkdir(parents=True)
    shutil.copy(key, raw / key.parent.name / key.name)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "jobs.ingest", str(raw), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "aloha: 1 episodes" in proc.stderr
    assert pq.read_table(tmp_path / "out" / "catalog" / "episodes.parquet").num_rows == 1


def test_cli_ingest_prints_the_summary(samples, ray_local, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(samples / "agibot", raw / "agibot")
    r = CliRunner().invoke(app, ["ingest", str(raw), str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    for text in ("agibot_g1", "recorded hours", "static s dropped", "Quarantined: none", str(tmp_path / "out")):
        assert text in r.output.replace("\n", ""), text
    r = CliRunner().invoke(app, ["ingest", str(tmp_path / "missing"), str(tmp_path / "out")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_stats_report_matches_the_catalog(ingested):
    r = CliRunner().invoke(app, ["stats", "report", str(ingested.out), "--format", "json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    episodes = pq.read_table(ingested.out / "catalog" / "episodes.parquet").to_pylist()
    clips = pq.read_table(ingested.out / "catalog" / "clips.parquet").to_pylist()
    want = {}
    for e in episodes:
        w = want.setdefault((e["robot"], e["task_name"] or ""), [0, 0.0, 0])
        w[0], w[1], w[2] = w[0] + 1, w[1] + e["duration_s"] / 3600, w[2] + e["num_clips"]
    got = {(row["robot"], row["task"]): [row["episodes"], row["hours"], row["clips"]] for row in report["recordings"]}
    assert got.keys() == want.keys()
    for key, (n, hours, n_clips) in want.items():
        assert got[key][0] == n and abs(got[key][1] - hours) < 1e-12 and got[key][2] == n_clips
    for row in report["clip_lengths"]:
        d = np.array([c["duration_s"] for c in clips if c["robot"] == row["robot"]])
        assert row["clips"] == len(d) and abs(row["p50_s"] - np.median(d)) < 1e-12 and row["max_s"] == d.max()
    assert report["funnel"] == [{"recordings": len({c["episode_id"] for c in clips}), "proposed": 0,
                                 "proposed_by_vlm": 0, "queued": 0, "reviewed": 0, "accepted_spans": 0,
                                 "unusable_spans": 0}]


def test_stats_report_days_and_joint_ranges_match_numpy(samples, ingested):
    """Hours per day from each recording's own start (AgiBot clock, ALOHA file time) and per-joint ranges
    against the robot configs' limits, recomputed with numpy from the frame files."""
    from pipeline.catalog import connect
    from pipeline.stats_report import report
    from schemas.robot import load_robot

    sections = report(connect(ingested.out))
    episodes = pq.read_table(ingested.out / "catalog" / "episodes.parquet").to_pylist()
    want = {}
    for e in episodes:
        assert e["recorded_at"] is not None
        w = want.setdefault((e["robot"], e["recorded_at"].date()), [0, 0.0])
        w[0], w[1] = w[0] + 1, w[1] + e["duration_s"] / 3600
    got = {(r["robot"], r["day"]): [r["episodes"], r["hours"]] for r in sections["hours_per_day"].to_pylist()}
    assert got.keys() == want.keys() and len({day for _, day in want}) == 3  # synth spreads over three days
    assert all(got[k][0] == n and abs(got[k][1] - h) < 1e-12 for k, (n, h) in want.items())
    aloha = next(e for e in episodes if e["robot"] == "aloha")
    file_time = os.path.getmtime(aloha["source_uri"])
    assert abs(aloha["recorded_at"].timestamp() - file_time) < 1e-3

    rows = {(r["robot"], r["joint"]): r for r in sections["joint_ranges"].to_pylist()}
    for robot in {e["robot"] for e in episodes}:
        cfg = load_robot(robot)
        state = np.concatenate([np.stack(pq.read_table(e["frames_uri"], columns=["observation.state"])
                                         .column(0).to_numpy(zero_copy_only=False))
                                for e in episodes if e["robot"] == robot])
        for j, name in enumerate(cfg.state_names):
            r, v = rows[(robot, name)], state[:, j].astype(np.float64)
            lo, hi = cfg.joint_limits[name]
            assert r["samples"] == len(v) and r["min"] == v.min() and r["max"] == v.max()
            # DuckDB interpolates float32 samples in float32
            assert np.isclose(r["p50"], np.median(v), rtol=1e-6) and np.isclose(r["p99"], np.quantile(v, 0.99), rtol=1e-6)
            assert (r["lower_limit"], r["upper_limit"]) == (lo, hi)
            assert r["out_of_range"] == int(((v < lo) | (v > hi)).sum())


def test_joint_range_check_counts_samples_outside_the_limits(ingested, tmp_path):
    """A recording pushed past its elbow limit shows up as exactly that many out-of-range samples."""
    from pipeline.catalog import connect
    from pipeline.stats_report import report
    from schemas.robot import load_robot

    root = tmp_path / "out"
    shutil.copytree(ingested.out, root, ignore=shutil.ignore_patterns("*.mp4"))
    episodes = pq.read_table(root / "catalog" / "episodes.parquet").to_pylist()
    e = next(e for e in episodes if e["robot"] == "aloha")
    frames_path = root / "episodes" / e["episode_id"] / "frames.parquet"
    frames = pq.read_table(frames_path)
    state = np.stack(frames.column("observation.state").to_numpy(zero_copy_only=False)).copy()
    joint = load_robot("aloha").state_names.index("left_elbow")
    state[:7, joint] = 4.0  # past the 3.1416 rad limit
    column = pa.FixedSizeListArray.from_arrays(pa.array(state.ravel()), state.shape[1])
    pq.write_table(frames.set_column(frames.schema.get_field_index("observation.state"),
                                     frames.schema.field("observation.state"), column), frames_path)
    rows = {(r["robot"], r["joint"]): r["out_of_range"] for r in report(connect(root))["joint_ranges"].to_pylist()}
    assert rows[("aloha", "left_elbow")] == 7 and sum(rows.values()) == 7


def test_task_pool_keeps_at_most_its_window_in_flight(ray_local):
    import ray

    from jobs.runtime import TaskPool

    @ray.remote
    class Gauge:
        def __init__(self):
            self.now = self.peak = 0

        def enter(self):
            self.now += 1
            self.peak = max(self.peak, self.now)

        def leave(self):
            self.now -= 1

        def get_peak(self):
            return self.peak

    gauge = Gauge.remote()

    def square(x, g):
        ray.get(g.enter.remote())
        import time
        time.sleep(0.05)
        ray.get(g.leave.remote())
        return x * x

    pool = TaskPool(ray.remote(num_cpus=0)(square), ((i, (i, gauge)) for i in range(40)), "t", "task", 40,
                    progress=False, window=3)
    pool.poll()
    assert len(pool.in_flight) == 3
    results = dict(pool.results())
    assert results == {i: i * i for i in range(40)}
    assert 1 <= ray.get(gauge.get_peak.remote()) <= 3
