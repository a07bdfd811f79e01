"""Deliberate recording faults, as seen in real fleets, to show quarantine at work."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np


def _aloha(out: Path, key: str) -> Path:
    return out / key


def _proprio(out: Path, key: str) -> Path:
    return out / "proprio_stats" / key / "proprio_stats.h5"


def _video(out: Path, key: str, cam: str = "hand_left_color") -> Path:
    return out / "observations" / key / "videos" / f"{cam}.mp4"


def _rewrite(path: Path, name: str, data: np.ndarray) -> None:
    with h5py.File(path, "a") as f:
        del f[name]
        f[name] = data


def truncated_hdf5(out: Path, key: str, fmt: str) -> None:
    path = _aloha(out, key) if fmt == "aloha" else _proprio(out, key)
    os.truncate(path, path.stat().st_size * 6 // 10)


def camera_short(out: Path, key: str, fmt: str) -> None:
    assert fmt == "aloha", "camera_short is an ALOHA fault"
    path = _aloha(out, key)
    with h5py.File(path, "r") as f:
        data = f["observations/images/cam_left_wrist"][:-10]
    _rewrite(path, "observations/images/cam_left_wrist", data)


def nan_qpos(out: Path, key: str, fmt: str) -> None:
    path, name = (_aloha(out, key), "observations/qpos") if fmt == "aloha" else (_proprio(out, key), "state/joint/position")
    with h5py.File(path, "r") as f:
        data = f[name][()]
    data[40:43] = np.nan
    _rewrite(path, name, data)


def wrong_joint_dim(out: Path, key: str, fmt: str) -> None:
    path, name = (_aloha(out, key), "observations/qpos") if fmt == "aloha" else (_proprio(out, key), "state/joint/position")
    with h5py.File(path, "r") as f:
        data = f[name][()]
    _rewrite(path, name, data[:, :-2])


def empty_episode(out: Path, key: str, fmt: str) -> None:
    path = _aloha(out, key) if fmt == "aloha" else _proprio(out, key)
    with h5py.File(path, "a") as f:
        names = []
        f.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) and obj.ndim >= 1 else None)
        for n in names:
            if f[n].shape and f[n].shape[0] > 0 and n != "compress_len":
                data = f[n][()]
                del f[n]
                f[n] = data[:0]


def nonmonotonic_timestamps(out: Path, key: str, fmt: str) -> None:
    assert fmt == "agibot", "only AgiBot recordings carry timestamps"
    path = _proprio(out, key)
    with h5py.File(path, "r") as f:
        ts = f["timestamp"][()]
    ts[50], ts[51] = ts[51], ts[50]
    _rewrite(path, "timestamp", ts)


def missing_video(out: Path, key: str, fmt: str) -> None:
    assert fmt == "agibot", "only AgiBot recordings keep videos as files"
    _video(out, key).unlink()


def corrupt_mp4(out: Path, key: str, fmt: str) -> None:
    assert fmt == "agibot", "only AgiBot recordings keep videos as files"
    path = _video(out, key, "head_color")
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    data[len(data) // 3:] = rng.integers(0, 256, len(data) - len(data) // 3, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


FAULTS = {
    "aloha": {f.__name__: f for f in (truncated_hdf5, camera_short, nan_qpos, wrong_joint_dim, empty_episode)},
    "agibot": {f.__name__: f for f in (truncated_hdf5, nan_qpos, wrong_joint_dim, empty_episode,
                                       nonmonotonic_timestamps, missing_video, corrupt_mp4)},
}
