"""Renders a scene into three camera views: a top view and one camera on each wrist that moves with it."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from synth.scene import ARMS, BASES, Scene, forward

NOISE_BANK = 8
ARM_COLOR = {"left": (70, 70, 80), "right": (85, 75, 70)}


class Renderer:
    def __init__(self, scene: Scene, width: int, height: int, rng: np.random.Generator):
        self.scene, self.w, self.h = scene, width, height
        table = np.array([150, 120, 90], np.float32) + rng.normal(0, 10, (height // 8 + 1, width // 8 + 1, 1))
        self.table = cv2.resize(table, (width, height), interpolation=cv2.INTER_LINEAR).clip(0, 255).astype(np.uint8)
        self.noise = rng.normal(0, 3.0, (NOISE_BANK, height, width, 3)).astype(np.int16)
        self.rng = rng

    def px(self, xy) -> tuple[int, int]:
        return int(round(xy[0] * self.w)), int(round(xy[1] * self.w))

    def world(self, t: int) -> np.ndarray:
        sc, img = self.scene, self.table.copy()
        unit = self.w
        for k, ob in enumerate(sc.objects):
            c = self.px(sc.objects_xy[t, k])
            if ob["kind"] == "container":
                cv2.circle(img, c, int(0.07 * unit), ob["color"], max(2, int(0.015 * unit)), cv2.LINE_AA)
        for k, ob in enumerate(sc.objects):
            if ob["kind"] == "object":
                c, r = self.px(sc.objects_xy[t, k]), int(0.022 * unit)
                cv2.rectangle(img, (c[0] - r, c[1] - r), (c[0] + r, c[1] + r), ob["color"], -1)
        for i, arm in enumerate(ARMS):
            fk = forward(arm, sc.joints[t, i])
            thick = max(2, int((0.02 + 0.04 * fk["z"]) * unit))
            pts = [self.px(BASES[arm]), self.px(fk["elbow"]), self.px(fk["wrist"])]
            cv2.polylines(img, [np.array(pts)], False, ARM_COLOR[arm], thick, cv2.LINE_AA)
            self._fingers(img, fk["tip"], fk["yaw"], sc.openness[t, i], 0.03 * unit, max(1, thick // 2))
        return img

    def _fingers(self, img, tip, yaw, openness, size, thick):
        side = np.array([-np.sin(yaw), np.cos(yaw)])
        fwd = np.array([np.cos(yaw), np.sin(yaw)])
        gap = (0.2 + 0.8 * openness) * size
        for sgn in (-1, 1):
            root = np.array(self.px(tip)) + sgn * gap * side
            cv2.line(img, tuple(root.astype(int)), tuple((root + size * fwd).astype(int)), (30, 30, 30), thick,
                     cv2.LINE_AA)

    def wrist(self, world: np.ndarray, t: int, arm: str) -> np.ndarray:
        """The view from a camera on the wrist: the world around the fingertip, turned with the gripper."""
        i = ARMS.index(arm)
        fk = forward(arm, self.scene.joints[t, i])
        zoom = 2.2 + 2.0 * (0.3 - min(fk["z"], 0.3))
        angle = np.degrees(fk["heading"]) + 90.0
        m = cv2.getRotationMatrix2D(self.px(fk["tip"]), angle, zoom)
        m[:, 2] += np.array([self.w / 2, self.h * 0.6]) - np.array(self.px(fk["tip"]))
        view = cv2.warpAffine(world, m, (self.w, self.h), borderMode=cv2.BORDER_REFLECT)
        gap = int((0.08 + 0.25 * self.scene.openness[t, i]) * self.w)
        cx, fw = self.w // 2, int(0.12 * self.w)
        for x0 in (cx - gap - fw, cx + gap):
            cv2.rectangle(view, (x0, int(self.h * 0.72)), (x0 + fw, self.h), (25, 25, 28), -1)
        return view

    def frames(self) -> Iterator[dict[str, np.ndarray]]:
        """Per frame {role: RGB uint8 image} with sensor noise."""
        for t in range(self.scene.num_frames):
            w = self.world(t)
            views = {"top": w, "left_wrist": self.wrist(w, t, "left"), "right_wrist": self.wrist(w, t, "right")}
            yield {role: self._noisy(v) for role, v in views.items()}

    def _noisy(self, img: np.ndarray) -> np.ndarray:
        n = self.noise[self.rng.integers(NOISE_BANK)]
        return (img.astype(np.int16) + n).clip(0, 255).astype(np.uint8)


def depth_frame(rgb: np.ndarray) -> np.ndarray:
    """A plausible depth image (uint16 mm) for a rendered view: the table at about 900 mm, darker (arm, objects)
    pixels nearer. Enough to carry a depth stream end to end; not a geometric model."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.int32)
    return (900 - (255 - grey) * 2).clip(200, 2000).astype(np.uint16)
