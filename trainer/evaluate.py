"""Open-loop action error of an exported policy on held-out episodes: sample each frame's 50-step chunk from
noise with the model, compare with the recorded actions (normalized space), mean squared error per joint group
over real joints and real (not padded) steps.

    vla-data eval OUT/export DATASET [--episodes 5,6,7] [--every 10]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from trainer.data import ShardDataset, action_slots
from trainer.model import Policy, PolicyConfig


def load_policy(export: Path) -> tuple[Policy, dict]:
    config = json.loads((export / "config.json").read_text())
    model = Policy(PolicyConfig(**config["policy"]))
    model.load_state_dict(load_file(str(export / "model.safetensors")))
    return model.eval(), config


def evaluate(export: Path, dataset: Path, norm_stats: Path | None = None, episodes: list[int] | None = None,
             every: int = 10, batch_size: int = 16, seed: int = 0) -> dict:
    """{"frames": n, "mse": {group: value}, "mse_all": value} over every `every`-th frame of the episodes."""
    model, config = load_policy(export)
    cfg = model.cfg
    data = ShardDataset(dataset, norm_stats or dataset / "norm_stats.json", config["norm_mode"],
                        (cfg.image_size, cfg.image_size), cfg.chunk, cfg.action_dim)
    ep = data.frames["episode_index"]
    chosen = np.flatnonzero(np.isin(ep, episodes) if episodes else np.ones_like(ep, bool))[::every]
    if not len(chosen):
        raise ValueError(f"no frames of episodes {episodes} in {dataset}")
    slots = action_slots(data.groups, data.offsets)
    sq = {name: [] for name in slots}
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, len(chosen), batch_size):
        batch = torch.utils.data.default_collate([data[int(j)] for j in chosen[i:i + batch_size]])
        noise = torch.randn(batch["actions"].shape, generator=gen)
        pred = model.sample_actions(batch, noise=noise)
        real = ~batch["action_is_pad"]
        for name, s in slots.items():
            sq[name].append(((pred[..., s] - batch["actions"][..., s]) ** 2)[real].flatten())
    mse = {name: float(torch.cat(v).mean()) for name, v in sq.items()}
    return {"frames": int(len(chosen)), "mse": mse, "mse_all": float(torch.cat([torch.cat(v) for v in sq.values()]).mean())}
