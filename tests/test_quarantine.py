"""Bad recordings are quarantined with a precise reason while the good ones in the same run finish."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from jobs.ingest import run_ingest
from synth.generate import generate
from tests.conftest import FAULTS, generated_truths


@pytest.fixture(scope="module")
def broken_batch(tmp_path_factory, ray_local):
    raw = tmp_path_factory.mktemp("broken") / "raw"
    for fmt, faults in FAULTS.items():
        generate(fmt, len(faults) + 2, 21, raw / fmt, size=(128, 96), faults=list(faults))
    out = tmp_path_factory.mktemp("broken_out")
    return raw, out, run_ingest(raw, out, progress=False)


def test_each_fault_is_quarantined_with_its_reason(broken_batch):
    raw, out, result = broken_batch
    quarantine = pq.read_table(out / "catalog" / "quarantine.parquet").to_pylist()
    by_key = {(q["source_format"], q["source_key"]): q for q in quarantine}
    seen = set()
    for fmt, faults in FAULTS.items():
        for gt in (gt for gt in generated_truths(raw / fmt) if "fault" in gt):
            key = gt["source_key"] if fmt == "agibot" else f"{fmt}/{gt['source_key']}"
            q = by_key[(fmt, key)]
            assert q["reason_code"] == faults[gt["fault"]], (gt["fault"], q)
            assert q["reason"] and q["source_uri"].startswith("/")
            seen.add((fmt, gt["fault"]))
    assert seen == {(f, name) for f, faults in FAULTS.items() for name in faults}
    assert len(quarantine) == len(seen)


def test_good_episodes_of_the_same_run_finish(broken_batch):
    raw, out, result = broken_batch
    episodes = pq.read_table(out / "catalog" / "episodes.parquet").to_pylist()
    assert sorted(e["source_format"] for e in episodes) == ["agibot"] * 2 + ["aloha"] * 2
    assert all(e["num_clips"] > 0 for e in episodes)
    assert result.discovered == sum(len(f) + 2 for f in FAULTS.values())


def test_precise_reasons(broken_batch):
    raw, out, _ = broken_batch
    reasons = {q["reason_code"]: q["reason"] for q in pq.read_table(out / "catalog" / "quarantine.parquet").to_pylist()}
    assert "rows (40, 41, 42)" in reasons["non_finite"]
    assert "cam_left_wrist has" in reasons["frame_count_mismatch"]
    assert "12 joints" in reasons["joint_dimension"] or "14 joints" in reasons["joint_dimension"]
    assert "rows 51" in reasons["non_monotonic_timestamps"]
    assert "hand_left_color.mp4" in reasons["missing_camera"]
    assert "head_color.mp4" in reasons["corrupt_video"]


def test_no_partial_episode_left_behind(broken_batch):
    raw, out, _ = broken_batch
    ids = {e["episode_id"] for e in pq.read_table(out / "catalog" / "episodes.parquet").to_pylist()}
    assert {p.name for p in (out / "episodes").iterdir()} == ids  # no staging folders, no quarantined data
