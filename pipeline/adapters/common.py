"""Helpers shared by all adapters: provenance (content hash), the recording time of clock-less formats, and the
JPEG rows of HDF5 recorders."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from schemas.episode import QuarantineError, SourceRef


def content_hash(ref: SourceRef) -> str:
    """sha256 over the names and bytes of every file of the recording."""
    h = hashlib.sha256()
    for f in ref.files:
        p = Path(ref.root) / f
        h.update(f.encode())
        if p.exists():
            with open(p, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
    return h.hexdigest()


def file_time(path: Path) -> datetime:
    """A recording's start when its format keeps no clock: the file's modification time, in UTC."""
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def rgb_from_jpeg_row(row, cam: str, i: int) -> np.ndarray:
    """One JPEG row (bytes, or uint8 padded with zeros) as RGB. No channel swap: the ALOHA and RoboTwin recorders
    handed RGB arrays to cv2.imencode, so cv2.imdecode gives RGB back."""
    buf = np.frombuffer(row, np.uint8) if isinstance(row, bytes) else np.asarray(row, np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise QuarantineError("corrupt_image", f"camera {cam} frame {i}: JPEG does not decode")
    return img
