"""Checkpoints with torch.distributed.checkpoint (DCP): sharded model and optimizer state, plus each rank's
trainer state (step, scheduler, sampler position, RNG), published atomically as OUT/checkpoints/step-N with a
`latest` pointer written last. Weights for inference are exported as plain safetensors + config."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_state_dict,
                                                     set_state_dict)

from trainer.distributed import Dist

LATEST = "latest"


def save(folder: Path, step: int, model, optimizer, trainer_state: dict, d: Dist) -> Path:
    final, tmp = folder / f"step-{step:08d}", folder / f".step-{step:08d}.tmp"
    if d.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=tmp)
    torch.save(trainer_state, tmp / f"trainer_rank{d.rank}.pt")
    dist.barrier()
    if d.main:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        pointer = folder / f".{LATEST}.tmp"
        pointer.write_text(final.name)
        os.replace(pointer, folder / LATEST)
    dist.barrier()
    return final


def latest(folder: Path) -> Path | None:
    pointer = folder / LATEST
    return folder / pointer.read_text().strip() if pointer.exists() else None


def load(path: Path, model, optimizer, d: Dist) -> dict:
    """Restores model and optimizer in place; returns this rank's trainer state. Same world size as saved."""
    saved = path / f"trainer_rank{d.rank}.pt"
    if not saved.exists():
        raise ValueError(f"{path} has no state for rank {d.rank}: resume with the world size it was saved with")
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=path)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    return torch.load(saved, weights_only=False)


def export(model, config: dict, out: Path, d: Dist) -> None:
    """Full (unsharded) fp32 weights as model.safetensors + config.json, written by rank 0."""
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.float().contiguous() for k, v in full.items()}, str(out / "model.safetensors"))
        (out / "config.json").write_text(json.dumps(config, indent=1, default=str))
    dist.barrier()
