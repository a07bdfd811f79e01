"""The optional pretrained prefix: transformers' Qwen2.5-VL reads the three views and the task, and each of its
decoder layers hands its prefix keys/values to the action expert's block of the same index (pi0's layout).

The prompt is, per view, <|vision_start|> <|image_pad|>×n <|vision_end|>, then the task's tokens, right-padded.
Inside the prefix Qwen keeps its own causal attention, as it was pretrained; the suffix sees every real prefix
token and the prefix never sees the suffix, so the prefix computed alone (one VLM forward with its KV cache) is
exactly its part of the joint attention, in training and for every Euler step at inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoImageProcessor, AutoTokenizer, Qwen2_5_VLModel
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb

from trainer.model import PolicyConfig, Stream


class QwenPrefix(nn.Module):
    """Qwen2.5-VL (no LM head) with its tokenizer and image processor, all from one local folder."""

    def __init__(self, path: Path):
        super().__init__()
        # fp32 master weights: FSDP's mixed precision casts them to bf16 for compute on GPUs.
        self.model = Qwen2_5_VLModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        # Only the last layer's keys/values are read, not its output: the rest of it and the final norm would never
        # get a gradient, nor optimizer state, which a resumed checkpoint would then miss.
        last, lm = self.model.language_model.layers[-1], self.model.language_model
        for unread in (last.self_attn.q_proj, last.self_attn.o_proj, last.post_attention_layernorm, last.mlp, lm.norm):
            unread.requires_grad_(False)
        text = self.model.config.text_config
        self.depth, self.kv_heads = text.num_hidden_layers, text.num_key_value_heads
        self.head_dim = text.hidden_size // text.num_attention_heads

    def fsdp_units(self) -> list[tuple[nn.Module, bool]]:
        """Vision blocks and decoder layers, as (unit, reshard_after_forward). The decoder layers stay gathered
        until backward: their keys/values leave through the KV cache rather than their output, and FSDP2 hooks
        the re-gather for backward on outputs, so it would miss the gradients that come back through the cache."""
        return [*((block, True) for block in self.model.visual.blocks),
                *((layer, False) for layer in self.model.language_model.layers)]

    def prompt(self, views: int, grid: Tensor, tasks: Sequence[str], max_text_len: int) -> tuple[Tensor, Tensor]:
        """Token ids (B, P) and the mask of real (not padding) tokens (B, P), as long integers."""
        cfg = self.model.config
        n = int(grid[0].prod()) // self.model.visual.spatial_merge_size ** 2  # tokens per view; views share a size
        view = [cfg.vision_start_token_id] + [cfg.image_token_id] * n + [cfg.vision_end_token_id]
        text = self.tokenizer(list(tasks), add_special_tokens=False, truncation=True, max_length=max_text_len,
                              padding=True, padding_side="right", return_tensors="pt")
        images = torch.tensor(view * views).expand(len(tasks), -1)
        return (torch.cat([images, text["input_ids"]], dim=1),
                torch.cat([torch.ones_like(images), text["attention_mask"]], dim=1))

    def forward(self, images: Tensor, tasks: Sequence[str], max_text_len: int,
                suffix_len: int) -> tuple[list[tuple[Tensor, Tensor]], Tensor, tuple[Tensor, Tensor]]:
        """images uint8 (B, views, 3, H, W) -> per decoder layer the prefix keys/values (B, kv_heads, P, head_dim),
        which prefix tokens are real (B, P) bool, and RoPE (cos, sin) for suffix_len tokens that continue each
        sample's positions after its last prefix token."""
        device = images.device
        pixels = self.image_processor(images=list(images.flatten(0, 1).cpu()), return_tensors="pt")
        grid = pixels["image_grid_thw"].to(device)
        ids, real = (x.to(device) for x in self.prompt(images.shape[1], grid, tasks, max_text_len))
        image_tokens = (ids == self.model.config.image_token_id).int()
        positions, _ = self.model.get_rope_index(ids, image_tokens, image_grid_thw=grid, attention_mask=real)
        out = self.model(input_ids=ids, attention_mask=real, position_ids=positions, image_grid_thw=grid,
                         pixel_values=pixels["pixel_values"].to(device), use_cache=True)
        kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        # Padding sits at position 0, so each sample's maximum is its last real token's position.
        suffix = positions.amax(dim=(0, 2))[:, None] + 1 + torch.arange(suffix_len, device=device)
        rope = self.model.language_model.rotary_emb(kv[0][0], suffix.expand(3, -1, -1))
        return kv, real.bool(), rope


class ExpertBlock(nn.Module):
    """The action expert's half of one VLM decoder layer: suffix queries attend to [that layer's prefix keys/values,
    suffix keys/values], with the VLM's KV heads and head size (grouped-query attention) and its RoPE."""

    def __init__(self, cfg: PolicyConfig, kv_heads: int, head_dim: int):
        super().__init__()
        if cfg.heads % kv_heads:
            raise ValueError(f"heads {cfg.heads} is not a multiple of the VLM's {kv_heads} key/value heads")
        self.suffix = Stream(cfg, kv_heads=kv_heads, head_dim=head_dim)

    def forward(self, suffix: Tensor, prefix_kv: tuple[Tensor, Tensor], mask: Tensor,
                rope: tuple[Tensor, Tensor]) -> Tensor:
        """suffix (B, S, W), mask (B, 1, S, P + S) -> the new suffix (B, S, W)."""
        k, v, q = self.suffix.project(suffix)
        q, k = apply_rotary_pos_emb(q, k, *rope)
        k, v = torch.cat([prefix_kv[0], k], dim=2), torch.cat([prefix_kv[1], v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        return self.suffix.update(suffix, out.transpose(1, 2).flatten(2))
