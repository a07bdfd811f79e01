"""Review round trip against a real Label Studio: push proposals as tasks (idempotent, validated), annotate
through the API as an annotator would, pull the edits back with provenance; server down and bad tokens."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import requests
from typer.testing import CliRunner

from annotators.frames import FrameSampling
from jobs.annotate import read_requests, run_annotate
from jobs.cli import app
from jobs.export import run_export
from jobs.runtime import free_port
from pipeline import labelstudio_service as ls
from pipeline.labelstudio_client import LabelStudio, ReviewError
from pipeline.review_pull import pull
from pipeline.review_push import DEFAULT_PROJECT, push
from schemas.review import SPAN_STATUS, SPAN_TEXT, SPANS
from tests.test_annotate import ScriptedServer

pytestmark = pytest.mark.timeout(900)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def review(ingested, tmp_path_factory):
    """A Label Studio server and a catalog copy with rules proposals, 3 recordings pushed."""
    work = tmp_path_factory.mktemp("review")
    root = tmp_path_factory.mktemp("catalog")
    shutil.copytree(ingested.out / "catalog", root / "catalog")
    run_annotate(root, "rules", progress=False)
    with pytest.MonkeyPatch.context() as mp:
        for name in (ls.TOKEN_ENV, ls.PASSWORD_ENV):
            mp.delenv(name, raising=False)
        service = ls.up(work, free_port())
        try:
            client = LabelStudio(service.url, ls.token(work))
            first = push(root, client, ls.media_dir(work), limit=3, progress=False)
            yield work, root, client, first
        finally:
            ls.down(work)


def _tasks(client: LabelStudio, project: int) -> list[dict]:
    return client.tasks(project)


def _table(root: Path, name: str) -> list[dict]:
    return pq.read_table(root / "catalog" / f"{name}.parquet").to_pylist()


def test_push_is_idempotent_and_new_versions_become_predictions(review, tmp_path):
    work, root, client, first = review
    assert (first.created, first.queued) == (3, 3)
    tasks = _tasks(client, first.project_id)
    assert len(tasks) == 3 and {t["data"]["recording_id"] for t in tasks} == {r["episode_id"] for r in
                                                                             _table(root, "review_tasks")}
    for t in tasks:  # three synchronised views at the recording's own rate, media served by the server
        assert t["data"]["fps"] in (30.0, 50.0)
        for view in ("top", "left_wrist", "right_wrist"):
            r = client.session.get(client.url + t["data"][view], headers={"Range": "bytes=0-99"}, timeout=30)
            assert r.status_code == 206 and r.headers["Content-Range"].startswith("bytes 0-99/")
    again = push(root, client, ls.media_dir(work), limit=3, progress=False)
    assert (again.created, again.unchanged) == (0, 3) and len(_tasks(client, first.project_id)) == 3

    # A VLM proposal for the first recording (a scripted OpenAI-protocol server): a new prediction, same task.
    _, req = read_requests(root, limit=1)[0]
    answer = {"task": "Put the cubes away", "confidence": 0.8, "needs_review": False, "review_reason": "none",
              "subtasks": [{"start_s": s.start_s, "end_s": s.end_s, "instruction": f"Do step {i}"}
                           for i, s in enumerate(req.spans)]}
    with ScriptedServer([(200, json.dumps(answer))]) as srv:
        run_annotate(root, "vllm", srv.url, limit=1, frames=FrameSampling(max_samples=2, width=32, height=32),
                     progress=False)
    third = push(root, client, ls.media_dir(work), limit=3, progress=False)
    assert (third.created, third.predictions_added, third.unchanged) == (0, 1, 2)
    (task,) = [t for t in _tasks(client, first.project_id) if t["data"]["recording_id"] == req.episode_id]
    versions = sorted(p["model_version"] for p in client.predictions(task["id"]))
    assert versions[0] == "rules-made rules-v1" and versions[1].startswith("scripted subtasks-v1+")


def _edit(prediction: dict, fps_frames_shift: int) -> list[dict]:
    """An annotator's result from a prediction: span 0 ends later, span 1 gets new text, the last span is
    unusable, everything else accepted; origins as the UI sets them."""
    regions = sorted({i["id"] for i in prediction["result"] if i["from_name"] == SPANS},
                     key=lambda r: int(r[3:]))
    last = regions[-1]
    out = []
    for item in prediction["result"]:
        item = json.loads(json.dumps(item))
        item["origin"] = "prediction"
        rid = item["id"]
        if rid == "seg0" and "ranges" in item["value"]:
            item["value"]["ranges"][0]["end"] += fps_frames_shift
            item["origin"] = "prediction-changed"
        if rid == "seg1" and item["from_name"] == SPAN_TEXT:
            item["value"]["text"] = ["  Place the cube in the box\n"]
            item["origin"] = "prediction-changed"
        if rid == last and item["from_name"] == SPAN_STATUS:
            item["value"]["choices"] = ["unusable"]
            item["origin"] = "prediction-changed"
        out.append(item)
    return out


def test_annotate_through_api_then_pull(review, tmp_path):
    work, root, client, first = review
    task, pred = next((t, p[0]) for t in _tasks(client, first.project_id)
                      if len(p := client.predictions(t["id"])) == 1)  # a task with only its rules prediction
    shift = 10
    client.call("POST", f"tasks/{task['id']}/annotations/", json={
        "result": _edit(pred, shift), "parent_prediction": pred["id"], "lead_time": 12.5})
    r = pull(root, client, DEFAULT_PROJECT)
    assert (r.tasks, r.new_versions) == (1, 1)
    (ann,) = _table(root, "annotations")
    assert ann["annotator"] == ls.ADMIN_EMAIL and ann["prediction_model_version"] == "rules-made rules-v1"
    assert ann["is_current"] and not ann["cancelled"] and ann["lead_time_s"] == 12.5
    spans = {s["region_id"]: s for s in _table(root, "annotation_spans")}
    proposal = [s for s in _table(root, "proposal_spans") if s["episode_id"] == ann["episode_id"]]
    proposal = {f"seg{i}": s for i, s in enumerate(sorted(proposal, key=lambda s: s["start_frame"]))}
    assert set(spans) == set(proposal)
    rec = [t for t in _table(root, "review_tasks") if t["episode_id"] == ann["episode_id"]][0]
    fps = rec["fps"]
    assert spans["seg0"]["span_origin"] == "prediction-changed" and spans["seg0"]["end_shift_s"] == pytest.approx(
        (spans["seg0"]["end_frame"] - proposal["seg0"]["end_frame"]) / fps)
    assert spans["seg0"]["end_frame"] > proposal["seg0"]["end_frame"] and spans["seg0"]["start_shift_s"] == 0
    assert spans["seg0"]["clip_id"] is None  # moved: no longer a skeleton clip
    assert spans["seg1"]["instruction"] == "Place the cube in the box" and spans["seg1"]["text_changed"]
    assert spans["seg1"]["text_origin"] == "prediction-changed"
    last = f"seg{len(proposal) - 1}"
    assert spans[last]["status"] == "unusable"
    for rid, s in spans.items():  # the rest accepted as proposed, mapped back to the same recording frames
        if rid != "seg0":
            assert (s["start_frame"], s["end_frame"], s["clip_id"]) == \
                (proposal[rid]["start_frame"], proposal[rid]["end_frame"], proposal[rid]["clip_id"])
        if rid != "seg1":
            assert s["instruction"] == proposal[rid]["instruction"] and s["text_changed"] is False
        if rid != last:
            assert s["status"] == "ok"

    # Incremental: nothing new, nothing pulled; an edit is a new version, both kept, the newest current.
    assert pull(root, client, DEFAULT_PROJECT).new_versions == 0
    result = _edit(pred, shift)
    next(i for i in result if i["from_name"] == "task_instruction")["value"]["text"] = ["Tidy the table"]
    client.call("PATCH", f"annotations/{ann['annotation_id']}/", json={"result": result})
    assert pull(root, client, DEFAULT_PROJECT).new_versions == 1
    versions = sorted(_table(root, "annotations"), key=lambda a: a["updated_at"])
    assert len(versions) == 2 and [a["is_current"] for a in versions] == [False, True]
    assert versions[1]["task"] == "Tidy the table"

    # The stats report counts the same review round.
    from pipeline.catalog import connect
    from pipeline.stats_report import report

    sections = report(connect(root))
    current = [s for s in _table(root, "annotation_spans") if s["version"] == versions[1]["version"]]
    recordings = len({c["episode_id"] for c in _table(root, "clips")})
    assert sections["funnel"].to_pylist() == [{
        "recordings": recordings, "proposed": recordings,
        "proposed_by_vlm": 1, "queued": len(_table(root, "review_tasks")), "reviewed": 1,
        "accepted_spans": sum(s["status"] == "ok" for s in current), "unusable_spans": 1}]
    (edits,) = sections["edits"].to_pylist()
    assert edits["spans"] == len(current) and edits["text_edit_rate"] == pytest.approx(1 / len(current))
    assert edits["mean_boundary_shift_s"] == pytest.approx(
        np.mean([(abs(s["start_shift_s"]) + abs(s["end_shift_s"])) / 2 for s in current]))
    assert edits["mean_edit_distance"] > 0

    # The next export takes the reviewed spans and texts, and leaves the unusable span out.
    robot = next(e["robot"] for e in _table(root, "episodes") if e["episode_id"] == ann["episode_id"])
    (report,) = run_export(root, tmp_path / "lerobot", robot=robot, codec="h264", size=(160, 120), progress=False)
    episodes = pq.read_table(sorted((report.path / "meta" / "episodes").glob("*/*.parquet"))).to_pylist()
    mine = [(e["length"], e["tasks"][0]) for e in episodes if e["tasks"][0].startswith("Tidy the table")]
    final = sorted(_table(root, "annotation_spans"), key=lambda s: (s["version"], s["span_index"]))[-len(spans):]
    ok = [(s["start_frame"], s["end_frame"], s["instruction"]) for s in final if s["status"] == "ok"]
    # span 0 now ends inside span 1: the export cuts the overlap off the later span, exporting no frame twice
    assert ok[0][1] > ok[1][0]
    ok = [(max(a, ok[i - 1][1]) if i else a, b, text) for i, (a, b, text) in enumerate(ok)]
    assert mine == [(b - a, f"Tidy the table: {text}") for a, b, text in ok]
    assert report.by_source["reviewed"] == len(mine) and report.unusable_spans == 1


def test_server_down_or_bad_token_is_a_clear_error_and_a_rerun_completes(review, monkeypatch):
    work, root, client, first = review
    records = sorted((root / "_review").rglob("*.json"))
    before = {p: p.read_bytes() for p in records}
    port = int(client.url.rsplit(":", 1)[1])
    ls.down(work)
    try:
        with pytest.raises(ReviewError, match="not reachable.*vla-data review up"):
            push(root, client, ls.media_dir(work), limit=4, progress=False)
        with pytest.raises(ReviewError, match="not reachable"):
            pull(root, client, DEFAULT_PROJECT)
        assert {p: p.read_bytes() for p in sorted((root / "_review").rglob("*.json"))} == before  # nothing half
    finally:
        ls.up(work, port)
    r = push(root, client, ls.media_dir(work), limit=4, progress=False)
    assert r.created == 1 and len(_tasks(client, first.project_id)) == 4

    runner = CliRunner()
    monkeypatch.setenv(ls.TOKEN_ENV, "wrong-token-0123456789")
    res = runner.invoke(app, ["review", "pull", str(root), "--work", str(work)])
    assert res.exit_code == 2 and ls.TOKEN_ENV in res.output and "refused" in res.output
    monkeypatch.delenv(ls.TOKEN_ENV)
    res = runner.invoke(app, ["review", "push", str(root), "--work", str(work / "elsewhere"),
                              "--url", client.url])
    assert res.exit_code == 2 and ls.TOKEN_ENV in res.output
    assert requests.get(client.url + "/health", timeout=10).status_code == 200


def test_browser_edit_submit_then_pull(review, tmp_path):
    """Headless Debian Chromium (Playwright, its own cached venv): log in, open a task, see the three videos and
    the prefilled spans, rewrite the first span's instruction, submit; the pull sees the edit."""
    work, root, client, first = review
    browser = subprocess.run(["bash", str(REPO / "scripts" / "venv.sh"), "browser"], check=True, text=True,
                             stdout=subprocess.PIPE).stdout.strip()
    task = next(t for t in _tasks(client, first.project_id) if t["total_annotations"] == 0)
    text = "Pick up the red cube from the table"
    out = tmp_path / "ui"
    r = subprocess.run([f"{browser}/bin/python", str(REPO / "tests" / "ui_review.py"), "--url", client.url,
                        "--email", ls.ADMIN_EMAIL, "--password-file", str(work / "labelstudio" / "password"),
                        "--project-id", str(first.project_id), "--task-id", str(task["id"]), "--text", text,
                        "--out", str(out), "--timeout", "120"], text=True, capture_output=True, timeout=600)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0, (result, r.stderr[-2000:])
    assert result["videos"] == result["videos_ready"] == 3 and result["regions"] > 1 and result["submitted"]
    assert (out / "3-submitted.png").stat().st_size > 10_000  # the screenshot, kept in the test's folder
    pull(root, client, DEFAULT_PROJECT)
    (ann,) = [a for a in _table(root, "annotations") if a["annotation_id"] == result["annotation_id"]]
    assert ann["episode_id"] == task["data"]["recording_id"] and ann["annotator"] == ls.ADMIN_EMAIL
    spans = {s["region_id"]: s for s in _table(root, "annotation_spans") if s["annotation_id"] == ann["annotation_id"]}
    assert spans["seg0"]["instruction"] == text and spans["seg0"]["text_changed"]
    assert len(spans) == result["regions"] and all(not s["text_changed"] for rid, s in spans.items() if rid != "seg0")
