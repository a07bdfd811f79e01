"""FSDP2 training of the flow-matching policy on our LeRobot shards.

    vla-data train CONFIG [--resume] [--nproc N] [--stop-at STEP]   (N > 1 runs torchrun; 1 runs in-process)
    torchrun --nproc_per_node N -m trainer.train CONFIG [--resume] [--stop-at STEP]

Writes OUT/metrics.jsonl (loss, lr, grad norm, samples/s, data-wait fraction per step; also to TensorBoard in
OUT/tensorboard when installed, and to W&B with `wandb_project`), OUT/checkpoints/
step-N (DCP; `--resume` continues from the latest exactly: model, optimizer, scheduler, sampler position and
RNG) and OUT/export/ (model.safetensors + config.json) at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from pipeline import storage
from trainer import checkpoint
from trainer.config import TrainConfig, load_config
from trainer.data import Mixture, ShardDataset
from trainer.distributed import Dist, init, mean, shard
from trainer.metrics import MetricsLog
from trainer.model import Policy
from trainer.sampler import MixtureSampler

log = logging.getLogger("trainer")


def lr_lambda(cfg: TrainConfig):
    """Linear warmup, then constant or cosine decay to min_lr_ratio."""
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def build_data(cfg: TrainConfig, d: Dist) -> tuple[Mixture, MixtureSampler]:
    size = (cfg.model.image_size, cfg.model.image_size)
    mixture = Mixture([ShardDataset(s.local_path, s.stats_path, cfg.norm_mode, size, cfg.model.chunk, cfg.model.action_dim,
                                    exclude_episodes=tuple(s.holdout_episodes)) for s in cfg.datasets])
    sampler = MixtureSampler(mixture.sizes, [s.weight for s in cfg.datasets], seed=cfg.seed, rank=d.rank,
                             world_size=d.world)
    return mixture, sampler


def batches(mixture: Mixture, sampler: MixtureSampler, cfg: TrainConfig):
    """Endless batches from the sampler's position; the caller advances the sampler by what it consumed."""
    while True:
        loader = torch.utils.data.DataLoader(mixture, batch_size=cfg.micro_batch, sampler=sampler,
                                             num_workers=cfg.num_workers, persistent_workers=False)
        yield from loader
        sampler.set_epoch(sampler.epoch + 1)


def build_model(cfg: TrainConfig, d: Dist) -> Policy:
    torch.manual_seed(cfg.seed)  # every rank builds the same full model before sharding
    model = Policy(cfg.model).to(d.device)
    if cfg.activation_checkpointing:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

        for i, block in enumerate(model.blocks):
            model.blocks[i] = checkpoint_wrapper(block)
    if cfg.compile:
        for block in model.blocks:
            block.compile(backend=cfg.compile_backend)
    mixed = cfg.mixed_precision if cfg.mixed_precision is not None else d.device.type == "cuda"
    return shard(model, model.fsdp_units(), mixed)


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _grad_norm(model: Policy, clip: float) -> float:
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    return float((norm.full_tensor() if isinstance(norm, DTensor) else norm).item())


def train(cfg: TrainConfig, resume: bool = False, stop_at: int | None = None) -> list[dict]:
    """Runs (or continues) the configured training; returns the metrics rows rank 0 logged in this run.
    `stop_at` ends the run early at that step with a checkpoint, as an interruption would (then --resume)."""
    d = init()
    with contextlib.ExitStack() as stack:
        stack.callback(dist.destroy_process_group)
        metrics = stack.enter_context(contextlib.closing(MetricsLog(cfg))) if d.main else None
        return _train(cfg, resume, stop_at, d, metrics)


def _train(cfg: TrainConfig, resume: bool, stop_at: int | None, d: Dist, metrics: MetricsLog | None) -> list[dict]:
    out = cfg.run_dir
    mixture, sampler = build_data(cfg, d)
    model = build_model(cfg, d)
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lr_lambda(cfg))
    gen = torch.Generator(d.device).manual_seed(cfg.seed * 7919 + d.rank)  # noise and flow times, per rank
    step = 0
    if resume and (path := checkpoint.latest(out / "checkpoints")) is not None:
        state = checkpoint.load(path, model, optim, d)
        sched.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        log.info("resumed from %s at step %d", path, step)
    elif resume:
        log.info("no checkpoint in %s: starting at step 0", out / "checkpoints")
    if d.main:
        log.info("%d parameters, %d ranks, global batch %d, datasets %s", sum(p.numel() for p in model.parameters()),
                 d.world, cfg.micro_batch * d.world * cfg.grad_accum, [str(s.path) for s in cfg.datasets])
    it, rows = batches(mixture, sampler, cfg), []
    last = min(cfg.steps, stop_at or cfg.steps)
    while step < last:
        t0, wait, samples, losses = time.monotonic(), 0.0, 0, []
        for _ in range(cfg.grad_accum):
            w0 = time.monotonic()
            batch = next(it)
            wait += time.monotonic() - w0
            n = len(batch["task"])
            sampler.advance(n)
            samples += n
            loss, _ = model.loss(_to(batch, d.device), gen)
            (loss / cfg.grad_accum).backward()
            losses.append(loss.item())
        grad_norm = _grad_norm(model, cfg.clip_grad)
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
        step += 1
        elapsed = time.monotonic() - t0
        row = {"step": step, "loss": mean(sum(losses) / len(losses), d), "lr": sched.get_last_lr()[0],
               "grad_norm": grad_norm, "samples_per_s": mean(samples / elapsed, d) * d.world,
               "data_wait_fraction": mean(wait / elapsed, d)}
        if d.main:
            rows.append(row)
            metrics.write(row)
            if step % cfg.log_every == 0 or step == cfg.steps:
                log.info("step %d loss %.5f lr %.2e grad %.3f %.1f samples/s data wait %.0f%%", step, row["loss"],
                         row["lr"], grad_norm, row["samples_per_s"], 100 * row["data_wait_fraction"])
        if step % cfg.save_every == 0 or step == last:
            saved = checkpoint.save(out / "checkpoints", step, model, optim, {
                "step": step, "scheduler": sched.state_dict(), "sampler": sampler.state_dict(),
                "generator": gen.get_state(), "torch_rng": torch.get_rng_state()}, d)
            if d.main and storage.is_remote(cfg.output_dir):
                _upload_checkpoint(out, saved, cfg.output_dir)
    if step == cfg.steps:
        checkpoint.export(model, {"policy": cfg.model.model_dump(), "norm_mode": cfg.norm_mode,
                                  "datasets": [s.model_dump(mode="json") for s in cfg.datasets]}, out / "export", d)
        if d.main and storage.is_remote(cfg.output_dir):
            storage.upload_tree(out / "export", storage.join(cfg.output_dir, "export"))
    return rows


def _upload_checkpoint(run_dir: Path, saved: Path, output_dir: str) -> None:
    """A checkpoint's files, the metrics so far, then the `latest` pointer last: a resume that finds the
    pointer finds the whole checkpoint it names."""
    storage.upload_tree(saved, storage.join(output_dir, saved.relative_to(run_dir).as_posix()))
    for f in sorted(run_dir.rglob("*")):
        rel = f.relative_to(run_dir)
        if f.is_file() and rel.parts[0] not in ("checkpoints", "export"):
            storage.upload_file(f, storage.join(output_dir, rel.as_posix()))
    pointer = saved.parent / checkpoint.LATEST
    storage.write_bytes(storage.join(output_dir, pointer.relative_to(run_dir).as_posix()), pointer.read_bytes())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m trainer.train", description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--stop-at", type=int, help="stop at this step with a checkpoint (continue with --resume)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if int(os.environ.get("RANK", 0)) == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train(load_config(a.config), a.resume, a.stop_at)


if __name__ == "__main__":
    main()
