"""Helpers shared by all adapters: provenance (content hash) and the recording time of clock-less formats."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from schemas.episode import SourceRef


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
