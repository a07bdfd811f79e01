"""`vla-data synth`: N deterministic episodes of one format, optionally some deliberately broken."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from synth.faults import FAULTS
from synth.formats import DOF, FPS, truth_path, write_agibot, write_aloha
from synth.scene import TASKS, make_scene

log = logging.getLogger(__name__)
FORMATS = ("aloha", "agibot")


def generate(fmt: str, episodes: int, seed: int, out: Path, size: tuple[int, int] = (320, 240),
             faults: list[str] | None = None, raw_images_every: int = 0, codec: str = "libsvtav1") -> list[str]:
    """Writes episodes 0..N-1; the last len(faults) of them get one fault each. Returns their source keys.

    Episode i depends only on (seed, i), so a larger N extends a smaller run with the same episodes.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    faults = list(faults or [])
    unknown = [f for f in faults if f not in FAULTS[fmt]]
    if unknown:
        raise ValueError(f"faults {unknown} do not apply to {fmt}; choose from {sorted(FAULTS[fmt])}")
    if len(faults) > episodes:
        raise ValueError(f"{len(faults)} faults need at least as many episodes, got {episodes}")
    out.mkdir(parents=True, exist_ok=True)
    keys = []
    for i in tqdm(range(episodes), desc=f"synth {fmt}", unit="episode"):
        rng = np.random.default_rng([seed, i])
        task = list(TASKS)[int(rng.integers(len(TASKS)))]
        scene = make_scene(task, FPS[fmt], DOF[fmt], rng)
        if fmt == "aloha":
            raw = raw_images_every > 0 and i % raw_images_every == raw_images_every - 1
            key = write_aloha(out, i, scene, size, rng, jpeg=not raw)
        else:
            key = write_agibot(out, i, scene, size, rng, codec)
        fault_index = i - (episodes - len(faults))
        if fault_index >= 0:
            fault = faults[fault_index]
            FAULTS[fmt][fault](out, key, fmt)
            truth = truth_path(out, key)
            truth.write_text(json.dumps({**json.loads(truth.read_text()), "fault": fault}, indent=1))
        keys.append(key)
    log.info("wrote %d %s episodes to %s", episodes, fmt, out)
    return keys
