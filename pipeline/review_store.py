"""Review state on disk: one JSON record per pushed task (OUT/_review/tasks/<episode_id>.json) and per pulled
annotation version (OUT/_review/annotations/<episode_id>/<annotation_id>@<version>.json), each written
atomically, and the review tables rebuilt from them (published atomically). A version, once pulled, is never
rewritten: every edit an annotator saves is kept."""

from __future__ import annotations

from pipeline import storage
from pipeline.catalog import publish_tables, write_json_atomic
from schemas.review import SORT_KEYS, TABLES, with_version

REVIEW_DIR = "_review"


def task_path(root: str, episode_id: str) -> str:
    return storage.join(root, REVIEW_DIR, "tasks", f"{episode_id}.json")


def annotation_path(root: str, episode_id: str, annotation_id: int, version: str) -> str:
    return storage.join(root, REVIEW_DIR, "annotations", episode_id, f"{annotation_id}@{version.replace(':', '')}.json")


def state_path(root: str) -> str:
    return storage.join(root, REVIEW_DIR, "pull_state.json")


def _records(folder: str, depth: int) -> list[dict]:
    """The JSON records `depth` folders below folder, in path order."""
    return [storage.read_json(storage.join(folder, rel)) for rel in sorted(storage.list_files(folder))
            if rel.endswith(".json") and rel.count("/") == depth]


def task_records(root: str) -> dict[str, dict]:
    return {r["episode_id"]: r for r in _records(storage.join(root, REVIEW_DIR, "tasks"), 0)}


def save(path: str, record: dict) -> None:
    write_json_atomic(path, record)


def rebuild_tables(root: str) -> dict[str, str]:
    """review_tasks, annotations (is_current: the newest non-cancelled version per recording) and their spans."""
    annotations, spans = [], []
    for rec in _records(storage.join(root, REVIEW_DIR, "annotations"), 1):
        annotations.append(rec["annotation"])
        spans += rec["spans"]
    current = {}
    for a in annotations:
        if not a["cancelled"] and a["updated_at"] >= current.get(a["episode_id"], ("",))[0]:
            current[a["episode_id"]] = (a["updated_at"], a["annotation_id"], a["version"])
    for a in annotations:
        a["is_current"] = current.get(a["episode_id"], ())[1:] == (a["annotation_id"], a["version"])
    rows = {"review_tasks": list(task_records(root).values()), "annotations": annotations, "annotation_spans": spans}
    return publish_tables(root, rows, {name: with_version(schema) for name, schema in TABLES.items()}, SORT_KEYS)
