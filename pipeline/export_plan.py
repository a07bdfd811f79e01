"""Which frames of which catalog episode become which LeRobot episode, under which task string.

Reads only the catalog contract (episodes, clips tables and per-episode frame tables)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.catalog import CATALOG_DIR

PLACEHOLDER_TASK = "unlabeled {robot} recording"
PLACEHOLDER_SUBTASK = "unlabeled subtask"
DEFAULT_TEMPLATE = "{task}: {subtask}"


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
    exports: list[ExportEpisode]


def _task(ep: dict, robot: str) -> tuple[str, bool]:
    name = (ep["task_name"] or "").strip()
    return (name, False) if name else (PLACEHOLDER_TASK.format(robot=robot), True)


def plan_export(catalog_root: Path, robot: str, unit: str, template: str = DEFAULT_TEMPLATE) -> list[SourceEpisode]:
    """Export episodes of one robot in catalog order (source_key, then clip order), indexed 0..N-1."""
    if unit not in ("clip", "recording"):
        raise ValueError(f"episode unit must be clip or recording, got {unit!r}")
    cat = Path(catalog_root) / CATALOG_DIR
    episodes = [e for e in pq.read_table(cat / "episodes.parquet").to_pylist() if e["robot"] == robot]
    clips = pq.read_table(cat / "clips.parquet").to_pylist()
    by_episode: dict[str, list[dict]] = {}
    for c in sorted(clips, key=lambda c: (c["episode_id"], c["clip_index"])):
        by_episode.setdefault(c["episode_id"], []).append(c)
    sources, n = [], 0
    for ep in episodes:  # the catalog is sorted by (robot, source_key)
        mine = by_episode.get(ep["episode_id"], [])
        if not mine:
            continue
        task, placeholder = _task(ep, robot)
        exports = []
        if unit == "clip":
            for c in mine:
                sub = (c["source_text"] or "").strip()
                text = template.format(task=task, subtask=sub) if sub else task
                exports.append(ExportEpisode(n, ep["episode_id"], [(c["start_frame"], c["end_frame"])], text,
                                             placeholder=placeholder and not sub))
                n += 1
        else:
            exports.append(ExportEpisode(n, ep["episode_id"], [(c["start_frame"], c["end_frame"]) for c in mine], task,
                                         [(c["source_text"] or "").strip() or PLACEHOLDER_SUBTASK for c in mine],
                                         placeholder))
            n += 1
        sources.append(SourceEpisode(ep["episode_id"], ep["fps"], ep["frames_uri"], ep["cameras"], ep["state_names"],
                                     ep["action_names"], exports))
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
