"""Conditional flow matching in the released pi0/LingBot convention: t=1 is pure noise, t=0 the actions.

x_t = t·noise + (1−t)·actions and the model regresses the constant velocity u = noise − actions, so
integrating dx/dt = v from t=1 down to t=0 carries noise to actions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

LossKind = Literal["mse", "l1"]

# openpi's time distribution: Beta(1.5, 1) rescaled to [T_MIN, 1].
BETA_ALPHA = 1.5
T_MIN = 0.001


def sample_time(batch: int, generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> Tensor:
    """One flow time per sample, shape (batch,), drawn from Beta(1.5, 1) scaled to [0.001, 1] as openpi does.

    Beta(1.5, 1) has density 1.5·√t, so noisy times (t near 1), where the velocity is hardest to predict
    and where inference starts, are seen more often than nearly clean ones. Its CDF is t^1.5, so it is
    sampled exactly by inverting a uniform draw (u^(1/1.5)), which keeps it reproducible from `generator`.
    The floor keeps t off the degenerate x_t == actions endpoint.
    """
    u = torch.rand(batch, generator=generator, device=device)
    return T_MIN + (1.0 - T_MIN) * u.pow(1.0 / BETA_ALPHA)


def interpolate(actions: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """x_t = t·noise + (1−t)·actions, with t of shape (B,) broadcast over the chunk and joint dims."""
    t = t.view(-1, *([1] * (actions.dim() - 1)))
    return t * noise + (1.0 - t) * actions


def velocity_target(actions: Tensor, noise: Tensor) -> Tensor:
    """The velocity dx_t/dt = noise − actions, the same for every t."""
    return noise - actions


def flow_loss(pred: Tensor, target: Tensor, joint_mask: Tensor, action_is_pad: Tensor,
              kind: LossKind = "mse") -> Tensor:
    """Mean error over real slots only: joints the robot has (joint_mask (B, D)) at steps before the
    episode end (~action_is_pad (B, T)). Masked slots add nothing and are not counted in the mean."""
    valid = joint_mask[:, None, :] & ~action_is_pad[:, :, None]
    diff = pred - target
    err = diff.square() if kind == "mse" else diff.abs()
    # where, not multiply: a non-finite value in a padded slot must not leak in as 0·inf = nan.
    return torch.where(valid, err, 0.0).sum() / valid.sum().clamp_min(1)


@torch.no_grad()
def euler_sample(velocity_fn: Callable[[Tensor, Tensor], Tensor], noise: Tensor, num_steps: int) -> Tensor:
    """Integrate dx/dt = velocity_fn(x, t) from x(1) = noise to t = 0 with num_steps Euler steps, dt = −1/num_steps.

    velocity_fn gets t as a (B,) tensor. Each t is computed as 1 − i/num_steps rather than accumulated,
    so the last step lands on t = 0 without drift.
    """
    x = noise
    dt = -1.0 / num_steps
    for i in range(num_steps):
        t = torch.full((noise.shape[0],), 1.0 - i / num_steps, device=noise.device, dtype=noise.dtype)
        x = x + dt * velocity_fn(x, t)
    return x


def blockwise_causal_mask(block_sizes: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    """(L, L) bool, True where query i may attend key j: tokens see every token of their own block
    (bidirectional) and of earlier blocks, never of later ones."""
    block_of = torch.repeat_interleave(torch.arange(len(block_sizes), device=device),
                                       torch.tensor(list(block_sizes), device=device))
    return block_of[:, None] >= block_of[None, :]
