"""Atomic clips: cuts at the end of gripper open/close transitions and at pauses of arm motion, within the
non-static parts of an episode, with minimum and maximum clip lengths. Where the source carries human
segment labels, those are kept as the clips instead (trimmed of static frames)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.motion import arm_speed, gripper_openness, velocity
from pipeline.static import runs
from schemas.episode import SourceSegment
from schemas.robot import RobotConfig

PLATEAU_TOLERANCE_S = 0.1  # a gripper transition ending this close to an arm pause belongs to it
PAUSE_WINDOW_S = 2.0  # how far either side of a frame the neighbouring motions are looked for
MIN_LABEL_PIECE_S = 0.25  # slivers of a human label left between static spans are not clips


@dataclass(frozen=True)
class Clip:
    start: int
    end: int  # exclusive
    origin: str  # signals | source_labels
    text: str = ""
    skill: str = ""


def gripper_events(state: np.ndarray, robot: RobotConfig) -> list[int]:
    """Frames at which a gripper open/close transition ends (sorted)."""
    seg, fps = robot.segmentation, robot.fps
    openness = gripper_openness(state, robot)
    speed = np.abs(velocity(openness, fps))
    ends = []
    for g in range(openness.shape[1]):
        for a, b in runs(speed[:, g] > seg.gripper_speed):
            lo, hi = max(0, a - 1), min(len(openness) - 1, b)
            if b - a >= 0.1 * fps and abs(openness[hi, g] - openness[lo, g]) >= seg.gripper_min_change:
                ends.append(b)
    return sorted(ends)


def _local_peak(speed: np.ndarray, window: int) -> np.ndarray:
    """Per frame, the smaller of the highest speeds in the `window` frames before and after it: a pause is
    judged against the motions on both sides, so a slow motion next to a fast one is not a pause."""
    pad = np.concatenate([np.zeros(window), speed, np.zeros(window)])
    windows = np.lib.stride_tricks.sliding_window_view(pad, window + 1)
    return np.minimum(windows[: len(speed)].max(axis=1), windows[window:].max(axis=1))


def _cuts_in_run(a: int, b: int, speed: np.ndarray, events: list[int], robot: RobotConfig) -> dict[int, bool]:
    """Cut frame -> whether it is a hard cut (the end of a gripper transition)."""
    seg, fps = robot.segmentation, robot.fps
    run = speed[a:b]
    tol = int(PLATEAU_TOLERANCE_S * fps)
    inside = [e for e in events if a < e < b]
    cuts, used = {}, set()
    for p0, p1 in runs(run < seg.arm_pause_fraction * _local_peak(run, int(PAUSE_WINDOW_S * fps))):
        p0, p1 = p0 + a, p1 + a
        if p0 == a or p1 == b:  # pauses at the run's edges are already boundaries
            continue
        near = [e for e in inside if p0 - tol <= e <= p1 + tol]
        used.update(near)
        # One pause with gripper activity is one boundary, after the last gripper event (e.g. a handover).
        if near:
            cuts[max(near)] = True
        else:
            cuts.setdefault(p0 + int(np.argmin(speed[p0:p1])), False)
    cuts.update({e: True for e in inside if e not in used})  # gripper transitions while the arm moves
    return cuts


def _merge_short(bounds: list[int], hard: set[int], min_len: float) -> list[int]:
    """Drops boundaries until no piece is shorter than min_len; a short piece loses a soft boundary before a
    hard one, and otherwise joins its shorter neighbour. The run's own edges stay."""
    bounds = list(bounds)
    while len(bounds) > 2:
        lengths = np.diff(bounds)
        i = int(np.argmin(lengths))
        if lengths[i] >= min_len:
            break
        left = i if i > 0 else None  # index in bounds of the piece's droppable boundaries
        right = i + 1 if i + 1 < len(bounds) - 1 else None
        options = [j for j in (left, right) if j is not None]
        soft = [j for j in options if bounds[j] not in hard]
        pool = soft or options
        drop = min(pool, key=lambda j: bounds[j + 1] - bounds[j - 1])
        del bounds[drop]
    return bounds


def _split_long(bounds: list[int], speed: np.ndarray, max_len: float) -> list[int]:
    """Splits pieces longer than max_len at the slowest arm speed near each even split point."""
    out = [bounds[0]]
    for a, b in zip(bounds, bounds[1:]):
        pieces = int(np.ceil((b - a) / max_len))
        for k in range(1, pieces):
            centre = a + k * (b - a) // pieces
            w = int((b - a) / pieces / 4)
            out.append(centre - w + int(np.argmin(speed[centre - w: centre + w + 1])))
        out.append(b)
    return out


def clips_from_signals(state: np.ndarray, static: np.ndarray, robot: RobotConfig) -> list[Clip]:
    seg, fps = robot.segmentation, robot.fps
    speed = arm_speed(state, robot)
    events = gripper_events(state, robot)
    clips = []
    for a, b in runs(~static):
        cuts = _cuts_in_run(a, b, speed, events, robot)
        bounds = _merge_short([a, *sorted(cuts), b], {c for c, hard in cuts.items() if hard}, seg.clip_min_s * fps)
        bounds = _split_long(bounds, speed, seg.clip_max_s * fps)
        clips += [Clip(s, e, "signals") for s, e in zip(bounds, bounds[1:])]
    return clips


def clips_from_labels(segments: list[SourceSegment], static: np.ndarray, robot: RobotConfig) -> list[Clip]:
    n, min_len = len(static), MIN_LABEL_PIECE_S * robot.fps
    clips, prev_end = [], 0
    for s in sorted(segments, key=lambda s: s.start_frame):
        lo, hi = max(prev_end, s.start_frame), min(n, s.end_frame)  # labels may overlap by a few frames
        prev_end = max(prev_end, hi)
        for a, b in runs(~static[lo:hi]) if hi > lo else []:
            if b - a >= min_len:
                clips.append(Clip(lo + a, lo + b, "source_labels", s.text, s.skill))
    return clips


def cut_clips(state: np.ndarray, static: np.ndarray, segments: list[SourceSegment], robot: RobotConfig) -> list[Clip]:
    if segments and robot.segmentation.use_source_labels:
        return clips_from_labels(segments, static, robot)
    return clips_from_signals(state, static, robot)
