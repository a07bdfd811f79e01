"""What a VLM sees of a recording: frames of all three views, sampled from its active (non-static) part at a
fixed rate, resized and JPEG-encoded, each tagged with its view and its time on the recording's clock."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from pipeline.video import decode_frames

VIEW_ORDER = ("top", "left_wrist", "right_wrist")


class FrameSampling(BaseModel):
    rate_hz: float = Field(1.0, gt=0)  # samples per second of active recording
    max_samples: int = Field(12, ge=1)  # per view; the rate drops for long recordings
    width: int = Field(320, ge=16)
    height: int = Field(240, ge=16)
    jpeg_quality: int = Field(85, ge=10, le=100)


@dataclass(frozen=True)
class Frame:
    view: str  # top | left_wrist | right_wrist
    t: float  # seconds from the recording's first frame
    jpeg: bytes


def sample_indices(active: np.ndarray, fps: float, cfg: FrameSampling) -> np.ndarray:
    """Frame indices spread evenly over the active frames: one per 1/rate_hz seconds, at most max_samples."""
    idx = np.flatnonzero(active)
    if idx.size == 0:
        return idx
    n = int(min(cfg.max_samples, max(1, round(idx.size / fps * cfg.rate_hz))))
    # centres of n equal parts of the active frames, so no sample sits on a cut
    return idx[((np.arange(n) + 0.5) * idx.size / n).astype(int)]


def sample_frames(episode: dict, cfg: FrameSampling) -> list[Frame]:
    """Decodes each camera once and keeps the sampled frames; ordered by time, then view."""
    active = ~pq.read_table(episode["frames_uri"], columns=["static"]).column("static").to_numpy(zero_copy_only=False)
    indices = sample_indices(active, episode["fps"], cfg)
    wanted = set(indices.tolist())
    out = []
    for cam in sorted(episode["cameras"], key=lambda c: VIEW_ORDER.index(c["role"])):
        picked = [rgb for _, rgb in decode_frames(cam["uri"], keep=lambda i: i in wanted)]
        if len(picked) != len(indices):
            raise ValueError(f"{cam['uri']}: decoded {len(picked)} of {len(indices)} sampled frames")
        for i, rgb in zip(indices, picked):
            small = cv2.resize(rgb, (cfg.width, cfg.height), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
            if not ok:
                raise ValueError(f"{cam['uri']}: JPEG encoding of frame {i} failed")
            out.append(Frame(cam["role"], round(float(i) / episode["fps"], 2), buf.tobytes()))
    return sorted(out, key=lambda f: (f.t, VIEW_ORDER.index(f.view)))


def frames_hash(frames: list[Frame]) -> str:
    h = hashlib.sha256()
    for f in frames:
        h.update(f"{f.view}@{f.t:.2f}:{len(f.jpeg)}:".encode())
        h.update(f.jpeg)
    return h.hexdigest()
