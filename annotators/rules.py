"""Instructions from robot signals alone, for offline use without a VLM: gripper events (grasp, release,
handover), which arm moves, and whether it moves toward its start pose or away from it while holding or not.

The text is generic ("the object"): these proposals are marked made_by = "rules" everywhere they appear, so a
reviewer knows nobody looked at the images.
"""

from __future__ import annotations

import numpy as np

from annotators.prompt import Span
from schemas.robot import RobotConfig

RULES_VERSION = "rules-v1"
ACTIVE_FRACTION = 0.3  # an arm moves in a span if its joint path is at least this share of the busiest arm's
HOLD_OPENNESS = 0.5  # a gripper below this openness holds something


def _arms(names: list[str]) -> str:
    return "both arms" if len(names) > 1 else f"the {names[0]} arm"


def describe_span(state: np.ndarray, span: Span, robot: RobotConfig, home: np.ndarray) -> str:
    a, b = span.start_frame, span.end_frame - 1
    change = {g: float(cfg.openness(state[b, cfg.state_index]) - cfg.openness(state[a, cfg.state_index]))
              for g, cfg in robot.grippers.items()}
    min_change = robot.segmentation.gripper_min_change
    closed = [g for g, d in change.items() if d < -min_change]
    opened = [g for g, d in change.items() if d > min_change]
    if closed and opened:
        return f"Hand the object from the {opened[0]} gripper to the {closed[0]} gripper"
    if closed:
        return f"Grasp the object with the {' and '.join(closed)} gripper{'s' if len(closed) > 1 else ''}"
    if opened:
        return f"Release the object from the {' and '.join(opened)} gripper{'s' if len(opened) > 1 else ''}"
    path = {arm: float(np.abs(np.diff(state[a:b + 1, idx], axis=0)).sum()) for arm, idx in robot.arm_joints.items()}
    busiest = max(path.values())
    moving = [arm for arm, p in path.items() if busiest > 0 and p >= ACTIVE_FRACTION * busiest] or list(path)
    holding = [arm for arm in moving if arm in robot.grippers and
               robot.grippers[arm].openness(state[b, robot.grippers[arm].state_index]) < HOLD_OPENNESS]
    if holding:
        return f"Carry the object with {_arms(holding)}"
    toward_home = all(np.linalg.norm(state[b, robot.arm_joints[arm]] - home[robot.arm_joints[arm]]) <
                      np.linalg.norm(state[a, robot.arm_joints[arm]] - home[robot.arm_joints[arm]]) for arm in moving)
    if toward_home:
        return f"Move {_arms(moving)} back to the start position"
    return f"Reach toward the object with {_arms(moving)}"


def task_from_subtasks(instructions: list[str], task_name: str | None) -> str:
    """The source's own task label when it reads as an instruction, else a summary of the gripper events
    (identifiers such as ALOHA's "put_away" folder names are not instructions)."""
    if task_name and " " in task_name.strip():
        return task_name.strip()
    verbs = {text.split()[0] for text in instructions}
    if "Hand" in verbs:
        return "Hand an object over from one gripper to the other"
    if {"Grasp", "Release"} <= verbs:
        return "Pick up an object and put it down"
    if "Grasp" in verbs:
        return "Pick up an object"
    return "Move the arms"


def propose(state: np.ndarray, spans: list[Span], robot: RobotConfig,
            task_name: str | None) -> tuple[str, list[str]]:
    """(task instruction, one instruction per span) from the recording's joint states."""
    home = state[spans[0].start_frame] if spans else state[0]
    instructions = [describe_span(state, s, robot, home) for s in spans]
    return task_from_subtasks(instructions, task_name), instructions
