"""Source adapters: each picks its recordings out of a listing of the input location (a local folder or an
s3:// prefix) and reads one, from local files, into the canonical Episode."""

from __future__ import annotations

import dataclasses
import hashlib
from functools import cache
from pathlib import Path

from pipeline import storage
from pipeline.adapters import agibot, aloha, galaxea, robotwin
from pipeline.adapters.common import content_hash
from schemas.episode import Episode, SourceRef
from schemas.robot import RobotConfig

# In claiming order: a file one adapter claims is not offered to the next (RoboTwin's episode_0000001.hdf5
# would otherwise also match ALOHA's episode_*.hdf5).
ADAPTERS = {"robotwin": robotwin, "galaxea": galaxea, "agibot": agibot, "aloha": aloha}
__all__ = ["ADAPTERS", "content_hash", "discover", "read"]


def _relative(ref: SourceRef, root: str, f: str) -> str:
    """One of a recording's files as a path relative to the input root (a ref's own root may lie below it)."""
    prefix = ref.root[len(root):].strip("/")
    return f"{prefix}/{f}" if prefix else f


def _fingerprint(ref: SourceRef, listing: dict[str, tuple[int, int]], root: str) -> str:
    """File names, sizes and mtimes: what resume compares to decide that a recording is unchanged."""
    h = hashlib.sha1()
    for f in ref.files:
        size, mtime = listing.get(_relative(ref, root, f), (-1, -1))
        h.update(f"{f}:{size}:{mtime};".encode())
    return h.hexdigest()


def discover(root: str | Path, formats: list[str] | None = None) -> list[SourceRef]:
    """Every recording of the given formats (all by default) under root, in a stable order."""
    unknown = set(formats or []) - set(ADAPTERS)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; known: {sorted(ADAPTERS)}")
    root = storage.absolute(root)
    listing = storage.list_files(root)
    if not listing and not storage.exists(root):
        raise FileNotFoundError(f"input folder {root} does not exist")
    files, refs, claimed = sorted(listing), [], set()
    for name in ADAPTERS:
        found = [r for r in ADAPTERS[name].discover(root, files) if _relative(r, root, r.files[0]) not in claimed]
        claimed.update(_relative(r, root, f) for r in found for f in r.files)
        refs += [r for r in found if not formats or name in formats]
    refs = [dataclasses.replace(r, fingerprint=_fingerprint(r, listing, root)) for r in refs]
    read_json = cache(storage.read_json)  # recordings of a folder share their metadata file
    refs = [dataclasses.replace(r, robot=ADAPTERS[r.source_format].robot_hint(r, read_json))
            if hasattr(ADAPTERS[r.source_format], "robot_hint") else r for r in refs]
    return sorted(refs, key=lambda r: (r.source_format, r.key))


def read(ref: SourceRef, robot: RobotConfig) -> Episode:
    return ADAPTERS[ref.source_format].read(ref, robot)
