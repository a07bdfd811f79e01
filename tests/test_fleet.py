"""A mixed fleet in one run: a folder holding ALOHA, AgiBot World, Galaxea R1 Pro (ROS 2 MCAP and ROS 1 bag) and
RoboTwin 2.0 (both layouts) recordings is ingested by one command that detects each recording's format and robot,
segments the new formats within the accuracy bounds, reports hours per robot, and exports one dataset per robot
whose joint groups line up in LingBot-VLA's 75-dim vector; the official lerobot loader reads the new ones."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from jobs.cli import app
from jobs.export import run_export, run_norm_stats
from pipeline.evaluate import catalog_accuracy
from schemas.robot import load_robot
from synth.formats import truth_of
from synth.generate import generate
from tests.test_lerobot_loader import _check
from trainer.data import ShardDataset

SIZE = (160, 120)
# folder -> (format, variant, episodes, seed); 8 recordings of each new format for the accuracy bounds
FLEET = {"aloha": ("aloha", None, 2, 1), "agibot": ("agibot", None, 2, 2),
         "galaxea/mcap": ("galaxea", "mcap", 4, 3), "galaxea/bag": ("galaxea", "bag", 4, 4),
         "robotwin/classic": ("robotwin", "classic", 4, 5), "robotwin/xpolicy": ("robotwin", "xpolicy", 4, 6)}
ROBOTS = {"aloha": "aloha", "agibot": "agibot_g1", "galaxea": "galaxea_r1_pro", "robotwin": "robotwin_aloha_agilex"}
# LingBot-VLA's joint groups and widths, with the optional torso/base groups after the released two
JOINTS = {"arm.position": 14, "effector.position": 2, "waist.position": 4, "base.velocity": 3}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, ray_local):
    work = tmp_path_factory.mktemp("fleet")
    for folder, (fmt, variant, n, seed) in FLEET.items():
        generate(fmt, n, seed, work / "raw" / folder, size=SIZE, variant=variant)
    result = CliRunner().invoke(app, ["ingest", str(work / "raw"), str(work / "out")])
    assert result.exit_code == 0, result.output
    return work


def _episodes(work):
    return pq.read_table(work / "out" / "catalog" / "episodes.parquet").to_pylist()


def test_one_command_detects_every_format_and_robot(fleet):
    episodes = _episodes(fleet)
    assert not pq.read_table(fleet / "out" / "catalog" / "quarantine.parquet").num_rows
    found = {}
    for e in episodes:
        fmt, *_ = FLEET[next(f for f in FLEET if f"/raw/{f}/" in e["source_uri"])]
        assert e["source_format"] == fmt and e["robot"] == ROBOTS[fmt]
        found[fmt] = found.get(fmt, 0) + 1
    assert found == {fmt: sum(n for f, _, n, _ in FLEET.values() if f == fmt) for fmt in ROBOTS}


def test_new_formats_segment_within_the_bounds(fleet, capsys):
    measured = catalog_accuracy(fleet / "out", truth_of)
    with capsys.disabled():
        for fmt in ("galaxea", "robotwin"):
            print(f"\n[accuracy, mixed fleet] {fmt}: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else
                                                                  f"{k}={v}" for k, v in measured[fmt].items()))
    for fmt in ("galaxea", "robotwin"):
        m = measured[fmt]
        assert m["episodes"] == 8 and m["boundary_f1"] >= 0.9 and m["static_precision"] >= 0.95
        assert m["static_recall"] >= 0.9, (fmt, m)


def test_stats_report_shows_hours_for_every_robot(fleet):
    r = CliRunner().invoke(app, ["stats", "report", str(fleet / "out"), "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)["recordings"]
    hours: dict[str, float] = {}
    for row in rows:
        hours[row["robot"]] = hours.get(row["robot"], 0.0) + row["hours"]
    expected: dict[str, float] = {}
    for e in _episodes(fleet):
        expected[e["robot"]] = expected.get(e["robot"], 0.0) + e["duration_s"] / 3600
    assert set(hours) == set(ROBOTS.values())
    for robot, h in expected.items():
        assert hours[robot] == pytest.approx(h, rel=1e-9) and h > 0


@pytest.fixture(scope="module")
def fleet_export(fleet):
    reports = {r.robot: r for r in run_export(fleet / "out", fleet / "lerobot", codec="h264", size=SIZE,
                                              progress=False)}
    assert set(reports) == set(ROBOTS.values())
    return reports


def test_joint_groups_line_up_in_the_unified_vector(fleet_export, tmp_path):
    for robot_name, r in fleet_export.items():
        robot = load_robot(robot_name)
        lingbot = yaml.safe_load((r.path / "meta" / "lingbot_robot_config.yaml").read_text())
        groups = [next(iter(g)).removeprefix("observation.state.") for g in lingbot["states"]]
        assert groups == list(robot.joint_groups) and {"arm.position", "effector.position"} <= set(groups)
        stats = tmp_path / f"{robot_name}.json"
        stats.write_text(json.dumps(run_norm_stats([r.path])))
        ds = ShardDataset(r.path, stats, size=(32, 32), chunk=4, joints=JOINTS)
        item = ds[len(ds) // 2]
        assert item["state"].shape == (75,) and item["actions"].shape == (4, 75)
        mask = item["joint_mask"].numpy()
        offsets = {g: sum(list(JOINTS.values())[:i]) for i, g in enumerate(JOINTS)}
        for g, width in JOINTS.items():
            real = len(robot.joint_groups.get(g, []))
            assert mask[offsets[g]:offsets[g] + real].all() and not mask[offsets[g] + real:offsets[g] + width].any(), (robot_name, g)
        assert not mask[sum(JOINTS.values()):].any()
        # the grippers sit at the effector slots on every robot, in one convention (0 = closed .. 1 = open)
        data = pq.read_table(sorted((r.path / "data").glob("*/*.parquet")))
        state = np.stack(data["observation.state"].to_numpy(zero_copy_only=False))
        grippers = state[:, robot.joint_groups["effector.position"]]
        assert grippers.min() > -0.1 and grippers.max() < 1.1 and grippers.max() - grippers.min() > 0.5


@pytest.mark.parametrize("robot", ["galaxea_r1_pro", "robotwin_aloha_agilex"])
def test_official_loader_reads_the_new_robots(lerobot_python, fleet, fleet_export, robot, tmp_path):
    _check(lerobot_python, fleet / "out", fleet_export[robot].path, tmp_path)
