"""Static (idle) detection: a frame is static when the robot's joints are still AND the cameras see no
motion, for at least a minimum duration."""

from __future__ import annotations

import numpy as np

from pipeline.motion import joint_speed
from schemas.robot import RobotConfig


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of every run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


EDGE_NOISE_SIGMAS = 3.0  # a static run ends where joint speed leaves its own noise floor by this much


def _trim_edges(a: int, b: int, speed: np.ndarray) -> tuple[int, int]:
    """Moves a static run's edges inward past frames whose speed already rises above the run's noise floor:
    the fixed threshold is crossed some frames after a motion really starts (and before it really ends)."""
    inner = speed[a:b]
    floor = np.median(inner)
    level = floor + EDGE_NOISE_SIGMAS * 1.4826 * np.median(np.abs(inner - floor))
    while b > a and speed[b - 1] > level and b < len(speed):
        b -= 1
    while a < b and speed[a] > level and a > 0:
        a += 1
    return a, b


def static_mask(state: np.ndarray, visual: np.ndarray, robot: RobotConfig) -> np.ndarray:
    seg = robot.segmentation
    speed = joint_speed(state, robot)
    still = (speed < seg.static_joint_speed) & (visual < seg.static_visual_motion)
    gap = int(round(seg.static_gap_s * robot.fps))
    for a, b in runs(~still):  # close short non-static blips inside still stretches
        if b - a <= gap and a > 0 and b < len(still):
            still[a:b] = True
    out = np.zeros_like(still)
    for a, b in runs(still):
        if b - a >= seg.static_min_s * robot.fps:
            a, b = _trim_edges(a, b, speed)
            out[a:b] = True
    return out


def static_spans(static: np.ndarray) -> list[tuple[int, int, str]]:
    """Static runs with their position in the episode: head, mid or tail."""
    n = len(static)
    return [(a, b, "head" if a == 0 else "tail" if b == n else "mid") for a, b in runs(static)]
