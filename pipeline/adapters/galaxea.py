"""Galaxea R1 / R1 Pro ROS bags (being written)."""

from __future__ import annotations

from schemas.episode import Episode, SourceRef
from schemas.robot import RobotConfig

VERSION = "galaxea-0"


def discover(root: str, files: list[str]) -> list[SourceRef]:
    return []


def read(ref: SourceRef, robot: RobotConfig) -> Episode:
    raise NotImplementedError
