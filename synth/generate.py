"""`vla-data synth`: N deterministic episodes of one format, optionally some deliberately broken."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from synth import galaxea, robotwin
from synth.faults import FAULTS
from synth.formats import DOF, FPS, truth_path, write_agibot, write_aloha
from synth.scene import TASKS, make_scene

log = logging.getLogger(__name__)
# format -> writer(out, index, scene, size, rng, variant, depth) -> source key; each format's variants (default first)
WRITERS = {
    "aloha": lambda out, i, scene, size, rng, variant, depth: write_aloha(out, i, scene, size, rng,
                                                                         jpeg=variant != "raw", depth=depth),
    "agibot": lambda out, i, scene, size, rng, variant, depth: write_agibot(out, i, scene, size, rng, variant,
                                                                           depth=depth),
    "galaxea": galaxea.write,
    "robotwin": robotwin.write,
}
VARIANTS = {"aloha": ("jpeg", "raw"), "agibot": ("libsvtav1", "libx264"), "galaxea": galaxea.VARIANTS,
            "robotwin": robotwin.VARIANTS}
FORMATS = tuple(WRITERS)
ALL_FAULTS = {**FAULTS, "galaxea": galaxea.FAULTS, "robotwin": robotwin.FAULTS}


def generate(fmt: str, episodes: int, seed: int, out: Path, size: tuple[int, int] = (320, 240),
             faults: list[str] | None = None, raw_images_every: int = 0, variant: str | None = None,
             depth: bool = False) -> list[str]:
    """Writes episodes 0..N-1; the last len(faults) of them get one fault each. Returns their source keys.

    `variant` picks a format's flavour (VARIANTS: ALOHA image storage, AgiBot video codec, Galaxea MCAP or ROS 1
    bag, RoboTwin classic or XPolicyLab layout); `depth` adds the format's depth stream(s). Episode i depends
    only on (seed, i), so a larger N extends a smaller run with the same episodes.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    variant = variant or VARIANTS[fmt][0]
    if variant not in VARIANTS[fmt]:
        raise ValueError(f"unknown {fmt} variant {variant!r}; choose one of {VARIANTS[fmt]}")
    faults = list(faults or [])
    unknown = [f for f in faults if f not in ALL_FAULTS[fmt]]
    if unknown:
        raise ValueError(f"faults {unknown} do not apply to {fmt}; choose from {sorted(ALL_FAULTS[fmt])}")
    if len(faults) > episodes:
        raise ValueError(f"{len(faults)} faults need at least as many episodes, got {episodes}")
    out.mkdir(parents=True, exist_ok=True)
    keys = []
    for i in tqdm(range(episodes), desc=f"synth {fmt}", unit="episode"):
        rng = np.random.default_rng([seed, i])
        task = list(TASKS)[int(rng.integers(len(TASKS)))]
        scene = make_scene(task, FPS[fmt], DOF[fmt], rng)
        raw = fmt == "aloha" and raw_images_every > 0 and i % raw_images_every == raw_images_every - 1
        key = WRITERS[fmt](out, i, scene, size, rng, "raw" if raw else variant, depth)
        fault_index = i - (episodes - len(faults))
        if fault_index >= 0:
            fault = faults[fault_index]
            ALL_FAULTS[fmt][fault](out, key, fmt)
            truth = truth_path(out, key)
            truth.write_text(json.dumps({**json.loads(truth.read_text()), "fault": fault}, indent=1))
        keys.append(key)
    log.info("wrote %d %s episodes to %s", episodes, fmt, out)
    return keys
