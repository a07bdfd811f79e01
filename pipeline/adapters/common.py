"""Hashing shared by all adapters: provenance (content hash) and cheap change detection (fingerprint)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from schemas.episode import SourceRef


def fingerprint(ref: SourceRef) -> str:
    """File names, sizes and mtimes: what resume compares to decide that a recording is unchanged."""
    h = hashlib.sha1()
    for f in ref.files:
        p = Path(ref.root) / f
        st = p.stat() if p.exists() else None
        h.update(f"{f}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1};".encode())
    return h.hexdigest()


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
