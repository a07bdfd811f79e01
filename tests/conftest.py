"""Shared fixtures: one in-process Ray for the session, and sample recordings generated once."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # two cores are easily oversubscribed

import pytest  # noqa: E402
import ray  # noqa: E402

from synth.formats import truth_of  # noqa: E402
from synth.generate import generate  # noqa: E402

SEED = 11
EPISODES = 8
SAMPLE_FORMATS = ("aloha", "agibot")
FAULTS = {
    "aloha": {"truncated_hdf5": "unreadable_hdf5", "camera_short": "frame_count_mismatch", "nan_qpos": "non_finite",
              "wrong_joint_dim": "joint_dimension", "empty_episode": "empty_episode"},
    "agibot": {"truncated_hdf5": "unreadable_hdf5", "nan_qpos": "non_finite", "wrong_joint_dim": "joint_dimension",
               "empty_episode": "empty_episode", "nonmonotonic_timestamps": "non_monotonic_timestamps",
               "missing_video": "missing_camera", "corrupt_mp4": "corrupt_video"},
}


@pytest.fixture(scope="session")
def ray_local():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def lerobot_python() -> str:
    """The official lerobot 0.4.4 in its own cached virtualenv (scripts/venv.sh), to load our exports with."""
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([str(repo / "scripts" / "venv.sh"), "lerobot"], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return str(Path(proc.stdout.strip()) / "bin" / "python")


@pytest.fixture(scope="session")
def samples(tmp_path_factory) -> Path:
    """raw/aloha and raw/agibot, EPISODES good episodes each at the default camera size."""
    raw = tmp_path_factory.mktemp("samples") / "raw"
    for fmt in SAMPLE_FORMATS:
        generate(fmt, EPISODES, SEED, raw / fmt)
    return raw


@pytest.fixture(scope="session")
def ingested(samples, ray_local, tmp_path_factory):
    from jobs.ingest import run_ingest

    out = tmp_path_factory.mktemp("catalog")
    return run_ingest(samples, out, progress=False)


EXPORT_SIZE = (160, 120)


@pytest.fixture(scope="session")
def exported(ingested, tmp_path_factory):
    """Both robots exported as LeRobot v3.0 (H.264, 160x120): (catalog, out, {robot: ExportReport})."""
    from jobs.export import run_export

    out = tmp_path_factory.mktemp("lerobot")
    reports = run_export(ingested.out, out, codec="h264", size=EXPORT_SIZE, progress=False)
    return ingested.out, out, {r.robot: r for r in reports}


truth = truth_of  # ground truth of a catalog episode


def generated_truths(folder: Path) -> list[dict]:
    """The ground truth of every recording the generator wrote to folder (broken ones have a "fault")."""
    return [json.loads(p.read_text()) for p in sorted((folder / "ground_truth").glob("*.json"))]
