"""Checks an episode must pass before anything downstream sees it. Failures raise QuarantineError with a
stable code and a precise reason; nothing is repaired."""

from __future__ import annotations

import numpy as np

from schemas.episode import Episode, QuarantineError
from schemas.robot import RobotConfig

MAX_GAP_FRAMES = 2.5  # a timestamp step above this many frame periods is a dropped-data gap


def check_frame_counts(num_samples: int, camera_frames: dict[str, int]) -> None:
    bad = {cam: n for cam, n in camera_frames.items() if n != num_samples}
    if bad:
        detail = ", ".join(f"{cam} has {n} frames" for cam, n in bad.items())
        raise QuarantineError("frame_count_mismatch", f"{num_samples} joint samples but {detail}")


def _row_list(rows: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def validate_signals(ep: Episode, robot: RobotConfig) -> None:
    n = ep.num_frames
    if n == 0 or ep.state.ndim != 2:
        raise QuarantineError("empty_episode", "no joint samples")
    if ep.state.shape[1] != len(robot.state_names):
        raise QuarantineError("joint_dimension", f"state has {ep.state.shape[1]} joints, robot "
                              f"{robot.name} declares {len(robot.state_names)}")
    if ep.action.ndim != 2 or ep.action.shape[1] != len(robot.action_names):
        raise QuarantineError("joint_dimension", f"action has shape {ep.action.shape}, robot "
                              f"{robot.name} declares {len(robot.action_names)} action values")
    if ep.action.shape[0] != n or ep.timestamps.shape[0] != n:
        raise QuarantineError("length_mismatch", f"{n} state rows, {ep.action.shape[0]} action rows, "
                              f"{ep.timestamps.shape[0]} timestamps")
    for name, values in (("state", ep.state), ("action", ep.action)):
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if len(bad):
            raise QuarantineError("non_finite", f"{name} has NaN/inf in {len(bad)} rows ({_row_list(bad)})")
    steps = np.diff(ep.timestamps)
    back = np.flatnonzero(steps <= 0)
    if len(back):
        raise QuarantineError("non_monotonic_timestamps", f"timestamp does not increase at rows "
                              f"{_row_list(back + 1)}")
    gaps = np.flatnonzero(steps > MAX_GAP_FRAMES / ep.fps)
    if len(gaps):
        raise QuarantineError("timestamp_gap", f"{len(gaps)} gaps, largest {steps.max():.3f} s at row "
                              f"{int(gaps[0]) + 1}")
    duration = n / ep.fps
    if duration < robot.segmentation.min_episode_s:
        raise QuarantineError("too_short", f"{duration:.2f} s, minimum {robot.segmentation.min_episode_s} s")
