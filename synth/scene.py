"""Bimanual task scripts: joint trajectories, gripper openness, object tracks and their ground truth.

World coordinates are in image widths (x right, y down, aspect 4:3), seen from above; the robot sits at
the bottom edge. Each arm is a yaw joint followed by a planar shoulder/elbow chain and a wrist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

WORLD_H = 0.75
BASES = {"left": np.array([0.30, 0.72]), "right": np.array([0.70, 0.72])}
L1, L2, HAND = 0.25, 0.25, 0.04
ARMS = ("left", "right")

OBJECTS = [("red cube", (200, 40, 40)), ("green block", (40, 170, 60)), ("blue cup", (40, 80, 210)),
           ("yellow sponge", (230, 200, 40)), ("orange ball", (240, 130, 20)), ("purple box", (140, 60, 170))]
CONTAINERS = [("grey bin", (120, 120, 120)), ("white bowl", (235, 235, 230)), ("black tray", (30, 30, 35))]


def forward(arm: str, q: np.ndarray) -> dict[str, np.ndarray | float]:
    """Elbow, wrist and fingertip positions, tip height and gripper yaw for joint vector q (6 or 7 joints)."""
    heading = -np.pi / 2 + q[0]
    d = np.array([np.cos(heading), np.sin(heading)])
    base = BASES[arm]
    elbow = base + L1 * np.cos(q[1]) * d
    h2 = heading + 0.4 * q[3]
    d2 = np.array([np.cos(h2), np.sin(h2)])
    wrist = elbow + L2 * np.cos(q[1] + q[2]) * d2
    tip = wrist + HAND * np.cos(q[4]) * d2
    z = 0.15 + L1 * np.sin(q[1]) + L2 * np.sin(q[1] + q[2])
    yaw = h2 + q[5] + (q[6] if len(q) > 6 else 0.0)
    return {"elbow": elbow, "wrist": wrist, "tip": tip, "z": z, "heading": h2, "yaw": yaw}


def _grid():
    g0, g1, g2 = np.meshgrid(np.linspace(-1.0, 1.0, 81), np.linspace(0.1, 1.3, 25), np.linspace(-2.2, -0.3, 39),
                             indexing="ij")
    return g0.ravel(), g1.ravel(), g2.ravel()


_G0, _G1, _G2 = _grid()


def inverse(arm: str, target: np.ndarray, z: float, dof: int, rng: np.random.Generator) -> np.ndarray:
    """Joint vector whose fingertip reaches `target` at about height `z` (grid search; wrist joints random)."""
    heading = -np.pi / 2 + _G0
    reach = L1 * np.cos(_G1) + L2 * np.cos(_G1 + _G2) + HAND
    tip = BASES[arm][:, None] + reach * np.stack([np.cos(heading), np.sin(heading)])
    height = 0.15 + L1 * np.sin(_G1) + L2 * np.sin(_G1 + _G2)
    cost = np.sum((tip - target[:, None]) ** 2, axis=0) + 0.05 * (height - z) ** 2
    i = int(np.argmin(cost))
    q = np.zeros(dof)
    q[:3] = _G0[i], _G1[i], _G2[i]
    q[5] = rng.uniform(-0.6, 0.6)
    return q


def home_pose(dof: int) -> np.ndarray:
    q = np.zeros(dof)
    q[1], q[2], q[4] = 1.2, -2.3, 0.3
    return q


@dataclass
class Subtask:
    start_frame: int
    end_frame: int  # exclusive
    instruction: str
    skill: str


@dataclass
class Scene:
    """A performed task. Per frame: joints (N, 2, dof), openness (N, 2) with 1 = open, object xy (N, K, 2)."""

    fps: float
    dof: int
    task_name: str
    instruction: str
    joints: np.ndarray
    openness: np.ndarray
    objects_xy: np.ndarray
    objects: list[dict]
    subtasks: list[Subtask]
    static_spans: list[tuple[int, int]]
    extra: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return self.joints.shape[0]


def min_jerk(n: int) -> np.ndarray:
    s = np.linspace(0.0, 1.0, n + 1)[1:]
    return 10 * s**3 - 15 * s**4 + 6 * s**5


class _Script:
    """Builds a scene op by op: moves, gripper actions and idle pauses, grouped into subtasks."""

    def __init__(self, fps: float, dof: int, rng: np.random.Generator, objects: list[dict]):
        self.fps, self.dof, self.rng, self.objects = fps, dof, rng, objects
        self.q = {a: home_pose(dof) for a in ARMS}
        self.o = {a: 1.0 for a in ARMS}
        self.held: dict[str, int | None] = {a: None for a in ARMS}
        self.xy = np.array([ob["xy"] for ob in objects], dtype=float)
        self.rows_q, self.rows_o, self.rows_xy = [], [], []
        self.subtasks: list[Subtask] = []
        self.static: list[tuple[int, int]] = []

    @property
    def frame(self) -> int:
        return len(self.rows_q)

    def _emit(self, q: dict, o: dict):
        for a in ARMS:
            if self.held[a] is not None:
                self.xy[self.held[a]] = forward(a, q[a])["tip"]
        self.rows_q.append(np.stack([q[a] for a in ARMS]))
        self.rows_o.append([o[a] for a in ARMS])
        self.rows_xy.append(self.xy.copy())

    def move(self, targets: dict[str, np.ndarray], seconds: float | None = None):
        n = int(round((seconds or self.rng.uniform(1.3, 2.0)) * self.fps))
        start = dict(self.q)
        for s in min_jerk(n):
            self._emit({a: start[a] + s * (targets.get(a, start[a]) - start[a]) for a in ARMS}, self.o)
        self.q.update(targets)

    def grip(self, arm: str, close: bool, obj: int | None = None):
        n = int(round(self.rng.uniform(0.5, 0.7) * self.fps))
        start, goal = self.o[arm], (0.15 if close else 1.0)
        if not close:
            self.held[arm] = None
        for s in min_jerk(n):
            self._emit(self.q, {**self.o, arm: start + s * (goal - start)})
        self.o[arm] = goal
        if close:
            self.held[arm] = obj

    def idle(self, lo: float, hi: float):
        start = self.frame
        for _ in range(int(round(self.rng.uniform(lo, hi) * self.fps))):
            self._emit(self.q, self.o)
        self.static.append((start, self.frame))

    def subtask(self, instruction: str, skill: str, *ops):
        start = self.frame
        for op in ops:
            op()
        self.subtasks.append(Subtask(start, self.frame, instruction, skill))
        if self.rng.random() < 0.35:
            self.idle(1.0, 2.0)

    def ik(self, arm: str, xy, z: float = 0.09) -> np.ndarray:
        return inverse(arm, np.asarray(xy, float), z, self.dof, self.rng)


def _place(rng, lo, hi):
    return np.array([rng.uniform(*lo), rng.uniform(*hi)])


def _handover(sc: _Script, objs: list[dict]):
    obj, box = objs[0]["name"], objs[1]["name"]
    grasp = sc.ik("left", sc.xy[0])
    lift = grasp.copy()
    lift[1] += 0.35
    meet = np.array([0.5, sc.rng.uniform(0.38, 0.46)])
    sc.subtask(f"pick up the {obj} with the left gripper", "pick",
               lambda: sc.move({"left": grasp}), lambda: sc.grip("left", True, 0))
    sc.subtask(f"lift the {obj}", "lift", lambda: sc.move({"left": lift}))
    sc.subtask(f"hand the {obj} over to the right gripper", "handover",
               lambda: sc.move({"left": sc.ik("left", meet - [0.012, 0], 0.2), "right": sc.ik("right", meet + [0.012, 0], 0.2)}),
               lambda: sc.grip("right", True, 0), lambda: sc.grip("left", False))
    sc.subtask(f"place the {obj} in the {box}", "place",
               lambda: sc.move({"right": sc.ik("right", sc.xy[1], 0.15), "left": home_pose(sc.dof)}),
               lambda: sc.grip("right", False))
    sc.subtask("move both arms back to the start position", "retract", lambda: sc.move({"right": home_pose(sc.dof)}))
    return f"hand over the {obj} and place it in the {box}"


def _put_away(sc: _Script, objs: list[dict]):
    a, b, box = objs[0]["name"], objs[1]["name"], objs[2]["name"]
    sc.subtask(f"pick up the {a} with the left gripper", "pick",
               lambda: sc.move({"left": sc.ik("left", sc.xy[0])}), lambda: sc.grip("left", True, 0))
    sc.subtask(f"put the {a} in the {box}", "place",
               lambda: sc.move({"left": sc.ik("left", sc.xy[2] - [0.02, 0], 0.15)}), lambda: sc.grip("left", False))
    sc.subtask(f"pick up the {b} with the right gripper", "pick",
               lambda: sc.move({"left": home_pose(sc.dof), "right": sc.ik("right", sc.xy[1])}),
               lambda: sc.grip("right", True, 1))
    sc.subtask(f"put the {b} in the {box}", "place",
               lambda: sc.move({"right": sc.ik("right", sc.xy[2] + [0.02, 0], 0.15)}), lambda: sc.grip("right", False))
    sc.subtask("move both arms back to the start position", "retract", lambda: sc.move({"right": home_pose(sc.dof)}))
    return f"put the {a} and the {b} in the {box}"


def _stack(sc: _Script, objs: list[dict]):
    top, bottom = objs[0]["name"], objs[1]["name"]
    sc.subtask(f"pick up the {top} with the right gripper", "pick",
               lambda: sc.move({"right": sc.ik("right", sc.xy[0])}), lambda: sc.grip("right", True, 0))
    sc.subtask(f"lift the {top}", "lift", lambda: sc.move({"right": sc.ik("right", sc.xy[0] + [0, 0.05], 0.25)}))
    sc.subtask(f"stack the {top} on the {bottom}", "place",
               lambda: sc.move({"right": sc.ik("right", sc.xy[1] + [0.004, 0], 0.13)}), lambda: sc.grip("right", False))
    sc.subtask("move the right arm back to the start position", "retract",
               lambda: sc.move({"right": home_pose(sc.dof)}))
    return f"stack the {top} on the {bottom}"


# name -> (script, object placements as ((x range), (y range)), last one is the container when it has one)
TASKS = {
    "handover": (_handover, [((0.18, 0.32), (0.40, 0.50))], True),
    "put_away": (_put_away, [((0.16, 0.30), (0.36, 0.48)), ((0.70, 0.84), (0.36, 0.48))], True),
    "stack": (_stack, [((0.58, 0.72), (0.34, 0.44)), ((0.44, 0.54), (0.36, 0.46))], False),
}


def make_scene(task: str, fps: float, dof: int, rng: np.random.Generator) -> Scene:
    script, placements, with_container = TASKS[task]
    names = rng.permutation(len(OBJECTS))
    objects = [{"name": OBJECTS[names[i]][0], "color": OBJECTS[names[i]][1], "kind": "object",
                "xy": _place(rng, *p)} for i, p in enumerate(placements)]
    if with_container:
        name, color = CONTAINERS[rng.integers(len(CONTAINERS))]
        objects.append({"name": name, "color": color, "kind": "container",
                        "xy": np.array([rng.uniform(0.44, 0.56), rng.uniform(0.24, 0.32)])})
    sc = _Script(fps, dof, rng, objects)
    sc.idle(1.5, 3.0)
    instruction = script(sc, objects)
    if sc.static[-1][1] == sc.frame:  # a mid pause drawn after the last subtask becomes the tail
        sc.static.pop()
        del sc.rows_q[sc.subtasks[-1].end_frame:], sc.rows_o[sc.subtasks[-1].end_frame:]
        del sc.rows_xy[sc.subtasks[-1].end_frame:]
    sc.idle(1.5, 3.0)
    return Scene(fps=fps, dof=dof, task_name=task, instruction=instruction, joints=np.array(sc.rows_q),
                 openness=np.array(sc.rows_o), objects_xy=np.array(sc.rows_xy), objects=objects,
                 subtasks=sc.subtasks, static_spans=sc.static)
