"""Rank 0's training metrics, one row per step: always OUT/metrics.jsonl; TensorBoard (OUT/tensorboard) when the
tensorboard package imports, unless the config turns it off; W&B when the config names a project."""

from __future__ import annotations

import json
import logging

from trainer.config import TrainConfig

log = logging.getLogger("trainer")


class MetricsLog:
    """Scalars go to TensorBoard and W&B as train/<key> at the row's step."""

    def __init__(self, cfg: TrainConfig):
        out = cfg.run_dir
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / "metrics.jsonl"
        self.tensorboard = self.wandb = None
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard is not installed: metrics go to the log and %s only", self.path)
            else:
                self.tensorboard = SummaryWriter(str(out / "tensorboard"))
                log.info("TensorBoard logs in %s", out / "tensorboard")
        if cfg.wandb_project:
            import wandb

            self.wandb = wandb.init(project=cfg.wandb_project, dir=str(out), config=cfg.model_dump(mode="json"))
            log.info("W&B run %s in project %s", self.wandb.name, cfg.wandb_project)

    def write(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        scalars = {f"train/{key}": value for key, value in row.items() if key != "step"}
        if self.tensorboard is not None:
            for tag, value in scalars.items():
                self.tensorboard.add_scalar(tag, value, row["step"])
        if self.wandb is not None:
            self.wandb.log(scalars, step=row["step"])

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()
