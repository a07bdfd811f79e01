"""`vla-data stats frames`: every per-frame aggregate against an independent pandas/numpy computation over the same
parquet files, on the exported sample datasets and on a copy with known faults (samples past a limit, a known
action lag, a dropped frame, a timestamp jump); the same numbers on a Dask scheduler given by address, on Ray, with
episodes cut across partitions and from the command line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import LocalCluster
from typer.testing import CliRunner

from jobs.cli import app
from pipeline.frame_stats import COLUMNS, Spec, bin_edges, find_datasets, frame_stats, section_rows, summarize_partition
from schemas.robot import ROBOT_CONFIG_DIR, load_robot

BINS, MAX_LAG = 12, 6
LAG = 3  # the injected action lag, frames
FAULTY = "aloha_faults"
UNCONFIGURED = "unconfigured"  # agibot_g1's frames as a robot without a config: no limits, bins from the data


def _frames(root) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f) for f in sorted((root / "data").glob("*/*.parquet"))], ignore_index=True)


@pytest.fixture(scope="module")
def datasets(exported, tmp_path_factory):
    """The exported aloha and agibot_g1 datasets, UNCONFIGURED, and aloha_faults: aloha's frames with
    - left_gripper over its upper limit in 5 samples and right_waist under its lower limit in 2,
    - action(f) = state(f + LAG) in every episode (the last LAG actions hold the last state),
    - frame 30 of episode 2 dropped (a gap of 2/fps and a non-contiguous frame_index),
    - episode 4's timestamps 0.1 s later from frame 20 on (a gap, frame_index contiguous),
    in two files of 7-row row groups, so that small partitions cut episodes anywhere."""
    _, out, _ = exported
    root = tmp_path_factory.mktemp("frame_stats")
    for name in ("aloha", "agibot_g1"):
        (root / name).symlink_to(out / name)
    (root / UNCONFIGURED / "meta").mkdir(parents=True)
    (root / UNCONFIGURED / "data").symlink_to(out / "agibot_g1" / "data")
    info = json.loads((out / "agibot_g1" / "meta" / "info.json").read_text())
    (root / UNCONFIGURED / "meta" / "info.json").write_text(json.dumps({**info, "robot_type": "unconfigured"}))
    shutil.copytree(out / "aloha" / "meta", root / FAULTY / "meta")
    df = _frames(out / "aloha")
    state, action = np.stack(df["observation.state"]), np.stack(df["action"])
    joints = json.loads((out / "aloha" / "meta" / "info.json").read_text())["features"]["observation.state"]["names"]
    state[[3, 50, 51, 52, 400], joints.index("left_gripper")] = 1.2
    state[[10, 700], joints.index("right_waist")] = -3.5
    for _, rows in df.groupby("episode_index").indices.items():
        action[rows] = state[np.minimum(rows + LAG, rows[-1])]
    df["observation.state"], df["action"] = list(state), list(action)
    df.loc[(df.episode_index == 4) & (df.frame_index >= 20), "timestamp"] += 0.1
    df = df[~((df.episode_index == 2) & (df.frame_index == 30))]
    schema = pq.read_schema(next((out / "aloha" / "data").glob("*/*.parquet")))
    table = pa.Table.from_pandas(df, preserve_index=False).cast(schema)
    half = table.num_rows // 2 + 5
    (root / FAULTY / "data" / "chunk-000").mkdir(parents=True)
    for i, part in enumerate((table.slice(0, half), table.slice(half))):
        pq.write_table(part, root / FAULTY / "data" / "chunk-000" / f"file-{i:03d}.parquet", row_group_size=7)
    return root


@pytest.fixture(scope="module")
def result(datasets):
    return frame_stats(datasets, bins=BINS, max_lag=MAX_LAG, progress=False)


@pytest.fixture(scope="module")
def cluster():
    """A Dask scheduler to join by its tcp:// address (its worker in this process: quick to start)."""
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp://", host="127.0.0.1",
                      dashboard_address=None) as c:
        assert c.scheduler_address.startswith("tcp://127.0.0.1:")
        yield c


def best_lag(ep: pd.DataFrame, d: int) -> int | None:
    """argmax over lags of |corr(action(f), state(f + lag))|, from a pandas join on frame_index."""
    a = pd.Series(np.stack(ep["action"])[:, d].astype(np.float64), index=ep.frame_index.to_numpy())
    s = pd.Series(np.stack(ep["observation.state"])[:, d].astype(np.float64), index=ep.frame_index.to_numpy())
    rs = []
    for lag in range(MAX_LAG + 1):
        pairs = pd.concat([a, s.set_axis(s.index - lag)], axis=1, join="inner")
        still = (pairs.var(ddof=0) <= 1e-9 * (pairs.mean() ** 2 + 1)).any()
        if len(pairs) < 3 or still:
            return None
        rs.append(abs(np.corrcoef(pairs[0], pairs[1])[0, 1]))
    return int(np.argmax(rs))


def independent(root, name: str) -> dict[str, list[dict]]:
    """The sections' rows of one dataset, computed with pandas and numpy from the parquet files alone."""
    info = json.loads((root / "meta" / "info.json").read_text())
    joints, fps = info["features"]["observation.state"]["names"], info["fps"]
    configured = (ROBOT_CONFIG_DIR / f"{info['robot_type']}.yaml").exists()
    limits = dict(load_robot(info["robot_type"]).joint_limits) if configured else {}
    if configured and "gripper_convention" in info:  # the export writes grippers as openness: so are their limits
        robot = load_robot(info["robot_type"])
        for g in robot.grippers.values():
            j = robot.state_names[g.state_index]
            limits[j] = tuple(sorted((v - g.closed_value) / (g.open_value - g.closed_value) for v in limits[j]))
    df = _frames(root)
    state = np.stack(df["observation.state"]).astype(np.float64)
    edges = {j: limits.get(j, (state[:, d].min(), state[:, d].max())) for d, j in enumerate(joints)}
    episodes = [ep for _, ep in df.groupby("episode_index")]
    lags = {j: [lag for ep in episodes if (lag := best_lag(ep, d)) is not None] for d, j in enumerate(joints)}
    steps = [(ep.episode_index.iloc[0], ep.timestamp.astype(np.float64).diff().dropna(), ep.frame_index) for ep in episodes]
    flagged = [{"dataset": name, "episode_index": int(i), "frames": len(f), "first_frame": int(f.iloc[0]),
                "last_frame": int(f.iloc[-1]), "gaps": int((dt > 1.5 / fps).sum()), "max_step_s": float(dt.max()),
                "noncontiguous": bool(f.iloc[0] != 0 or (f.diff().dropna() != 1).any())}
               for i, dt, f in steps if (dt > 1.5 / fps).any() or f.iloc[0] != 0 or (f.diff().dropna() != 1).any()]
    all_steps = pd.concat([dt for _, dt, _ in steps])
    span = sum(ep.timestamp.astype(np.float64).iloc[-1] - ep.timestamp.astype(np.float64).iloc[0] for ep in episodes)
    return {
        "histograms": [{"dataset": name, "joint": j, "edges_from": "limits" if j in limits else "data",
                        "lower": float(edges[j][0]), "upper": float(edges[j][1]),
                        "counts": np.histogram(state[:, d], np.linspace(*edges[j], BINS + 1))[0].tolist()}
                       for d, j in enumerate(joints)],
        "joint_limits": [{"dataset": name, "joint": j, "lower_limit": limits[j][0], "upper_limit": limits[j][1],
                          "samples": len(df), "below": int((state[:, d] < limits[j][0]).sum()),
                          "above": int((state[:, d] > limits[j][1]).sum()),
                          "out_of_range_fraction": float(((state[:, d] < limits[j][0]) | (state[:, d] > limits[j][1])).mean())}
                         for d, j in enumerate(joints) if j in limits],
        "action_lag": [{"dataset": name, "joint": j, "episodes": len(lags[j]),
                        "lag_frames": float(np.median(lags[j])) if lags[j] else None,
                        "lag_s": float(np.median(lags[j])) / fps if lags[j] else None,
                        "votes": np.bincount(lags[j], minlength=MAX_LAG + 1).tolist()} for j in joints],
        "frame_rate": [{"dataset": name, "fps": float(fps), "episodes": len(episodes), "frames": len(df),
                        "measured_fps": (len(df) - len(episodes)) / span,
                        "max_jitter_s": float((all_steps - 1 / fps).abs().max()),
                        "gaps": int((all_steps > 1.5 / fps).sum()), "max_step_s": float(all_steps.max()),
                        "episodes_with_gaps": sum(r["gaps"] > 0 for r in flagged),
                        "noncontiguous_episodes": sum(r["noncontiguous"] for r in flagged)}],
        "gaps": flagged,
    }


def rounded(x):
    """Floats to 12 significant digits (sums in another order differ in the last bits), recursively."""
    if isinstance(x, float):
        return float(f"{x:.12g}")
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [rounded(v) for v in x]
    return x


def same(a: dict[str, pa.Table], b: dict[str, pa.Table]) -> bool:
    return rounded({k: t.to_pylist() for k, t in a.items()}) == rounded({k: t.to_pylist() for k, t in b.items()})


def test_every_aggregate_matches_pandas(datasets, result):
    assert set(result) == {"histograms", "joint_limits", "action_lag", "frame_rate", "gaps"}
    for name in ("agibot_g1", "aloha", FAULTY, UNCONFIGURED):
        want = independent(datasets / name, name)
        for section, rows in want.items():
            got = [r for r in result[section].to_pylist() if r["dataset"] == name]
            assert rounded(got) == rounded(rows), (name, section)


def test_injected_faults_are_found(result):
    def of(section, dataset):
        return [r for r in result[section].to_pylist() if r["dataset"] == dataset]

    outside = {r["joint"]: (r["below"], r["above"]) for r in of("joint_limits", FAULTY) if r["below"] or r["above"]}
    assert outside == {"left_gripper": (0, 5), "right_waist": (2, 0)}
    assert not [r for r in of("joint_limits", "aloha") + of("joint_limits", "agibot_g1") if r["below"] or r["above"]]
    # The synthetic recorders command one frame ahead of the measured state; the faulty copy LAG frames.
    for dataset, lag in (("aloha", 1), ("agibot_g1", 1), (FAULTY, LAG)):
        rows = of("action_lag", dataset)
        assert all(r["episodes"] > 0 for r in rows) and {r["lag_frames"] for r in rows} == {lag}, dataset
    fps = 50
    gaps = {r["episode_index"]: r for r in of("gaps", FAULTY)}
    assert set(gaps) == {2, 4}
    assert gaps[2]["noncontiguous"] and gaps[2]["gaps"] == 1 and gaps[2]["max_step_s"] == pytest.approx(2 / fps, abs=1e-5)
    assert not gaps[4]["noncontiguous"] and gaps[4]["max_step_s"] == pytest.approx(1 / fps + 0.1, abs=1e-5)
    assert of("gaps", "aloha") == of("gaps", "agibot_g1") == []
    rate = {r["dataset"]: r for r in result["frame_rate"].to_pylist()}
    assert rate["aloha"]["measured_fps"] == pytest.approx(50, rel=1e-5) and rate["aloha"]["gaps"] == 0
    assert rate[FAULTY]["gaps"] == 2 and rate[FAULTY]["noncontiguous_episodes"] == 1


def test_episodes_cut_across_partitions_and_chunks(datasets, result, cluster):
    """Every 7-row row group of the faulty copy its own partition (smaller than MAX_LAG + 1 rows, so a lag pair can
    span three partitions), and partitions summarized a few rows at a time: the same numbers."""
    small = frame_stats(datasets, cluster.scheduler_address, bins=BINS, max_lag=MAX_LAG, blocksize=1, progress=False)
    assert same(small, result)
    ds = next(d for d in find_datasets(datasets) if d.name == FAULTY)
    spec = Spec(ds.fps, bin_edges(ds, BINS, None), ds.limits, MAX_LAG)
    df = pd.concat([pd.read_parquet(f, columns=COLUMNS, dtype_backend="pyarrow") for f in ds.files], ignore_index=True)
    whole = section_rows(ds, spec, summarize_partition(df, spec))
    assert all(rounded(section_rows(ds, spec, summarize_partition(df, spec, chunk_rows=n))) == rounded(whole)
               for n in (3, 64))
    assert rounded(whole) == rounded({k: [r for r in t.to_pylist() if r["dataset"] == FAULTY] for k, t in result.items()})


def test_dask_scheduler_address_and_ray_give_the_same_numbers(datasets, result, cluster, ray_local):
    assert same(frame_stats(datasets, cluster.scheduler_address, bins=BINS, max_lag=MAX_LAG, progress=False), result)
    assert same(frame_stats(datasets, "ray", bins=BINS, max_lag=MAX_LAG, progress=False), result)


def test_cli(datasets, result, cluster):
    runner = CliRunner()
    args = ["stats", "frames", str(datasets), "--scheduler", cluster.scheduler_address, "--bins", str(BINS),
            "--max-lag", str(MAX_LAG)]
    r = runner.invoke(app, args + ["--format", "json"])
    assert r.exit_code == 0, r.output
    assert rounded(json.loads(r.stdout)) == rounded({k: t.to_pylist() for k, t in result.items()})
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and all(title in r.stdout for title in ("histograms", "joint limits", "action lag", "gaps"))
    r = runner.invoke(app, ["stats", "frames", str(datasets / "missing")])
    assert r.exit_code == 2 and "no LeRobot datasets" in r.output
