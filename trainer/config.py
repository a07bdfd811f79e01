"""The training run's configuration (a YAML file; `vla-data train CONFIG`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainer.model import PolicyConfig


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path  # a LeRobot v3.0 dataset written by `vla-data export`
    norm_stats: Path | None = None  # default: PATH/norm_stats.json (`vla-data norm-stats`)
    weight: float = Field(1.0, gt=0)  # sampling weight in the mixture
    holdout_episodes: list[int] = []  # never trained on: evaluate on them with `vla-data eval --episodes`

    @property
    def stats_path(self) -> Path:
        return self.norm_stats or self.path / "norm_stats.json"


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    datasets: list[DatasetSpec] = Field(min_length=1)
    output_dir: Path
    model: PolicyConfig = PolicyConfig()
    norm_mode: Literal["meanstd", "bounds_99"] = "meanstd"
    steps: int = Field(1000, ge=1)
    micro_batch: int = Field(8, ge=1)  # per rank; global batch = micro_batch x world size x grad_accum
    grad_accum: int = Field(1, ge=1)
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    schedule: Literal["constant", "cosine"] = "cosine"
    min_lr_ratio: float = 0.1  # cosine decays to lr x this
    clip_grad: float = 1.0
    seed: int = 0
    num_workers: int = 2
    save_every: int = 500
    log_every: int = 10
    mixed_precision: bool | None = None  # None: bf16 on GPU, fp32 on CPU
    activation_checkpointing: bool = False
    compile: bool = False  # torch.compile each block
    compile_backend: str = "inductor"  # "aot_eager" traces and runs the same graphs without generating kernels
    tensorboard: bool = True  # OUT/tensorboard, when the tensorboard package is installed
    wandb_project: str | None = None  # also log to this W&B project (then wandb must be installed)

    @model_validator(mode="after")
    def _wandb_installed(self) -> TrainConfig:
        """A run that asks for W&B fails when its config loads, before anything is set up, if wandb is missing."""
        if self.wandb_project and importlib.util.find_spec("wandb") is None:
            raise ValueError(f"wandb_project is {self.wandb_project!r} but wandb is not installed: pip install wandb, "
                             "or remove wandb_project from the config")
        return self


def load_config(path: str | Path) -> TrainConfig:
    """Relative dataset and output paths are taken from the working directory."""
    return TrainConfig.model_validate(yaml.safe_load(Path(path).read_text()))
