"""`vla-data dashboard`: the video route, the annotation tab after a review round, and the whole app in headless
Chromium (tests/ui_dashboard.py) against numbers computed here straight from the catalog's Parquet files."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from typer.testing import CliRunner

from dashboards.app import annotation, create_app
from jobs.annotate import run_annotate
from jobs.cli import app as cli
from jobs.runtime import free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def root(ingested, tmp_path_factory) -> Path:
    """A copy of the shared catalog with rules-made proposals, so the annotation tab has something to show."""
    out = tmp_path_factory.mktemp("dashboard") / "out"
    shutil.copytree(ingested.out, out)
    run_annotate(out, backend="rules", progress=False)
    return out


def test_videos_only_from_the_catalog_with_ranges(root):
    episodes = pq.read_table(root / "catalog" / "episodes.parquet").to_pylist()
    ep = episodes[0]
    client = create_app(root).server.test_client()
    top = next(c for c in ep["cameras"] if c["role"] == "top")
    r = client.get(f"/media/{ep['episode_id']}/top", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.mimetype == "video/mp4"
    assert r.data == Path(top["uri"]).read_bytes()[100:200]
    assert r.headers["Content-Range"] == f"bytes 100-199/{Path(top['uri']).stat().st_size}"
    assert client.get(f"/media/{ep['episode_id']}/no_such_view").status_code == 404
    assert client.get("/media/no-such-episode/top").status_code == 404
    r = client.get("/media/..%2F..%2F..%2Fetc%2Fpasswd/top")
    assert r.mimetype != "video/mp4" and b"root:" not in r.data


def test_no_catalog_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(cli, ["dashboard", str(tmp_path)])
    assert r.exit_code == 2 and "has no catalog/ folder" in r.output


def test_annotation_tab_after_a_review_round():
    """The review sections (absent from the browser test's catalog) as charts and numbers."""
    funnel = {"recordings": 4, "proposed": 4, "proposed_by_vlm": 3, "queued": 4, "reviewed": 2, "accepted_spans": 7,
              "unusable_spans": 1}
    sections = {"funnel": pa.Table.from_pylist([funnel]),
                "annotators": pa.Table.from_pylist([{"annotator": "a@x", "annotations": 2, "versions": 3,
                                                     "recordings": 2, "mean_lead_time_s": 41.5}]),
                "edits": pa.Table.from_pylist([{"spans": 8, "text_edit_rate": 0.25, "mean_edit_distance": 3.5,
                                                "mean_boundary_shift_s": 0.12}])}
    kpis, charts, _ = annotation(sections)
    texts = {k.children[0].id: k.children[0].children for k in kpis.children}
    assert texts == {"kpi-by-vlm": "3", "kpi-accepted": "7", "kpi-unusable": "1", "kpi-edit-rate": "25%",
                     "kpi-edit-distance": "3.5", "kpi-boundary-shift": "0.12"}
    graphs = {g.id: g.figure for g in charts.children if hasattr(g, "figure")}
    assert list(graphs["funnel"].data[0].x) == [4, 4, 4, 2]
    assert list(graphs["annotators"].data[0].y) == [2]


def _wait_for(url: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the dashboard exited with {proc.returncode}"
        try:
            if requests.get(url, timeout=5).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"no dashboard at {url} after {timeout_s} s")


def test_dashboard_in_browser(root, tmp_path):
    """Overview totals equal the catalog's, every chart drew, and a clip plays with the wrists in sync."""
    episodes = pq.read_table(root / "catalog" / "episodes.parquet").to_pandas()
    expected = {"kpi-hours": f"{episodes.duration_s.sum() / 3600:,.3f}", "kpi-episodes": f"{len(episodes):,}",
                "kpi-clips": f"{episodes.num_clips.sum():,}"}
    browser = subprocess.run(["bash", str(REPO / "scripts" / "venv.sh"), "browser"], check=True, text=True,
                             stdout=subprocess.PIPE).stdout.strip()
    port, out, log = free_port(), tmp_path / "ui", tmp_path / "server.log"
    with log.open("w") as f:
        server = subprocess.Popen([str(REPO / ".venv" / "bin" / "vla-data"), "dashboard", str(root), "--port",
                                   str(port)], stdout=f, stderr=subprocess.STDOUT)
    try:
        _wait_for(f"http://127.0.0.1:{port}/", server)
        r = subprocess.run([f"{browser}/bin/python", str(REPO / "tests" / "ui_dashboard.py"), "--url",
                            f"http://127.0.0.1:{port}", "--out", str(out), "--timeout", "120"],
                           text=True, capture_output=True, timeout=600)
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0, (result, r.stderr[-2000:], log.read_text()[-2000:])
    assert result["kpis"] == expected
    assert set(result["tabs"]) == {"overview", "quality", "annotation"}
    assert all(t["graphs"] == t["drawn"] > 0 for t in result["tabs"].values()), result["tabs"]
    assert min(result["ready_states"]) >= 2  # HAVE_CURRENT_DATA: every view shows a frame
    assert result["spans"] > 0 and result["span_text"] and result["instruction"] == result["span_text"]
    top, left, right = result["times"]
    assert top - result["start_s"] > 0.5  # it played
    assert abs(left - top) < 0.3 and abs(right - top) < 0.3
    for name in ("1-overview.png", "2-quality.png", "3-annotation.png", "4-clips.png"):
        assert (out / name).stat().st_size > 10_000
