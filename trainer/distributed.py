"""Process group and FSDP2 sharding: gloo on CPU, NCCL on GPU; torchrun sets the ranks, a single process
without torchrun gets a one-rank group from an in-memory store (no ports)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def init() -> Dist:
    cuda = torch.cuda.is_available()
    if "WORLD_SIZE" in os.environ:  # under torchrun
        dist.init_process_group("nccl" if cuda else "gloo")
    else:
        dist.init_process_group("gloo" if not cuda else "nccl", store=dist.HashStore(), rank=0, world_size=1)
    local = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        torch.cuda.set_device(local)
    return Dist(dist.get_rank(), dist.get_world_size(), local, torch.device("cuda", local) if cuda else
                torch.device("cpu"))


def shard(model: torch.nn.Module, units: list[tuple[torch.nn.Module, bool]], mixed_precision: bool) -> torch.nn.Module:
    """fully_shard each (unit, reshard_after_forward) of `Policy.fsdp_units()`, then the root. Mixed precision (bf16
    params, fp32 gradient reduction) only pays on GPUs: on an AVX2 CPU bf16 matmuls are 10x slower than fp32."""
    if not mixed_precision:
        inner = outer = MixedPrecisionPolicy()
    else:  # units hand bf16 on to root-owned layers (norms, projections); only the root's output is fp32
        inner = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        outer = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, output_dtype=torch.float32)
    for unit, reshard in units:
        fully_shard(unit, mp_policy=inner, reshard_after_forward=reshard)
    fully_shard(model, mp_policy=outer)
    return model


def mean(value: float, d: Dist) -> float:
    """The mean of a per-rank float over all ranks."""
    t = torch.tensor([value], dtype=torch.float64, device=d.device if d.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t.item()) / d.world
