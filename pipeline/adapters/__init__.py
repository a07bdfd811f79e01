"""Source adapters: each finds its recordings under a root and reads one into the canonical Episode."""

from __future__ import annotations

from pathlib import Path

from pipeline.adapters import agibot, aloha
from pipeline.adapters.common import content_hash, fingerprint
from schemas.episode import Episode, SourceRef
from schemas.robot import RobotConfig

ADAPTERS = {"aloha": aloha, "agibot": agibot}
__all__ = ["ADAPTERS", "content_hash", "discover", "fingerprint", "read"]


def discover(root: str | Path, formats: list[str] | None = None) -> list[SourceRef]:
    """Every recording of the given formats (all by default) under root, in a stable order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"input folder {root} does not exist")
    unknown = set(formats or []) - set(ADAPTERS)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; known: {sorted(ADAPTERS)}")
    refs = [ref for name in (formats or ADAPTERS) for ref in ADAPTERS[name].discover(root)]
    return sorted(refs, key=lambda r: (r.source_format, r.key))


def read(ref: SourceRef, robot: RobotConfig) -> Episode:
    return ADAPTERS[ref.source_format].read(ref, robot)
