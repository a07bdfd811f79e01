"""Review media: each recording's active (non-static) frames as one browser-playable H.264 file per view, and
the clock that maps a Label Studio frame (1-based, inclusive, on that video) to the recording's own frames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq

from pipeline.video import Mp4Writer, decode_frames
from schemas.review import VIEWS

REVIEW_HEIGHT = 240  # small enough to stream three views at once, big enough to read a gripper


@dataclass(frozen=True)
class ReviewClock:
    """Review video frame k (0-based) is recording frame kept[k]."""

    kept: np.ndarray

    @classmethod
    def from_ranges(cls, ranges: list[tuple[int, int]]) -> "ReviewClock":
        return cls(np.concatenate([np.arange(a, b) for a, b in ranges]) if ranges else np.zeros(0, np.int64))

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """Runs of consecutive recording frames, [start, end)."""
        if not self.kept.size:
            return []
        breaks = np.flatnonzero(np.diff(self.kept) != 1)
        starts = np.r_[self.kept[0], self.kept[breaks + 1]]
        ends = np.r_[self.kept[breaks], self.kept[-1]] + 1
        return [(int(a), int(b)) for a, b in zip(starts, ends)]

    def to_review(self, start: int, end: int) -> tuple[int, int]:
        """Recording frames [start, end) -> Label Studio range (1-based, inclusive)."""
        a, b = np.searchsorted(self.kept, start), np.searchsorted(self.kept, end)
        return int(a) + 1, max(int(a) + 1, int(b))

    def to_recording(self, start: int, end: int) -> tuple[int, int]:
        """Label Studio range (1-based, inclusive) -> recording frames [start, end)."""
        n = len(self.kept)
        a, b = min(max(start, 1), n), min(max(end, 1), n)
        return int(self.kept[a - 1]), int(self.kept[max(a, b) - 1]) + 1


def active_clock(frames_uri: str) -> ReviewClock:
    static = pq.read_table(frames_uri, columns=["static"]).column("static").to_numpy(zero_copy_only=False)
    return ReviewClock(np.flatnonzero(~static))


def render(episode: dict, clock: ReviewClock, folder: Path) -> list[Path]:
    """One H.264 mp4 per view (VIEWS order) holding the clock's frames, written once: existing files are kept."""
    folder.mkdir(parents=True, exist_ok=True)
    keep = set(clock.kept.tolist())
    paths = []
    for view in VIEWS:
        cam = next(c for c in episode["cameras"] if c["role"] == view)
        path = folder / f"{view}.mp4"
        paths.append(path)
        if path.exists():
            continue
        w = int(round(cam["width"] * REVIEW_HEIGHT / cam["height"])) // 2 * 2
        tmp = path.with_name(f".{path.name}.tmp.mp4")
        with Mp4Writer(tmp, episode["fps"], "libx264", gop=int(round(episode["fps"]))) as out:
            for _, rgb in decode_frames(cam["uri"], keep=lambda i: i in keep):
                out.write(cv2.resize(rgb, (w, REVIEW_HEIGHT), interpolation=cv2.INTER_AREA))
        tmp.replace(path)
    return paths
