"""Bring reviewed annotations back: submitted annotations of our project's tasks (full JSON export of the tasks
with at least one annotation, updated since the last pull) become annotation records: who, when, the final
spans (recording frames and seconds, skeleton clip ids), instructions and statuses, and what changed against
the prediction each started from. Human results override proposals downstream; every version is kept."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone


from pipeline import review_store, storage
from pipeline.catalog import CATALOG_DIR
from pipeline.labelstudio_client import LabelStudio
from pipeline.review_media import ReviewClock
from schemas.review import SPAN_STATUS, SPAN_TEXT, SPANS, TASK_TEXT

log = logging.getLogger(__name__)


@dataclass
class PullReport:
    project_id: int
    tasks: int = 0  # annotated tasks read
    new_versions: int = 0  # annotation versions not seen before
    unknown_tasks: int = 0  # tasks of recordings this catalog never pushed


def _text(item: dict | None) -> str | None:
    return " ".join(t.strip() for t in item["value"].get("text", []) if t.strip()) if item else None


def _regions(result: list[dict]) -> dict[str, dict[str, dict]]:
    """Result items grouped by region id, then by from_name."""
    out: dict[str, dict[str, dict]] = {}
    for item in result:
        out.setdefault(item.get("id", ""), {})[item["from_name"]] = item
    return out


def _task_item(result: list[dict]) -> dict | None:
    return next((i for i in result if i["from_name"] == TASK_TEXT), None)


def parse(ann: dict, prediction: dict | None, clock: ReviewClock, fps: float, clips: dict[tuple[int, int], str],
          episode_id: str, annotator: str, pulled_at: str) -> dict:
    """One Label Studio annotation -> an annotation record (annotations row + annotation_spans rows)."""
    version = ann["updated_at"]
    predicted = _regions(prediction["result"]) if prediction else {}
    spans = []
    for rid, items in _regions(ann["result"]).items():
        if SPANS not in items:
            continue
        for r in items[SPANS]["value"]["ranges"]:
            a, b = clock.to_recording(int(r["start"]), int(r["end"]))
            text = _text(items.get(SPAN_TEXT)) or ""
            status = (items.get(SPAN_STATUS, {}).get("value", {}).get("choices") or ["ok"])[0]
            before = predicted.get(rid, {})
            shift = (None, None)
            if SPANS in before:
                pr = before[SPANS]["value"]["ranges"][0]
                pa_, pb = clock.to_recording(int(pr["start"]), int(pr["end"]))
                shift = ((a - pa_) / fps, (b - pb) / fps)
            spans.append({"region_id": rid if before else None, "start_frame": a, "end_frame": b, "start_s": a / fps,
                          "end_s": b / fps, "instruction": text, "status": status,
                          "span_origin": items[SPANS].get("origin", "manual"),
                          "text_origin": items.get(SPAN_TEXT, {}).get("origin", "manual"),
                          "clip_id": clips.get((a, b)), "start_shift_s": shift[0], "end_shift_s": shift[1],
                          "text_changed": (text != (_text(before.get(SPAN_TEXT)) or "")) if before else None})
    spans.sort(key=lambda s: (s["start_frame"], s["end_frame"]))
    keys = {"annotation_id": ann["id"], "version": version, "episode_id": episode_id}
    task_item = _task_item(ann["result"])
    return {
        "annotation": {**keys, "task_id": ann["task"], "annotator": annotator, "created_at": ann["created_at"],
                       "updated_at": version, "lead_time_s": ann.get("lead_time"),
                       "cancelled": bool(ann.get("was_cancelled")),
                       "prediction_model_version": prediction["model_version"] if prediction else None,
                       "task": _text(task_item), "task_origin": task_item.get("origin", "manual") if task_item else None,
                       "pulled_at": pulled_at},
        "spans": [{**keys, "span_index": i, **s} for i, s in enumerate(spans)],
    }


def _clips(root: str) -> dict[str, dict[tuple[int, int], str]]:
    out: dict[str, dict[tuple[int, int], str]] = {}
    for c in storage.read_table(storage.join(root, CATALOG_DIR, "clips.parquet")).to_pylist():
        out.setdefault(c["episode_id"], {})[(c["start_frame"], c["end_frame"])] = c["clip_id"]
    return out


def pull(root: str, client: LabelStudio, project: str, full: bool = False) -> PullReport:
    """Incremental by the tasks' updated_at (`full` re-reads every annotated task; versions already pulled are
    skipped either way). Nothing is written until the server has answered every call."""
    root = storage.absolute(root)
    client.check()
    report = PullReport(client.project(project))
    state_file = review_store.state_path(root)
    state = storage.read_json(state_file) if storage.exists(state_file) else {}
    since = None if full or state.get("project_id") != report.project_id else state.get("updated_at")
    ids = client.annotated_since(report.project_id, since)
    tasks = client.export(report.project_id, ids) if ids else []
    users = client.users() if tasks else {}
    pushed, clips = review_store.task_records(root), _clips(root)
    pulled_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    watermark = since
    for task in tasks:
        report.tasks += 1
        watermark = max(filter(None, [watermark, task.get("updated_at")]), default=None)
        eid = task["data"].get("recording_id")
        if eid not in pushed:
            report.unknown_tasks += 1
            log.warning("task %s (recording %s) was not pushed from this catalog; skipped", task["id"], eid)
            continue
        rec = pushed[eid]
        clock = ReviewClock.from_ranges([(r["start"], r["end"]) for r in rec["active_ranges"]])
        listed = task.get("predictions") or []
        if any(isinstance(p, int) for p in listed):  # the export lists prediction ids only
            listed = client.predictions(task["id"])
        predictions = {p["id"]: p for p in listed}
        for ann in task.get("annotations", []):
            path = review_store.annotation_path(root, eid, ann["id"], ann["updated_at"])
            if storage.exists(path):
                continue
            who = ann.get("completed_by")
            annotator = who.get("email") if isinstance(who, dict) else users.get(who, str(who))
            review_store.save(path, parse(ann, predictions.get(ann.get("parent_prediction")), clock, rec["fps"],
                                          clips.get(eid, {}), eid, annotator, pulled_at))
            report.new_versions += 1
    review_store.save(state_file, {"project_id": report.project_id, "updated_at": watermark})
    review_store.rebuild_tables(root)
    return report
