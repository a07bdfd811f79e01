"""LingBot-VLA / openpi norm stats from LeRobot datasets, over the data parquet only (no video decoding).

Keys are the unified joint groups of each dataset's meta/lingbot_robot_config.yaml, with their real lengths.
States use the current frame; absolute actions the frame's own action; actions made relative to the state
(subtract_state) use the whole action chunk minus the current state, giving per-step stats [chunk][D].
Per-file partial results (exact moments, quantile summaries) merge across files and datasets by frame count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

from pipeline.stats import Moments, QuantileSummary

CHUNK = 50  # action horizon of the LingBot trainer
NORM_QUANTILES = {"q01": 0.01, "q99": 0.99, "q02": 0.02, "q98": 0.98}


@dataclass(frozen=True)
class Group:
    key: str  # unified key, e.g. action.arm.position
    column: str  # observation.state | action
    slices: tuple[tuple[int, int], ...]
    state_slices: tuple[tuple[int, int], ...] | None  # set when the action is made relative to the state

    def take(self, x: np.ndarray, slices=None) -> np.ndarray:
        return np.concatenate([x[..., a:b] for a, b in (slices or self.slices)], axis=-1)


def groups_of(dataset: Path, relative: set[str] = frozenset()) -> list[Group]:
    """Joint groups from the dataset's LingBot robot config; `relative` names action groups (e.g. arm.position)
    whose stats are computed after subtracting the state, as LingBot's subtract_state does."""
    cfg = yaml.safe_load((dataset / "meta" / "lingbot_robot_config.yaml").read_text())

    def parse(entries):
        out = {}
        for entry in entries:
            ((key, spec),) = entry.items()
            column = next(iter(spec["origin_keys"][0]))
            out[key] = (column, tuple((s[column]["start"], s[column]["end"]) for s in spec["origin_keys"]))
        return out

    states, actions = parse(cfg["states"]), parse(cfg["actions"])
    groups = [Group(k, c, s, None) for k, (c, s) in states.items()]
    for key, (column, slices) in actions.items():
        name = key.removeprefix("action.")
        state = states.get(f"observation.state.{name}") if name in relative else None
        if name in relative and state is None:
            raise ValueError(f"{dataset}: action group {name} has no matching state group to subtract")
        groups.append(Group(key, column, slices, state[1] if state else None))
    return groups


def file_partials(path: str, groups: list[Group]) -> dict[str, tuple[Moments, QuantileSummary]]:
    """Moments and quantile summaries of every group over one data file (episodes never span files)."""
    t = pq.read_table(path, columns=["observation.state", "action", "episode_index"])
    state = np.stack(t["observation.state"].to_numpy(zero_copy_only=False)).astype(np.float64)
    action = np.stack(t["action"].to_numpy(zero_copy_only=False)).astype(np.float64)
    episode = t["episode_index"].to_numpy()
    out = {}
    for g in groups:
        x = g.take(state if g.column == "observation.state" else action)
        if g.state_slices is not None:
            # chunk rows t..t+CHUNK-1, clamped to the episode's last frame (lerobot pads by repeating it)
            last = np.searchsorted(episode, episode, side="right") - 1
            rows = np.minimum(np.arange(len(x))[:, None] + np.arange(CHUNK), last[:, None])
            x = (x[rows] - g.take(state, g.state_slices)[:, None, :]).reshape(len(x), -1)
        out[g.key] = (Moments.of(x), QuantileSummary.of(x))
    return out


def merge_partials(parts: list[dict[str, tuple[Moments, QuantileSummary]]]) -> dict[str, tuple[Moments, QuantileSummary]]:
    shapes = {k: m.mean.shape for k, (m, _) in parts[0].items()}
    if any({k: m.mean.shape for k, (m, _) in p.items()} != shapes for p in parts):
        raise ValueError("datasets have different joint groups (names or sizes); norm stats combine identical groups only")
    keys = shapes.keys()
    merged = {}
    for k in keys:
        m = parts[0][k][0]
        for p in parts[1:]:
            m = m.merge(p[k][0])
        merged[k] = (m, QuantileSummary.merge_all([p[k][1] for p in parts]))
    return merged


def to_json(merged: dict[str, tuple[Moments, QuantileSummary]], relative_keys: set[str]) -> dict:
    stats, count = {}, 0
    for key, (m, q) in merged.items():
        fields = {"mean": m.mean, "std": m.std, **{n: q.quantile(v) for n, v in NORM_QUANTILES.items()},
                  "min": m.min, "max": m.max}
        shape = (CHUNK, -1) if key in relative_keys else (-1,)
        stats[key] = {n: np.asarray(v).reshape(shape).tolist() for n, v in fields.items()}
        count = m.count
    return {"norm_stats": stats, "count": count}
