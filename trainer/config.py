"""The training run's configuration (a YAML file; `vla-data train CONFIG`)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline import storage
from trainer.model import PolicyConfig


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str  # a LeRobot v3.0 dataset written by `vla-data export` (a folder or an s3:// prefix)
    norm_stats: str | None = None  # default: PATH/norm_stats.json (`vla-data norm-stats`)
    weight: float = Field(1.0, gt=0)  # sampling weight in the mixture
    holdout_episodes: list[int] = []  # never trained on: evaluate on them with `vla-data eval --episodes`

    @property
    def local_path(self) -> Path:
        """The dataset on this machine: a remote one is mirrored into the local cache (storage.local_mirror)."""
        return storage.local_mirror(self.path)

    @property
    def stats_path(self) -> Path:
        return self.local_path / "norm_stats.json" if self.norm_stats is None else storage.local_copy(self.norm_stats)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    datasets: list[DatasetSpec] = Field(min_length=1)
    output_dir: str  # a folder or an s3:// prefix: checkpoints/, export/, metrics.jsonl, tensorboard/
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


    @property
    def run_dir(self) -> Path:
        """Where this machine writes the run: output_dir itself, or for an s3:// output a local folder that is
        mirrored from it (for --resume) and uploaded to it after every checkpoint."""
        if not storage.is_remote(self.output_dir):
            return Path(self.output_dir)
        return storage.local_mirror(self.output_dir, must_exist=False)


    def localize(self) -> list[Path]:
        """Brings remote datasets, norm stats and a remote run's earlier checkpoints to this machine; returns
        where they are."""
        return [p for spec in self.datasets for p in (spec.local_path, spec.stats_path)] + [self.run_dir]


def load_config(path: str | Path) -> TrainConfig:
    """Relative dataset and output paths are taken from the working directory."""
    return TrainConfig.model_validate(yaml.safe_load(Path(path).read_text()))
