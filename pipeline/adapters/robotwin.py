"""RoboTwin 2.0 HDF5 (being written)."""

from __future__ import annotations

from schemas.episode import Episode, SourceRef
from schemas.robot import RobotConfig

VERSION = "robotwin-0"


def discover(root: str, files: list[str]) -> list[SourceRef]:
    return []


def read(ref: SourceRef, robot: RobotConfig) -> Episode:
    raise NotImplementedError
