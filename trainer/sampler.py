"""Deterministic, resumable weighted sampling over a Mixture, split across data-parallel ranks.

An epoch is a function of (seed, epoch): every dataset's indices are shuffled and dealt out to the ranks
(rank r owns every world_size-th), so ranks never share an index. Each rank then draws `samples_per_epoch //
world_size` samples: a dataset by weight, then the next of its own indices of that dataset in a shuffled
order (reshuffled each time they run out, so a heavily weighted small dataset repeats within the rank).

Position: the DataLoader takes indices from the sampler ahead of training (prefetch_factor x num_workers
batches, persistent workers or not), so counting the indices handed out would run ahead of what the model saw.
The position is instead the number of samples the trainer consumed in this epoch: call advance(len(batch))
after each batch. state_dict() saves (epoch, position); after load_state_dict() the next iteration starts
at exactly that sample.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

PARTITION, DRAW, ORDER = 0, 1, 2  # seed-sequence tags, one per kind of random stream (each kind: one key length)


def rank_share(size: int, seed: int, epoch: int, dataset: int, rank: int, world_size: int) -> np.ndarray:
    """The indices of one dataset this rank owns in this epoch; the shares of all ranks partition range(size)."""
    return np.random.default_rng([PARTITION, seed, epoch, dataset]).permutation(size)[rank::world_size]


def reshuffled(share: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` indices of `share`, in a fresh shuffled order each time it runs out."""
    rounds = -(-count // len(share))
    return np.concatenate([rng.permutation(share) for _ in range(rounds)])[:count]


def epoch_indices(sizes: Sequence[int], weights: np.ndarray, seed: int, epoch: int, rank: int, world_size: int,
                  count: int) -> np.ndarray:
    """The `count` mixture indices (dataset start + local index) one rank draws in one epoch."""
    choice = np.random.default_rng([DRAW, seed, epoch, rank]).choice(len(sizes), size=count, p=weights)
    out = np.empty(count, np.int64)
    for d, (start, size) in enumerate(zip(np.cumsum([0, *sizes]), sizes)):
        where = np.flatnonzero(choice == d)
        if not len(where):
            continue
        share = rank_share(size, seed, epoch, d, rank, world_size)
        if not len(share):
            raise ValueError(f"dataset {d} has {size} samples, fewer than the {world_size} ranks")
        out[where] = start + reshuffled(share, len(where), np.random.default_rng([ORDER, seed, epoch, rank, d]))
    return out


class MixtureSampler(torch.utils.data.Sampler[int]):
    """Indices of a Mixture for one rank. `weights`: per-dataset sampling probability (normalized), default
    proportional to dataset size; `samples_per_epoch`: over all ranks, default the mixture's size."""

    def __init__(self, sizes: Sequence[int], weights: Sequence[float] | None = None, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1, samples_per_epoch: int | None = None):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        w = np.asarray(sizes if weights is None else weights, np.float64)
        if len(w) != len(sizes) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights {weights} for {len(sizes)} datasets: need one non-negative weight each")
        self.sizes, self.weights = [int(s) for s in sizes], w / w.sum()
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.per_rank = (samples_per_epoch or sum(self.sizes)) // world_size
        self.epoch, self.position = 0, 0

    def __iter__(self) -> Iterator[int]:
        """The rest of this epoch's indices, from the current position; the position itself moves by advance()."""
        indices = epoch_indices(self.sizes, self.weights, self.seed, self.epoch, self.rank, self.world_size,
                                self.per_rank)
        return iter(indices[self.position:].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.position

    def advance(self, samples: int) -> None:
        """The trainer consumed `samples` more samples of this epoch."""
        if not 0 <= self.position + samples <= self.per_rank:
            raise ValueError(f"position {self.position} + {samples} outside the epoch's {self.per_rank} samples")
        self.position += samples

    def set_epoch(self, epoch: int) -> None:
        """Start `epoch` at its beginning; the current epoch (e.g. a resumed one) keeps its position."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "world_size": self.world_size,
                "sizes": self.sizes, "weights": self.weights.tolist(), "per_rank": self.per_rank}

    def load_state_dict(self, state: dict) -> None:
        """Continue a saved run; the seed, world size, datasets and weights must be the same, or the epoch's
        stream would not be the one the position counts into."""
        mine = self.state_dict()
        changed = [k for k in ("seed", "world_size", "sizes", "per_rank") if state[k] != mine[k]]
        changed += ["weights"] if not np.allclose(state["weights"], mine["weights"]) else []
        if changed:
            raise ValueError(f"cannot resume the sampler: {changed} differ from the checkpoint's")
        self.epoch, self.position = state["epoch"], state["position"]
