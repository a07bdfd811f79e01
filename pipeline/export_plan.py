"""Which frames of which catalog episode become which LeRobot episode, under which task string.

Reads only the contracts of the earlier stages: the catalog (episodes, clips and per-episode frame tables) and,
where `vla-data annotate` and `vla-data review pull` have run, their tables (schemas/proposals.py,
schemas/review.py). Per recording, spans and texts come from the first of LABEL_SOURCES that has them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path

import pyarrow.parquet as pq

from pipeline import storage
from pipeline.catalog import CATALOG_DIR

PLACEHOLDER_TASK = "unlabeled {robot} recording"
PLACEHOLDER_SUBTASK = "unlabeled subtask"
DEFAULT_TEMPLATE = "{task}: {subtask}"
# Where a recording's spans and texts come from, in priority order: the current human review, the current VLM
# proposal (status ok), the skeleton clips with the source's subtask labels, the current rules proposal, the
# skeleton clips with the source's task name, none of these (placeholders).
LABEL_SOURCES = ("reviewed", "vlm", "source_labels", "rules", "placeholder")
UNUSABLE = "unusable"  # a reviewed span's status: left out of the export


@dataclass
class ExportEpisode:
    index: int  # episode_index in the dataset
    source_id: str  # catalog episode_id
    spans: list[tuple[int, int]]  # source frame ranges [start, end), in order
    task: str
    subtasks: list[str] = field(default_factory=list)  # per span (recording unit only)
    placeholder: bool = False  # the task string is a placeholder, not an instruction

    @property
    def length(self) -> int:
        return sum(b - a for a, b in self.spans)


@dataclass
class SourceEpisode:
    episode_id: str
    fps: float
    frames_uri: str
    cameras: list[dict]
    state_names: list[str]
    action_names: list[str]
    exports: list[ExportEpisode]  # empty when every reviewed span is unusable
    labels: str  # one of LABEL_SOURCES
    unusable: int  # reviewed spans left out
    depth_cameras: list[dict] = field(default_factory=list)  # kept by `ingest --depth`


def _task(ep: dict, robot: str) -> tuple[str, bool]:
    name = (ep["task_name"] or "").strip()
    return (name, False) if name else (PLACEHOLDER_TASK.format(robot=robot), True)


def _rows(cat: str, name: str) -> list[dict]:
    """A catalog table as rows; none when the stage that writes it has not run."""
    path = storage.join(cat, f"{name}.parquet")
    return pq.read_table(path).to_pylist() if storage.exists(path) else []


def _spans_by(rows: list[dict], key: Callable[[dict], object]) -> dict:
    """Span rows grouped by key, in frame order."""
    out: dict = {}
    for r in sorted(rows, key=itemgetter("start_frame", "end_frame")):
        out.setdefault(key(r), []).append(r)
    return out


def _span(row: dict, text: str) -> tuple[int, int, str]:
    return row["start_frame"], row["end_frame"], (row[text] or "").strip()


def pick_labels(ep: dict, clips: list[dict], review: tuple | None,
                proposal: tuple | None) -> tuple[str, str, list[tuple[int, int, str]], int]:
    """(label source, task ("" = the recording's own), spans [start, end) with subtask texts, spans left out).
    review: (task, spans) of the current review; proposal: (made_by, task, spans) of the current proposal when
    its status is ok."""
    if review is not None:
        task, rows = review
        usable = [_span(s, "instruction") for s in rows if s["status"] != UNUSABLE]
        return "reviewed", task or "", usable, len(rows) - len(usable)
    source = [_span(c, "source_text") for c in clips]
    labeled = any(text for *_, text in source)
    if proposal is not None and (proposal[0] == "vlm" or not labeled):
        made_by, task, rows = proposal
        return made_by, task or "", [_span(s, "instruction") for s in rows], 0
    return "source_labels" if labeled or (ep["task_name"] or "").strip() else "placeholder", "", source, 0


def disjoint(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Spans (in start order) with each overlap cut off the later one, which is dropped if nothing is left: a
    reviewer's boundary may cross its neighbour's, and every source frame is exported at most once."""
    out, end = [], 0
    for a, b, text in spans:
        if b > max(a, end):
            out.append((max(a, end), b, text))
            end = b
    return out


def plan_export(catalog_root: str | Path, robot: str, unit: str, template: str = DEFAULT_TEMPLATE) -> list[SourceEpisode]:
    """Export episodes of one robot in catalog order (source_key, then span order), indexed 0..N-1."""
    if unit not in ("clip", "recording"):
        raise ValueError(f"episode unit must be clip or recording, got {unit!r}")
    cat = storage.join(catalog_root, CATALOG_DIR)
    episodes = [e for e in _rows(cat, "episodes") if e["robot"] == robot]
    clips = _spans_by(_rows(cat, "clips"), itemgetter("episode_id"))
    reviewed = _spans_by(_rows(cat, "annotation_spans"), itemgetter("annotation_id", "version"))
    reviews = {a["episode_id"]: (a["task"], reviewed.get((a["annotation_id"], a["version"]), []))
               for a in _rows(cat, "annotations") if a["is_current"]}
    proposed = _spans_by(_rows(cat, "proposal_spans"), itemgetter("proposal_id"))
    proposals = {p["episode_id"]: (p["made_by"], p["task"], proposed.get(p["proposal_id"], []))
                 for p in _rows(cat, "proposals") if p["is_current"] and p["status"] == "ok"}
    sources, n = [], 0
    for ep in episodes:  # the catalog is sorted by (robot, source_key)
        eid = ep["episode_id"]
        if eid not in clips:
            continue
        labels, task, spans, unusable = pick_labels(ep, clips[eid], reviews.get(eid), proposals.get(eid))
        spans = disjoint(spans)
        task, placeholder = (task.strip(), False) if task.strip() else _task(ep, robot)
        exports = []
        if unit == "clip":
            for a, b, sub in spans:
                text = template.format(task=task, subtask=sub) if sub else task
                exports.append(ExportEpisode(n, eid, [(a, b)], text, placeholder=placeholder and not sub))
                n += 1
        elif spans:
            exports.append(ExportEpisode(n, eid, [(a, b) for a, b, _ in spans], task,
                                         [sub or PLACEHOLDER_SUBTASK for *_, sub in spans], placeholder))
            n += 1
        sources.append(SourceEpisode(eid, ep["fps"], ep["frames_uri"], ep["cameras"], ep["state_names"],
                                     ep["action_names"], exports, labels, unusable, ep.get("depth_cameras") or []))
    return sources


def batches(sources: list[SourceEpisode], max_frames: int) -> list[list[SourceEpisode]]:
    """Contiguous groups of source episodes with at most max_frames exported frames each (at least one episode):
    the unit of parallel video encoding. Depends only on the catalog, so output files are deterministic."""
    out, current, frames = [], [], 0
    for s in sources:
        f = sum(e.length for e in s.exports)
        if current and frames + f > max_frames:
            out.append(current)
            current, frames = [], 0
        current.append(s)
        frames += f
    return out + ([current] if current else [])
