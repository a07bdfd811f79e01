"""Motion signals: smoothed joint and gripper speeds, and a visual motion score from frame differences."""

from __future__ import annotations

import cv2
import numpy as np

from schemas.robot import RobotConfig

MOTION_SIZE = (64, 48)  # frames are compared at this size: cheap, and averages pixel noise away
MOTION_TOP_FRACTION = 0.02  # score = mean of the most-changed 2% of pixels, so a small moving arm counts


def smooth(x: np.ndarray, fps: float, seconds: float = 0.1) -> np.ndarray:
    """Centred moving average along axis 0 (edges use the available samples)."""
    w = max(1, int(round(seconds * fps)) | 1)
    if w == 1 or len(x) < 2:
        return x.astype(np.float64)
    kernel = np.ones(w)
    pad = [(w // 2, w // 2)] + [(0, 0)] * (x.ndim - 1)
    ones = np.pad(np.ones(len(x)), (w // 2, w // 2))
    counts = np.convolve(ones, kernel, mode="valid")
    padded = np.pad(x.astype(np.float64), pad)
    out = np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, padded)
    return out / (counts if x.ndim == 1 else counts[:, None])


def velocity(x: np.ndarray, fps: float) -> np.ndarray:
    """Time derivative of smoothed x by central differences over +-60 ms."""
    k = max(1, int(round(0.06 * fps)))
    s = smooth(x, fps)
    padded = np.concatenate([np.repeat(s[:1], k, 0), s, np.repeat(s[-1:], k, 0)])
    return (padded[2 * k:] - padded[: -2 * k]) * fps / (2 * k)


def gripper_openness(state: np.ndarray, robot: RobotConfig) -> np.ndarray:
    """(N, n_grippers) in 0 = closed .. 1 = open, whatever the platform's units and polarity."""
    return np.stack([g.openness(state[:, g.state_index]) for g in robot.grippers.values()], axis=1)


def joint_speed(state: np.ndarray, robot: RobotConfig) -> np.ndarray:
    """(N,) largest absolute speed over all arm joints (rad/s) and grippers (openness/s)."""
    arms = [i for idx in robot.arm_joints.values() for i in idx]
    v = np.abs(np.concatenate([velocity(state[:, arms], robot.fps),
                               velocity(gripper_openness(state, robot), robot.fps)], axis=1))
    return v.max(axis=1)


def arm_speed(state: np.ndarray, robot: RobotConfig) -> np.ndarray:
    """(N,) sum over arms of the joint-velocity norm, grippers excluded."""
    return sum(np.linalg.norm(velocity(state[:, idx], robot.fps), axis=1) for idx in robot.arm_joints.values())


class VisualMotion:
    """Per-frame motion score of one camera: the mean of the largest grey-level changes since the previous
    frame, at MOTION_SIZE. Feed frames in order; `scores` has one value per frame (the first repeats the second)."""

    def __init__(self):
        self.prev: np.ndarray | None = None
        self.values: list[float] = []

    def add(self, rgb: np.ndarray) -> None:
        grey = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), MOTION_SIZE, interpolation=cv2.INTER_AREA)
        grey = grey.astype(np.int16)
        if self.prev is not None:
            diff = np.abs(grey - self.prev).ravel()
            top = max(1, int(diff.size * MOTION_TOP_FRACTION))
            self.values.append(float(np.partition(diff, diff.size - top)[-top:].mean()))
        self.prev = grey

    @property
    def scores(self) -> np.ndarray:
        v = np.asarray(self.values, np.float32)
        return np.concatenate([v[:1], v]) if len(v) else np.zeros(len(self.values) + (self.prev is not None), np.float32)
