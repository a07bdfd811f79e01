"""Queue recordings for human review: each recording's current proposal becomes a Label Studio task (three
synchronised views of its active frames) with the proposal as an editable prediction.

Idempotent: a task carries our recording id and is looked up on the server before anything is created, so a
second push creates nothing; a proposal with a new model_version (model + prompt version) is added as a new
prediction on the same task. Every prediction passes the SDK's validator before anything is imported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from pipeline import review_store, storage
from pipeline.catalog import CATALOG_DIR
from pipeline.labelstudio_client import LabelStudio, ReviewError, validate_predictions
from pipeline.review_media import active_clock, render
from pipeline.review_tasks import model_version, prediction, task_data
from schemas.review import LABEL_CONFIG

log = logging.getLogger(__name__)
DEFAULT_PROJECT = "vla-data review"


@dataclass
class PushReport:
    project_id: int
    queued: int = 0  # recordings considered
    created: int = 0  # new tasks
    predictions_added: int = 0  # new proposal versions on existing tasks
    unchanged: int = 0
    without_proposal: int = 0


def current_proposals(root: str) -> dict[str, tuple[dict, list[dict]]]:
    """episode_id -> (current proposal row, its span rows in order)."""
    cat = storage.join(root, CATALOG_DIR)
    if not storage.exists(storage.join(cat, "proposals.parquet")):
        raise FileNotFoundError(f"{root} has no proposals: run `vla-data annotate {root}` first "
                                f"(without a VLM endpoint it proposes from robot signals)")
    props = {p["proposal_id"]: p for p in storage.read_table(storage.join(cat, "proposals.parquet")).to_pylist()
             if p["is_current"] and p["status"] != "pending"}
    spans: dict[str, list[dict]] = {}
    for s in storage.read_table(storage.join(cat, "proposal_spans.parquet")).sort_by("span_index").to_pylist():
        if s["proposal_id"] in props:
            spans.setdefault(s["proposal_id"], []).append(s)
    return {p["episode_id"]: (p, spans.get(pid, [])) for pid, p in props.items()}


def push(root: str, client: LabelStudio, media: Path, project: str = DEFAULT_PROJECT, limit: int | None = None,
         progress: bool = True) -> PushReport:
    """`media` is the server's local-files root: review videos go to media/recordings/<episode_id>/. The catalog
    may be an s3:// prefix; the review media are rendered from its videos onto this machine either way."""
    root = storage.absolute(root)
    proposals = current_proposals(root)
    episodes = storage.read_table(storage.join(root, CATALOG_DIR, "episodes.parquet")).to_pylist()
    proposed = [e for e in episodes if e["episode_id"] in proposals]
    todo = proposed[:limit]
    client.check()  # a wrong token or a server that is down fails here, before any work
    report = PushReport(client.project(project, LABEL_CONFIG), without_proposal=len(episodes) - len(proposed))
    (media / "recordings").mkdir(parents=True, exist_ok=True)
    client.local_storage(report.project_id, media / "recordings")
    prepared = []
    for ep in tqdm(todo, desc="render review media", unit="recording", disable=not progress):
        clock = active_clock(ep["frames_uri"])
        paths = render(ep, clock, media / "recordings" / ep["episode_id"])
        urls = [f"/data/local-files/?d={p.relative_to(media)}" for p in paths]
        prop, spans = proposals[ep["episode_id"]]
        prepared.append((ep, clock, paths, task_data(ep, urls), prop, prediction(prop, spans, clock)))
    problems = validate_predictions(LABEL_CONFIG, [p[-1] for p in prepared])
    bad = [f"{ep['episode_id']}: {'; '.join(errs)}" for (ep, *_), errs in zip(prepared, problems) if errs]
    if bad:
        raise ReviewError("predictions fail Label Studio's validator, nothing was imported:\n" + "\n".join(bad))
    for ep, clock, paths, data, prop, pred in tqdm(prepared, desc="push", unit="recording", disable=not progress):
        report.queued += 1
        task = client.task_of(report.project_id, ep["episode_id"])
        if task is None:
            task_id = client.import_task(report.project_id, data, pred)
            report.created += 1
        else:
            task_id = task["id"]
            if pred["model_version"] in {p["model_version"] for p in client.predictions(task_id)}:
                report.unchanged += 1
            else:
                client.add_prediction(task_id, pred)
                report.predictions_added += 1
        review_store.save(review_store.task_path(root, ep["episode_id"]), {
            "episode_id": ep["episode_id"], "project_id": report.project_id, "task_id": task_id, "fps": ep["fps"],
            "active_ranges": [{"start": a, "end": b} for a, b in clock.ranges], "media": [str(p) for p in paths],
            "proposal_id": prop["proposal_id"], "model_version": model_version(prop),
            "pushed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    review_store.rebuild_tables(root)
    return report
