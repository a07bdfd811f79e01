"""A small pi0-style vision-language-action policy trained by flow matching.

Tokens form three blocks under blockwise-causal attention: the prefix (image patches of every view, then
the task's UTF-8 bytes), one state token, and the action chunk (noisy actions mixed with the flow time).
Each transformer block keeps separate weights for prefix tokens and for suffix (state + action) tokens,
the "action expert", but runs one attention over all of them. The prefix never attends to the suffix, so
at inference its per-layer keys/values are computed once and reused by every Euler step.

With `prefix="qwen2_5_vl"` a pretrained Qwen2.5-VL (trainer/vlm.py) replaces the built-in prefix (`embed_prefix`
plus each block's `prefix` stream): the expert then has one block per VLM decoder layer and reads that layer's
keys/values. For FSDP2, `fully_shard` each of `fsdp_units()` and then the root; call
`register_fsdp_forward_method(model, "sample_actions")` before sampling, since that method reaches root
parameters outside `forward`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, model_validator
from torch import Tensor, nn

from trainer.flow import (LossKind, blockwise_causal_mask, euler_sample, flow_loss, interpolate, sample_time,
                          velocity_target)

TEXT_PAD = 256  # byte values are 0..255; one extra id pads
TEXT_VOCAB = 257


class PolicyConfig(BaseModel):
    """Model shape. The defaults run a batch of 8 at 64x64 on one CPU core well under a second per step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: Literal["builtin", "qwen2_5_vl"] = "builtin"
    vlm_path: Path | None = None  # a local Qwen2.5-VL folder (weights, tokenizer, image processor) for qwen2_5_vl
    image_size: int = 64  # square images, as the loader resizes them
    views: int = 3
    patch_size: int = 8  # builtin only
    width: int = 128  # both: the action expert's width; builtin: also the prefix's
    depth: int = 4  # builtin only: qwen2_5_vl has one block per VLM decoder layer
    heads: int = 4  # qwen2_5_vl: expert query heads, a multiple of the VLM's KV heads, of the VLM's head size
    mlp_ratio: float = 4.0
    max_text_len: int = 48  # task tokens: UTF-8 bytes (builtin) or the VLM tokenizer's; longer tasks are truncated
    chunk: int = 50
    action_dim: int = 75
    state_dim: int = 75
    num_steps: int = 10  # Euler steps at inference
    loss_kind: LossKind = "mse"

    @model_validator(mode="after")
    def _divisible(self) -> PolicyConfig:
        if self.prefix == "qwen2_5_vl":
            if self.vlm_path is None:
                raise ValueError("prefix qwen2_5_vl needs vlm_path, a local Qwen2.5-VL folder")
            return self
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"width {self.width} must split into {self.heads} heads of even size")
        return self

    @classmethod
    def tiny(cls, **overrides) -> PolicyConfig:
        """For tests: 16x16 images, width 32, two blocks (about 67k parameters)."""
        return cls(**{"image_size": 16, "patch_size": 8, "width": 32, "depth": 2, "heads": 2,
                      "max_text_len": 16, "num_steps": 4, **overrides})

    @property
    def patches_per_view(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def tokenize(tasks: Sequence[str], max_len: int) -> tuple[Tensor, Tensor]:
    """UTF-8 bytes, truncated to max_len and right-padded with TEXT_PAD: ids (B, max_len) and is_pad (B, max_len)."""
    ids = torch.full((len(tasks), max_len), TEXT_PAD, dtype=torch.long)
    for row, task in enumerate(tasks):
        data = task.encode("utf-8")[:max_len]
        ids[row, :len(data)] = torch.tensor(list(data), dtype=torch.long)
    return ids, ids == TEXT_PAD


def time_embedding(t: Tensor, width: int, min_period: float = 4e-3, max_period: float = 4.0) -> Tensor:
    """Sine-cosine embedding of t in [0, 1], (B,) -> (B, width); pi0's periods, fine enough for t steps of 1e-3."""
    fraction = torch.linspace(0.0, 1.0, width // 2, device=t.device)
    period = min_period * (max_period / min_period) ** fraction
    angle = (2 * math.pi) * t.float()[:, None] / period
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


class Stream(nn.Module):
    """One token group's weights inside a block: pre-norm attention projections and MLP.

    kv_only is for the last block's prefix stream: nothing reads the prefix after it, so it only supplies
    keys and values (no queries, output projection or MLP, which would get no gradient). kv_heads and head_dim
    default to cfg.heads heads of width/heads; the expert beside a VLM takes the VLM's (grouped-query attention)."""

    def __init__(self, cfg: PolicyConfig, kv_only: bool = False, kv_heads: int | None = None,
                 head_dim: int | None = None):
        super().__init__()
        w = cfg.width
        self.heads, self.kv_heads = cfg.heads, kv_heads or cfg.heads
        self.head_dim = head_dim or w // cfg.heads
        self.norm1 = nn.RMSNorm(w)
        self.kvq = nn.Linear(w, (2 * self.kv_heads + (0 if kv_only else self.heads)) * self.head_dim)
        self.kv_only = kv_only
        if not kv_only:
            self.out = nn.Linear(self.heads * self.head_dim, w)
            self.norm2 = nn.RMSNorm(w)
            hidden = int(w * cfg.mlp_ratio)
            self.mlp = nn.Sequential(nn.Linear(w, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, w))

    def project(self, x: Tensor) -> list[Tensor]:
        """(B, L, W) -> [k, v] (B, kv_heads, L, head_dim), then q (B, heads, L, head_dim) unless kv_only."""
        b, n, _ = x.shape
        heads = [self.kv_heads, self.kv_heads] + ([] if self.kv_only else [self.heads])
        kvq = self.kvq(self.norm1(x)).view(b, n, sum(heads), self.head_dim).split(heads, dim=2)
        return [part.transpose(1, 2) for part in kvq]

    def update(self, x: Tensor, attended: Tensor) -> Tensor:
        x = x + self.out(attended)
        return x + self.mlp(self.norm2(x))


class Block(nn.Module):
    """Joint attention over prefix and suffix tokens with separate weights per group."""

    def __init__(self, cfg: PolicyConfig, last: bool):
        super().__init__()
        self.prefix = Stream(cfg, kv_only=last)
        self.suffix = Stream(cfg)

    def forward(self, prefix: Tensor, suffix: Tensor, mask: Tensor,
                past_kv: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor | None, Tensor, tuple[Tensor, Tensor]]:
        """Keys are [past_kv, prefix, suffix]; queries are the given tokens (prefix ones only if that stream
        has queries), which are always the trailing keys, so they take the last rows of mask (B, 1, Lk, Lk).
        Either token group may be empty (B, 0, W): the prefix alone builds the cache, the suffix alone
        reads it. Returns the new prefix (None if kv_only), the new suffix and this call's keys/values."""
        kp, vp, *qp = self.prefix.project(prefix)
        ks, vs, qs = self.suffix.project(suffix)
        k, v = torch.cat([kp, ks], dim=2), torch.cat([vp, vs], dim=2)
        if past_kv is not None:
            k, v = torch.cat([past_kv[0], k], dim=2), torch.cat([past_kv[1], v], dim=2)
        q = torch.cat([*qp, qs], dim=2)
        rows = mask[..., mask.shape[-2] - q.shape[2]:, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=rows).transpose(1, 2).flatten(2)
        out_p, out_s = out.split([out.shape[1] - suffix.shape[1], suffix.shape[1]], dim=1)
        new_prefix = None if self.prefix.kv_only else self.prefix.update(prefix, out_p)
        return new_prefix, self.suffix.update(suffix, out_s), (k, v)


class Prefix(NamedTuple):
    """What the suffix reads, computed once per batch: each block's prefix keys/values, the suffix rows of the
    attention mask (B, 1, 1 + chunk, P + 1 + chunk), and with a VLM prefix the suffix's RoPE (cos, sin)."""

    kv: list[tuple[Tensor, Tensor]]
    mask: Tensor
    rope: tuple[Tensor, Tensor] | None = None


class Policy(nn.Module):
    """Predicts the flow velocity of a (chunk, action_dim) action chunk from three views, task text and state."""

    def __init__(self, cfg: PolicyConfig | None = None):
        super().__init__()
        cfg = cfg or PolicyConfig()
        self.cfg = cfg
        w = cfg.width
        self.vlm = None
        if cfg.prefix == "qwen2_5_vl":
            from trainer.vlm import QwenPrefix

            self.vlm = QwenPrefix(cfg.vlm_path)
        else:
            # Prefix: patches of all views share one embedding; view and position embeddings tell them apart.
            self.patch_embed = nn.Conv2d(3, w, cfg.patch_size, stride=cfg.patch_size)
            self.patch_pos = nn.Parameter(torch.randn(cfg.patches_per_view, w) * 0.02)
            self.view_embed = nn.Parameter(torch.randn(cfg.views, w) * 0.02)
            self.text_embed = nn.Embedding(TEXT_VOCAB, w)
            nn.init.normal_(self.text_embed.weight, std=0.02)
            self.text_pos = nn.Parameter(torch.randn(cfg.max_text_len, w) * 0.02)
        # Suffix: pi0's state projection and action-time MLP; positions because the action block is bidirectional.
        self.state_in = nn.Linear(cfg.state_dim, w)
        self.action_in = nn.Linear(cfg.action_dim, w)
        self.action_pos = nn.Parameter(torch.randn(cfg.chunk, w) * 0.02)
        self.action_time_mlp = nn.Sequential(nn.Linear(2 * w, w), nn.SiLU(), nn.Linear(w, w))
        if self.vlm is not None:
            from trainer.vlm import ExpertBlock

            self.blocks = nn.ModuleList(ExpertBlock(cfg, self.vlm.kv_heads, self.vlm.head_dim)
                                        for _ in range(self.vlm.depth))
        else:
            self.blocks = nn.ModuleList(Block(cfg, last=i == cfg.depth - 1) for i in range(cfg.depth))
        self.norm = nn.RMSNorm(w)
        self.action_out = nn.Linear(w, cfg.action_dim)

    def fsdp_units(self) -> list[tuple[nn.Module, bool]]:
        """What FSDP2 shards one by one before the root, each with its reshard_after_forward: the blocks, and a VLM
        prefix's layers."""
        return [*(self.vlm.fsdp_units() if self.vlm is not None else []), *((block, True) for block in self.blocks)]

    def embed_prefix(self, batch: dict) -> tuple[Tensor, Tensor]:
        """Image patch tokens of every view, then text byte tokens: (B, P, W) and is_pad (B, P)."""
        images = batch["images"]  # uint8 (B, views, 3, H, W)
        b, views = images.shape[:2]
        if images.shape[2:] != (3, self.cfg.image_size, self.cfg.image_size) or views != self.cfg.views:
            raise ValueError(f"images {tuple(images.shape)}: expected (B, {self.cfg.views}, 3, "
                             f"{self.cfg.image_size}, {self.cfg.image_size})")
        pixels = images.flatten(0, 1).to(self.patch_embed.weight.dtype) / 127.5 - 1.0
        patches = self.patch_embed(pixels).flatten(2).transpose(1, 2) + self.patch_pos  # (B·views, N, W)
        patches = (patches.unflatten(0, (b, views)) + self.view_embed[:, None]).flatten(1, 2)
        ids, text_pad = tokenize(batch["task"], self.cfg.max_text_len)
        text = self.text_embed(ids.to(images.device)) + self.text_pos
        is_pad = torch.cat([torch.zeros(patches.shape[:2], dtype=torch.bool), text_pad], dim=1)
        return torch.cat([patches, text], dim=1), is_pad.to(images.device)

    def embed_suffix(self, batch: dict, x_t: Tensor, t: Tensor) -> Tensor:
        """The state token, then one token per chunk step: (B, 1 + chunk, W).

        Absent joints (joint_mask False) are zeroed in x_t so the noise drawn there cannot reach the output."""
        dtype = self.action_in.weight.dtype
        state = self.state_in(batch["state"].to(dtype))[:, None]
        x_t = torch.where(batch["joint_mask"][:, None, :], x_t, 0.0).to(dtype)
        actions = self.action_in(x_t) + self.action_pos
        time = time_embedding(t, self.cfg.width).to(dtype)[:, None].expand_as(actions)
        actions = self.action_time_mlp(torch.cat([actions, time], dim=-1))
        return torch.cat([state, actions], dim=1)

    def attention_mask(self, prefix_pad: Tensor) -> Tensor:
        """(B, 1, L, L) bool over [prefix, state, actions]: blockwise causal, and text padding never attended."""
        b, p = prefix_pad.shape
        allowed = blockwise_causal_mask([p, 1, self.cfg.chunk], device=prefix_pad.device)
        key_ok = torch.cat([~prefix_pad, prefix_pad.new_ones(b, 1 + self.cfg.chunk)], dim=1)
        return (allowed & key_ok[:, None, :])[:, None]

    def velocity(self, suffix: Tensor) -> Tensor:
        """Final suffix tokens -> velocity (B, chunk, action_dim), read from the action tokens."""
        return self.action_out(self.norm(suffix[:, 1:]))

    def forward(self, batch: dict, x_t: Tensor, t: Tensor) -> Tensor:
        """Velocity (B, chunk, action_dim) at noisy actions x_t (B, chunk, action_dim) and times t (B,)."""
        if self.vlm is not None:  # the prefix never reads the suffix: running it first is the joint attention
            return self.suffix_velocity(batch, self.prefix_cache(batch), x_t, t)
        prefix, prefix_pad = self.embed_prefix(batch)
        suffix = self.embed_suffix(batch, x_t, t)
        mask = self.attention_mask(prefix_pad)
        for block in self.blocks:
            prefix, suffix, _ = block(prefix, suffix, mask)
        return self.velocity(suffix)

    def prefix_cache(self, batch: dict) -> Prefix:
        """The prefix through every block (or the VLM) once: what each Euler step's suffix reads."""
        if self.vlm is not None:
            kv, real, rope = self.vlm(batch["images"], batch["task"], self.cfg.max_text_len, 1 + self.cfg.chunk)
            return Prefix(kv, self.attention_mask(~real)[..., real.shape[1]:, :], rope)
        prefix, prefix_pad = self.embed_prefix(batch)
        mask = self.attention_mask(prefix_pad)
        n = prefix.shape[1]
        kv = []
        for block in self.blocks:
            prefix, _, block_kv = block(prefix, prefix[:, :0], mask[..., :n, :n])
            kv.append(block_kv)
        return Prefix(kv, mask[..., n:, :])

    def suffix_velocity(self, batch: dict, prefix: Prefix, x_t: Tensor, t: Tensor) -> Tensor:
        """Velocity from the suffix tokens alone, attending to the cached prefix keys/values."""
        suffix = self.embed_suffix(batch, x_t, t)
        for block, kv in zip(self.blocks, prefix.kv):
            if self.vlm is not None:
                suffix = block(suffix, kv, prefix.mask, prefix.rope)
            else:
                _, suffix, _ = block(suffix[:, :0], suffix, prefix.mask, kv)
        return self.velocity(suffix)

    def loss(self, batch: dict, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, float]]:
        """One flow-matching step: noise and a time per sample, regress noise − actions on the real slots.

        `generator` (on the batch's device) makes the noise and times reproducible."""
        actions = batch["actions"]
        noise = torch.randn(actions.shape, generator=generator, device=actions.device, dtype=actions.dtype)
        t = sample_time(actions.shape[0], generator, actions.device)
        pred = self(batch, interpolate(actions, noise, t), t).float()
        target = velocity_target(actions, noise)
        masks = batch["joint_mask"], batch["action_is_pad"]
        loss = flow_loss(pred, target, *masks, kind=self.cfg.loss_kind)
        with torch.no_grad():
            metrics = {kind: flow_loss(pred, target, *masks, kind=kind).item() for kind in ("mse", "l1")}
        return loss, {"loss": loss.item(), **metrics}

    @torch.no_grad()
    def sample_actions(self, batch: dict, num_steps: int | None = None, noise: Tensor | None = None) -> Tensor:
        """Euler-integrate from noise (t=1) to actions (t=0): (B, chunk, action_dim), absent joints set to 0.

        The prefix runs once (`prefix_cache`); each Euler step runs only the suffix against its cached
        per-layer keys/values."""
        prefix = self.prefix_cache(batch)
        state = batch["state"]
        if noise is None:
            noise = torch.randn(state.shape[0], self.cfg.chunk, self.cfg.action_dim, device=state.device)
        actions = euler_sample(lambda x_t, t: self.suffix_velocity(batch, prefix, x_t, t).float(), noise,
                               num_steps or self.cfg.num_steps)
        return torch.where(batch["joint_mask"][:, None, :], actions, 0.0)
