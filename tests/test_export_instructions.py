"""Export takes each recording's spans and texts from the best source there is: the current human review, else the
current VLM proposal (status ok), else the source's own subtask labels, else the current rules proposal, else the
source's task name or placeholders. Proposals come from the real rules backend; the VLM proposals and the human
review are rows written by the contracts of schemas/proposals.py and schemas/review.py."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.annotate import run_annotate
from jobs.export import run_export
from pipeline.export_plan import DEFAULT_TEMPLATE, PLACEHOLDER_SUBTASK, PLACEHOLDER_TASK
from pipeline.lerobot_validate import validate_dataset
from pipeline.lerobot_writer import gripper_openness
from schemas import proposals as P
from schemas import review as R
from schemas.robot import load_robot

from tests.conftest import EXPORT_SIZE as SIZE

VLM_TASK, VLM_TEXTS = "Clear the table", ["Pick up the first object", "Put the second object away"]
REVIEW_TASK, REWRITTEN = "Put the items in the bin", "Grasp the yellow sponge with the right gripper"
SHIFT = 3  # frames the reviewer moved a span's start by


def _rows(cat, name):
    return pq.read_table(cat / f"{name}.parquet").to_pylist()


def _write(cat, name, rows, contract):
    pq.write_table(pa.Table.from_pylist(rows, schema=contract.with_version(contract.TABLES[name])),
                   cat / f"{name}.parquet")


def _vlm(ep, status, spans, fps):
    pid = f"vlm-{ep['episode_id']}"
    proposal = {"proposal_id": pid, "episode_id": ep["episode_id"], "robot": ep["robot"], "made_by": "vlm",
                "backend": "vllm", "model": "test-vlm", "prompt_version": "v1", "status": status,
                "reason": None if status == "ok" else "unclear_task", "task": VLM_TASK, "confidence": 0.9,
                "requests": 1, "tokens_in": 100, "tokens_out": 20, "latency_s": 1.0, "raw_response": "{}",
                "created_at": "2030-01-01T00:00:00Z", "is_current": True}
    rows = [{"proposal_id": pid, "episode_id": ep["episode_id"], "span_index": i, "start_frame": a, "end_frame": b,
             "start_s": a / fps, "end_s": b / fps, "instruction": text, "clip_id": None}
            for i, ((a, b), text) in enumerate(zip(spans, VLM_TEXTS))]
    return proposal, rows


def _annotation(ep, version, task, current):
    return {"annotation_id": 7, "version": version, "episode_id": ep["episode_id"], "task_id": 1,
            "annotator": "reviewer@example.com", "created_at": "2030-01-02T00:00:00Z", "updated_at": version,
            "lead_time_s": 60.0, "cancelled": False, "prediction_model_version": "rules-v1 rules-v1", "task": task,
            "task_origin": "prediction-changed", "pulled_at": "2030-01-03T00:00:00Z", "is_current": current}


def _span_row(ep, version, i, a, b, text, status, fps):
    return {"annotation_id": 7, "version": version, "episode_id": ep["episode_id"], "span_index": i,
            "region_id": f"seg{i}", "start_frame": a, "end_frame": b, "start_s": a / fps, "end_s": b / fps,
            "instruction": text, "status": status, "span_origin": "prediction", "text_origin": "prediction",
            "clip_id": None, "start_shift_s": 0.0, "end_shift_s": 0.0, "text_changed": False}


@pytest.fixture(scope="module")
def labeled(ingested, tmp_path_factory):
    """A catalog copy with rules proposals for every recording, then on AgiBot: a human review of recording 0
    (one span moved, one instruction rewritten, one span unusable; an older version differs), an ok VLM proposal
    for recording 1 and a needs_review one for recording 2; on ALOHA a pending VLM proposal for recording 0, whose
    task name is also removed (no labels at all: placeholders).
    Returns (catalog, {robot: [(episode_id, [(start, end, subtask)], task, source)] in export order})."""
    root = tmp_path_factory.mktemp("labeled")
    shutil.copytree(ingested.out / "catalog", root / "catalog")
    run_annotate(root, "rules", progress=False)
    cat = root / "catalog"
    episodes = _rows(cat, "episodes")
    clips = {}
    for c in sorted(_rows(cat, "clips"), key=lambda c: c["clip_index"]):
        clips.setdefault(c["episode_id"], []).append(c)
    agibot = [e for e in episodes if e["robot"] == "agibot_g1" and e["episode_id"] in clips]
    aloha = [e for e in episodes if e["robot"] == "aloha" and e["episode_id"] in clips]
    reviewed, vlm, held = agibot[:3]
    assert len(clips[reviewed["episode_id"]]) >= 3 and len(clips[vlm["episode_id"]]) >= 3

    proposals, proposal_spans = _rows(cat, "proposals"), _rows(cat, "proposal_spans")
    fps = vlm["fps"]
    c = clips[vlm["episode_id"]]
    vlm_spans = [(c[0]["start_frame"], c[1]["end_frame"]), (c[2]["start_frame"], c[-1]["end_frame"])]
    new = [_vlm(vlm, "ok", vlm_spans, fps), _vlm(held, "needs_review", vlm_spans[:1], fps),
           _vlm(aloha[0], "pending", [], aloha[0]["fps"])]
    for p, _ in new:
        for old in proposals:
            old["is_current"] &= old["episode_id"] != p["episode_id"]
    _write(cat, "proposals", proposals + [p for p, _ in new], P)
    _write(cat, "proposal_spans", proposal_spans + [s for _, rows in new for s in rows], P)
    table = pq.read_table(cat / "episodes.parquet")
    names = [None if e is aloha[0] else e["task_name"] for e in episodes]
    aloha[0]["task_name"] = None
    pq.write_table(table.set_column(table.schema.get_field_index("task_name"), "task_name",
                                    pa.array(names, table.schema.field("task_name").type)), cat / "episodes.parquet")

    fps = reviewed["fps"]
    c = clips[reviewed["episode_id"]]
    spans = [(x["start_frame"], x["end_frame"], (x["source_text"] or "").strip(), "ok") for x in c]
    spans[0] = (spans[0][0] + SHIFT, *spans[0][1:])
    spans[1] = (*spans[1][:2], REWRITTEN, "ok")
    spans[2] = (*spans[2][:3], "unusable")
    old, now = "2030-01-02T00:00:00Z", "2030-01-02T00:05:00Z"
    _write(cat, "annotations", [_annotation(reviewed, old, "An older task", False),
                                _annotation(reviewed, now, REVIEW_TASK, True)], R)
    _write(cat, "annotation_spans", [_span_row(reviewed, old, 0, 0, 10, "Older text", "ok", fps)] +
           [_span_row(reviewed, now, i, a, b, t, s, fps) for i, (a, b, t, s) in enumerate(spans)], R)

    rules = {p["episode_id"]: p for p in proposals if p["is_current"]}
    assert {p["made_by"] for p in rules.values()} == {"rules"}
    expected = {"agibot_g1": [], "aloha": []}
    for ep in agibot + aloha:
        eid, mine = ep["episode_id"], clips[ep["episode_id"]]
        source = [(x["start_frame"], x["end_frame"], (x["source_text"] or "").strip()) for x in mine]
        if ep is reviewed:
            labels = ([(a, b, t) for a, b, t, s in spans if s == "ok"], REVIEW_TASK, "reviewed")
        elif ep is vlm:
            labels = ([(a, b, t) for (a, b), t in zip(vlm_spans, VLM_TEXTS)], VLM_TASK, "vlm")
        elif any(t for *_, t in source):
            labels = (source, ep["task_name"], "source_labels")
        elif eid in rules:
            mine = sorted((s for s in proposal_spans if s["proposal_id"] == rules[eid]["proposal_id"]),
                          key=lambda s: s["span_index"])
            labels = ([(s["start_frame"], s["end_frame"], s["instruction"]) for s in mine], rules[eid]["task"], "rules")
        else:
            labels = (source, PLACEHOLDER_TASK.format(robot=ep["robot"]), "placeholder")
        expected[ep["robot"]].append((eid, *labels))
    assert {e[3] for e in expected["agibot_g1"]} == {"reviewed", "vlm", "source_labels"}
    assert {e[3] for e in expected["aloha"]} == {"rules", "placeholder"}  # ALOHA has no subtask labels
    assert [e[0] for e in expected["aloha"] if e[3] == "placeholder"] == [aloha[0]["episode_id"]]
    return root, expected


def _data(root):
    return pq.read_table(sorted((root / "data").glob("*/*.parquet")))


def _episodes(root):
    return pq.read_table(sorted((root / "meta" / "episodes").glob("*/*.parquet"))).to_pylist()


def _state(ep_row):
    """The recording's state as exported: grippers as openness."""
    t = pq.read_table(ep_row["frames_uri"])
    raw = tuple(np.stack(t[k].to_numpy(zero_copy_only=False)) for k in ("observation.state", "action"))
    return gripper_openness(raw, load_robot(ep_row["robot"]))[0]


def test_clip_episodes_follow_review_then_vlm_then_source_labels_then_rules(labeled, tmp_path):
    catalog, expected = labeled
    reports = {r.robot: r for r in run_export(catalog, tmp_path, codec="h264", size=SIZE, progress=False)}
    catalog_eps = {e["episode_id"]: e for e in _rows(catalog / "catalog", "episodes")}
    for robot, recordings in expected.items():
        r = reports[robot]
        want = [(b - a, DEFAULT_TEMPLATE.format(task=task, subtask=t) if t else task)
                for _, spans, task, _ in recordings for a, b, t in spans]
        eps = _episodes(r.path)
        assert [(e["length"], e["tasks"][0]) for e in eps] == want
        tasks = pq.read_table(r.path / "meta" / "tasks.parquet")["task"].to_pylist()
        assert tasks == list(dict.fromkeys(t for _, t in want))
        counts = {k: 0 for k in ("reviewed", "vlm", "source_labels", "rules", "placeholder")}
        for _, spans, _, source in recordings:
            counts[source] += len(spans)
        assert r.by_source == counts and r.episodes == len(want) and r.placeholder_episodes == counts["placeholder"]
        assert r.unusable_spans == (1 if robot == "agibot_g1" else 0)
        assert validate_dataset(r.path) == []

    # the reviewed episodes hold exactly the reviewed frames: the moved start, no unusable span
    eid, spans, _, _ = expected["agibot_g1"][0]
    state, data = _state(catalog_eps[eid]), _data(reports["agibot_g1"].path)
    got = np.stack(data["observation.state"].to_numpy(zero_copy_only=False))
    episode = data["episode_index"].to_numpy()
    for i, (a, b, _) in enumerate(spans):
        np.testing.assert_array_equal(got[episode == i], state[a:b])
    assert any(REWRITTEN in t for t in pq.read_table(reports["agibot_g1"].path / "meta" / "tasks.parquet")["task"]
               .to_pylist())


def test_recording_episode_leaves_unusable_spans_out(labeled, tmp_path):
    catalog, expected = labeled
    r = run_export(catalog, tmp_path, robot="agibot_g1", unit="recording", codec="h264", size=SIZE, progress=False)[0]
    recordings = expected["agibot_g1"]
    eps = _episodes(r.path)
    assert [(e["length"], e["tasks"][0]) for e in eps] == [
        (sum(b - a for a, b, _ in spans), task) for _, spans, task, _ in recordings]
    assert r.by_source == {"reviewed": 1, "vlm": 1, "source_labels": len(recordings) - 2, "rules": 0,
                           "placeholder": 0} and r.unusable_spans == 1
    eid, spans, _, _ = recordings[0]
    data = _data(r.path)
    first = data.slice(0, eps[0]["length"])
    subtasks = pq.read_table(r.path / "meta" / "subtasks.parquet")["subtask"].to_pylist()
    assert [subtasks[i] for i in first["subtask_index"].to_pylist()] == [
        t or PLACEHOLDER_SUBTASK for a, b, t in spans for _ in range(a, b)]
    state = _state(next(e for e in _rows(catalog / "catalog", "episodes") if e["episode_id"] == eid))
    np.testing.assert_array_equal(np.stack(first["observation.state"].to_numpy(zero_copy_only=False)),
                                  np.concatenate([state[a:b] for a, b, _ in spans]))
    assert validate_dataset(r.path) == []
