"""Robot configuration contract (configs/robots/*.yaml), validated with pydantic."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

ROBOT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "robots"


class Camera(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str  # raw camera name as the source writes it
    role: str = Field(pattern="^(top|left_wrist|right_wrist)$")


class Gripper(BaseModel):
    """Where a gripper lives in the state (and action) vector and which raw values mean open and closed.
    The action's command may use other units or the opposite polarity (AgiBot: state mm, action 1 = closed)."""

    model_config = ConfigDict(extra="forbid")
    state_index: int
    open_value: float
    closed_value: float
    action_open_value: float | None = None  # default: the state's
    action_closed_value: float | None = None

    def openness(self, raw):
        """Raw gripper state mapped to 0 = closed, 1 = open, whatever the platform's polarity/units."""
        return (raw - self.closed_value) / (self.open_value - self.closed_value)

    def action_openness(self, raw):
        """Raw gripper command mapped to 0 = closed, 1 = open."""
        lo = self.closed_value if self.action_closed_value is None else self.action_closed_value
        hi = self.open_value if self.action_open_value is None else self.action_open_value
        return (raw - lo) / (hi - lo)


class Segmentation(BaseModel):
    """Thresholds of static detection and clip cutting (units in the names)."""

    model_config = ConfigDict(extra="forbid")
    static_joint_speed: float = 0.05  # rad/s, max over joints of the smoothed joint speed
    static_visual_motion: float = 6.0  # grey levels, see pipeline.motion.visual_motion
    static_min_s: float = 0.6  # a static run shorter than this is a pause inside motion, kept
    static_gap_s: float = 0.1  # non-static blips shorter than this inside a static run are noise
    gripper_speed: float = 0.6  # openness/s above which a gripper is moving
    gripper_min_change: float = 0.3  # openness change for a gripper transition to count
    arm_pause_fraction: float = 0.15  # arm speed below this fraction of the clip's peak is a pause
    clip_min_s: float = 1.0
    clip_max_s: float = 20.0
    min_episode_s: float = 2.0
    use_source_labels: bool = True  # keep human segment labels (e.g. AgiBot action_config) as clips


class RobotConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    source_format: str
    format_default: bool = False  # the config for this format's recordings that name no robot (else first by name)
    fps: float
    cameras: list[Camera]
    state_names: list[str]
    action_names: list[str]
    arm_joints: dict[str, list[int]]  # arm name -> state indices of its joints (grippers excluded)
    grippers: dict[str, Gripper]
    # Named joint groups (LingBot-VLA style), e.g. arm.position -> state indices; exported as
    # observation.state.<group> / action.<group> slices and used as the keys of the norm stats.
    joint_groups: dict[str, list[int]]
    # State name -> [lower, upper] in the state's units: `vla-data stats` counts samples outside them.
    joint_limits: dict[str, tuple[float, float]] = {}
    segmentation: Segmentation = Segmentation()

    @model_validator(mode="after")
    def _check(self) -> "RobotConfig":
        roles = sorted(c.role for c in self.cameras)
        if roles != ["left_wrist", "right_wrist", "top"]:
            raise ValueError(f"{self.name}: cameras need exactly one top, left_wrist and right_wrist, got {roles}")
        dim = len(self.state_names)
        used = [i for idx in self.arm_joints.values() for i in idx] + [g.state_index for g in self.grippers.values()]
        used += [i for idx in self.joint_groups.values() for i in idx]
        if any(not 0 <= i < dim for i in used):
            raise ValueError(f"{self.name}: joint index out of range for {dim} state names")
        unknown = sorted(set(self.joint_limits) - set(self.state_names))
        if unknown:
            raise ValueError(f"{self.name}: joint_limits name joints that are not state names: {unknown}")
        if any(lo >= hi for lo, hi in self.joint_limits.values()):
            raise ValueError(f"{self.name}: every joint limit needs lower < upper")
        if len(self.action_names) != dim:
            raise ValueError(f"{self.name}: joint groups need state and action in the same order and size")
        return self

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]


def load_robot(name_or_path: str | Path) -> RobotConfig:
    path = Path(name_or_path)
    if not path.suffix:
        path = ROBOT_CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in ROBOT_CONFIG_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"no robot config {name_or_path!r} (known: {known})")
    return RobotConfig.model_validate(yaml.safe_load(path.read_text()))


def robot_for_format(source_format: str) -> RobotConfig:
    """The default robot config of a source format: the one marked format_default, else the first by name."""
    configs = [c for c in map(load_robot, sorted(ROBOT_CONFIG_DIR.glob("*.yaml"))) if c.source_format == source_format]
    if configs:
        return next((c for c in configs if c.format_default), configs[0])
    raise LookupError(f"no robot config declares source_format {source_format!r}")
