"""Training samples read straight from our LeRobot v3.0 datasets, in the LingBot-VLA layout.

A ShardDataset is one dataset folder (one robot type) with its norm stats: the numeric columns are read into
memory once, frames are decoded by random access (trainer.frames). A Mixture concatenates several, one per
robot type; trainer.sampler.MixtureSampler draws from it with per-dataset weights.

Item layout (LingBot-VLA's unified vector): the joint groups of `joints` in order, each at its declared width
(real joints first, zeros after), then zeros up to `max_dim`. States and actions are normalized per group with
the norm stats, actions made relative to the state first for the groups whose stats are per chunk step
(`vla-data norm-stats --subtract-state`). Past the episode end, action rows repeat the last real action (as
lerobot pads, and as the norm stats were computed) and `action_is_pad` is True.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import yaml

from pipeline.norm_stats import Group, groups_of
from schemas import lerobot as lr
from trainer.frames import FrameReader

LINGBOT_JOINTS = {"arm.position": 14, "effector.position": 2}  # data.joints of LingBot-VLA's real-robot config
VIEWS = ("camera_top", "camera_wrist_left", "camera_wrist_right")  # image order of an item
NORM_MODES = ("meanstd", "bounds_99")
EPS = 1e-6  # LingBot-VLA's Normalizer


class SampleError(RuntimeError):
    """A sample that cannot be read; the message names the dataset, episode and frame."""


def vectors(column: pa.ChunkedArray) -> np.ndarray:
    """A fixed-size-list column as a (rows, size) array."""
    flat = column.combine_chunks()
    return np.asarray(flat.flatten()).reshape(len(flat), flat.type.list_size)


def read_frames(root: Path) -> dict[str, np.ndarray]:
    """The numeric columns of every data file, in global row order."""
    files = sorted((root / "data").glob("*/*.parquet"))
    if not files:
        raise FileNotFoundError(f"{root} has no data/*/*.parquet: not a LeRobot v3.0 dataset")
    t = pq.read_table(files, columns=["observation.state", "action", "episode_index", "frame_index", "task_index",
                                      "index"])
    out = {"state": vectors(t["observation.state"]), "action": vectors(t["action"])}
    out |= {c: t[c].to_numpy() for c in ("episode_index", "frame_index", "task_index")}
    if not np.array_equal(t["index"].to_numpy(), np.arange(len(t))):
        raise ValueError(f"{root}: data rows are not in `index` order")
    return out


def read_episodes(root: Path, video_keys: list[str]) -> dict[str, np.ndarray]:
    """Per episode (row = episode_index): its data row range and, per video key, its file and start time."""
    columns = ["dataset_from_index", "dataset_to_index"]
    columns += [f"videos/{k}/{c}" for k in video_keys for c in ("chunk_index", "file_index", "from_timestamp")]
    t = pq.read_table(sorted((root / "meta" / "episodes").glob("*/*.parquet")), columns=columns)
    return {c: t[c].to_numpy() for c in columns}


def read_tasks(root: Path) -> list[str]:
    t = pq.read_table(root / "meta" / "tasks.parquet", columns=["task_index", "task"])
    return [task for _, task in sorted(zip(t["task_index"].to_pylist(), t["task"].to_pylist()))]


def view_keys(root: Path) -> list[str]:
    """The dataset's video keys of the LingBot views, in VIEWS order, from its lingbot_robot_config.yaml."""
    images = yaml.safe_load((root / "meta" / "lingbot_robot_config.yaml").read_text())["images"]
    keys = {unified.removeprefix("observation.images."): spec["origin_keys"]
            for entry in images for unified, spec in entry.items()}
    missing = [v for v in VIEWS if v not in keys]
    if missing:
        raise ValueError(f"{root}: lingbot_robot_config.yaml has no image {missing}")
    return [keys[v] for v in VIEWS]


def load_norm_stats(path: Path) -> dict[str, dict[str, np.ndarray]]:
    stats = json.loads(Path(path).read_text())["norm_stats"]
    return {key: {k: np.asarray(v, np.float32) for k, v in s.items()} for key, s in stats.items()}


def normalize(x: np.ndarray, stats: dict[str, np.ndarray], mode: str) -> np.ndarray:
    """LingBot-VLA's forward normalization: meanstd, or bounds_99 (q01/q99 to [-1, 1], no clipping)."""
    if mode == "meanstd":
        return (x - stats["mean"]) / (stats["std"] + EPS)
    return (x - stats["q01"]) / (stats["q99"] - stats["q01"] + EPS) * 2 - 1


def slot_offsets(joints: dict[str, int], max_dim: int) -> dict[str, int]:
    """First slot of every joint group in the unified vector."""
    ends = np.cumsum(list(joints.values()))
    if ends[-1] > max_dim:
        raise ValueError(f"joint widths {joints} add up to {ends[-1]} > max_dim {max_dim}")
    return dict(zip(joints, (ends - list(joints.values())).tolist()))


def joint_name(g: Group) -> str:
    """arm.position for observation.state.arm.position and action.arm.position."""
    return g.key.removeprefix("observation.state.").removeprefix("action.")


def joint_groups(root: Path, stats: dict, joints: dict[str, int], chunk: int) -> list[Group]:
    """The dataset's state and action groups, actions relative to the state where the stats are per chunk step;
    checks every group has stats of its size and a slot wide enough."""
    relative = {k.removeprefix("action.") for k, s in stats.items() if k.startswith("action.") and s["mean"].ndim == 2}
    groups = groups_of(root, relative)
    for g in groups:
        name = joint_name(g)
        dim = sum(b - a for a, b in g.slices)
        want = (chunk, dim) if g.state_slices is not None else (dim,)
        if g.key not in stats or stats[g.key]["mean"].shape != want:
            got = stats[g.key]["mean"].shape if g.key in stats else "none"
            raise ValueError(f"{root}: norm stats of {g.key} should have shape {want}, have {got}")
        if joints.get(name, 0) < dim:
            raise ValueError(f"{root}: joint group {name} has {dim} joints, `joints` gives it "
                             f"{joints.get(name, 0)} slots")
    return groups


def unified(state_row: np.ndarray, action_rows: np.ndarray, groups: list[Group], stats: dict, mode: str,
            offsets: dict[str, int], max_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(state (max_dim,), actions (chunk, max_dim)): every group normalized and placed at its slot."""
    state = np.zeros(max_dim, np.float32)
    actions = np.zeros((len(action_rows), max_dim), np.float32)
    for g in groups:
        o = offsets[joint_name(g)]
        if g.column == "observation.state":
            x = normalize(g.take(state_row), stats[g.key], mode)
            state[o:o + x.shape[-1]] = x
        else:
            x = g.take(action_rows)
            if g.state_slices is not None:
                x = x - g.take(state_row, g.state_slices)
            actions[:, o:o + x.shape[-1]] = normalize(x, stats[g.key], mode)
    return state, actions


def action_slots(groups: list[Group], offsets: dict[str, int]) -> dict[str, slice]:
    """Joint group name -> the unified-vector slots its real action joints fill."""
    return {joint_name(g): slice(offsets[joint_name(g)], offsets[joint_name(g)] + sum(b - a for a, b in g.slices))
            for g in groups if g.column == "action"}


def joint_mask(groups: list[Group], offsets: dict[str, int], max_dim: int) -> np.ndarray:
    mask = np.zeros(max_dim, bool)
    for s in action_slots(groups, offsets).values():
        mask[s] = True
    return mask


class ShardDataset(torch.utils.data.Dataset):
    """One LeRobot v3.0 dataset folder; item i = the i-th frame (global row) outside `exclude_episodes` (held out
    for evaluation; their frames still serve as action-chunk context of nothing else). See the module doc."""

    def __init__(self, root: str | Path, norm_stats: str | Path, mode: str = "meanstd",
                 size: tuple[int, int] = (224, 224), chunk: int = 50, max_dim: int = 75,
                 joints: dict[str, int] = LINGBOT_JOINTS, open_files: int = 24, exclude_episodes: tuple[int, ...] = ()):
        if mode not in NORM_MODES:
            raise ValueError(f"norm mode {mode!r}: choose one of {NORM_MODES}")
        self.root, self.mode, self.size, self.chunk, self.max_dim = Path(root), mode, tuple(size), chunk, max_dim
        self.fps = json.loads((self.root / "meta" / "info.json").read_text())["fps"]
        self.stats = load_norm_stats(norm_stats)
        self.groups = joint_groups(self.root, self.stats, joints, chunk)
        self.offsets = slot_offsets(joints, max_dim)
        self.joint_mask = joint_mask(self.groups, self.offsets, max_dim)
        self.views = view_keys(self.root)
        self.frames = read_frames(self.root)
        self.episodes = read_episodes(self.root, self.views)
        self.tasks = read_tasks(self.root)
        self.reader = FrameReader(self.size, open_files)
        self.rows = np.flatnonzero(~np.isin(self.frames["episode_index"], list(exclude_episodes)))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        i = int(self.rows[i])
        f, ep = self.frames, int(self.frames["episode_index"][i])
        frame = int(f["frame_index"][i])
        end = int(self.episodes["dataset_to_index"][ep])
        steps = i + np.arange(self.chunk)
        state, actions = unified(f["state"][i], f["action"][np.minimum(steps, end - 1)], self.groups, self.stats,
                                 self.mode, self.offsets, self.max_dim)
        return {"images": torch.from_numpy(self.images(ep, frame)), "state": torch.from_numpy(state),
                "actions": torch.from_numpy(actions), "action_is_pad": torch.from_numpy(steps >= end),
                "joint_mask": torch.from_numpy(self.joint_mask), "task": self.tasks[f["task_index"][i]],
                "dataset_index": 0, "episode_index": ep, "frame_index": frame}

    def video_path(self, key: str, ep: int) -> Path:
        e = self.episodes
        return self.root / lr.VIDEO_PATH.format(video_key=key, chunk_index=e[f"videos/{key}/chunk_index"][ep],
                                                file_index=e[f"videos/{key}/file_index"][ep])

    def images(self, ep: int, frame: int) -> np.ndarray:
        """uint8 (views, 3, H, W) of one frame of an episode."""
        out = np.empty((len(self.views), 3, self.size[1], self.size[0]), np.uint8)
        for v, key in enumerate(self.views):
            path = self.video_path(key, ep)
            t = self.episodes[f"videos/{key}/from_timestamp"][ep] + frame / self.fps
            try:
                out[v] = self.reader.read(str(path), t, self.fps).transpose(2, 0, 1)
            except Exception as e:  # decoder, container or lookup errors alike: name the sample, never skip it
                raise SampleError(f"{self.root}: episode {ep} frame {frame}: {key} ({path} at {t:.4f} s): {e}") from e
        return out


class Mixture(torch.utils.data.Dataset):
    """Several ShardDatasets (one per robot type) end to end; items carry the dataset's position as
    dataset_index. Draw from it with trainer.sampler.MixtureSampler(mixture.sizes, weights, ...)."""

    def __init__(self, datasets: list[ShardDataset]):
        shapes = {(d.size, d.chunk, d.max_dim) for d in datasets}
        if len(shapes) != 1:
            raise ValueError(f"datasets of a mixture need one image size, chunk and max_dim, got {sorted(shapes)}")
        self.datasets = list(datasets)
        self.sizes = [len(d) for d in self.datasets]
        self.starts = np.cumsum([0] + self.sizes)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i: int) -> dict:
        d = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.datasets[d][i - int(self.starts[d])] | {"dataset_index": d}
