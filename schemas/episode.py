"""The canonical episode contract: what every source adapter produces, whatever the raw format.

Arrays stay numpy (frames are streamed, never held whole); the catalog tables in schemas.catalog are
the persisted form of the same contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

EPISODE_CONTRACT_VERSION = "1.1"  # 1.1: depth streams, robot hint on SourceRef


class QuarantineError(Exception):
    """An episode that must not go downstream. `code` is stable and machine-readable, `detail` precise."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class SourceRef:
    """One raw recording found on disk, before it is read."""

    source_format: str
    root: str  # the ingest input root
    key: str  # path of the recording relative to root: stable id of the source
    files: tuple[str, ...]  # every file the recording consists of (for hashing and change detection)
    fingerprint: str = ""  # names, sizes and mtimes of those files at discovery: resume compares it
    robot: str = ""  # robot config the source names (e.g. Galaxea's raw_data_meta.json robotType); "" = format default


@dataclass
class CameraStream:
    """One camera. Either `frames` yields RGB uint8 frames (video arrives as frames, e.g. ALOHA HDF5)
    or `video_path` points at an mp4 that is kept as is (e.g. AgiBot). A depth stream (Episode.depth) yields
    (H, W) uint16 frames in millimetres, one per joint-clock frame; its role is that of the colour camera it
    belongs to."""

    name: str
    role: str  # top | left_wrist | right_wrist
    frames: Callable[[], Iterator[np.ndarray]] | None = None
    video_path: str | None = None


@dataclass
class SourceSegment:
    """A human segment label that came with the recording (frame range end-exclusive)."""

    start_frame: int
    end_frame: int
    text: str
    skill: str = ""


@dataclass
class Episode:
    source: SourceRef
    robot: str
    fps: float
    timestamps: np.ndarray  # (N,) float64 seconds from the first sample, on the joint clock
    state: np.ndarray  # (N, D) float32
    action: np.ndarray  # (N, D_action) float32
    state_names: list[str]
    action_names: list[str]
    cameras: list[CameraStream]
    content_hash: str
    adapter_version: str
    task_name: str | None = None
    recorded_at: datetime | None = None  # timezone-aware start of the recording, see schemas.catalog.EPISODES
    segments: list[SourceSegment] = field(default_factory=list)
    depth: list[CameraStream] = field(default_factory=list)  # optional depth cameras; ingest keeps them on request

    @property
    def num_frames(self) -> int:
        return int(self.state.shape[0])
