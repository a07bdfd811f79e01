"""The Qwen2.5-VL prefix on a tiny random model built offline (scripts/tiny_qwen2_5_vl.py): it learns with
gradients in both the VLM and the action expert, cached sampling equals the uncached joint computation, a
sample does not depend on its batchmates' padding, and FSDP2 over its units matches the plain model."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from scripts.tiny_qwen2_5_vl import build
from tests.test_trainer_model import (check_bf16_close_to_fp32, check_sharded_matches_plain, make_batch,
                                      one_rank_group)
from trainer.distributed import shard
from trainer.flow import euler_sample
from trainer.model import Policy, PolicyConfig

TASKS = ["pick up the red cube and place it in the box", "stack"]  # different token counts: the second is padded


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> PolicyConfig:
    path = build(tmp_path_factory.mktemp("qwen") / "tiny")
    return PolicyConfig.tiny(prefix="qwen2_5_vl", vlm_path=path, image_size=32, heads=4)


def make(cfg: PolicyConfig, seed: int = 0) -> tuple[Policy, dict]:
    torch.manual_seed(seed)
    return Policy(cfg), {**make_batch(cfg, seed=seed), "task": TASKS}


def test_expert_has_one_block_per_vlm_layer_with_its_kv_heads(cfg):
    model, batch = make(cfg)
    text = model.vlm.model.config.text_config
    prefix = model.prefix_cache(batch)
    assert len(model.blocks) == len(prefix.kv) == text.num_hidden_layers == 2
    k, v = prefix.kv[0]
    assert k.shape[:2] == v.shape[:2] == (2, text.num_key_value_heads)
    assert k.shape[-1] == text.hidden_size // text.num_attention_heads
    assert prefix.mask.shape == (2, 1, 1 + cfg.chunk, k.shape[2] + 1 + cfg.chunk)


def test_loss_reaches_vlm_and_expert_and_decreases_on_a_fixed_batch(cfg):
    model, batch = make(cfg)
    loss, metrics = model.loss(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    loss.backward()
    # Only the keys/values of the last layer are read: the rest of it is frozen, and every other weight learns,
    # the vision tower's through the image tokens.
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {f"vlm.model.language_model.{name}" for name in (
        "layers.1.self_attn.q_proj.weight", "layers.1.self_attn.q_proj.bias", "layers.1.self_attn.o_proj.weight",
        "layers.1.post_attention_layernorm.weight", "layers.1.mlp.gate_proj.weight", "layers.1.mlp.up_proj.weight",
        "layers.1.mlp.down_proj.weight", "norm.weight")}
    trained = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert trained == {name for name, _ in model.named_parameters()} - frozen
    assert any(n.startswith("vlm.model.visual.") for n in trained) and any(n.startswith("blocks.") for n in trained)

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = [metrics["loss"]]
    for _ in range(30):
        optimizer.step()
        optimizer.zero_grad()
        loss, _ = model.loss(batch, torch.Generator().manual_seed(0))  # same noise and times each step
        loss.backward()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < 0.7 * losses[0], losses


def test_cached_prefix_sampling_equals_uncached(cfg):
    model, batch = make(cfg)
    noise = torch.randn(2, cfg.chunk, cfg.action_dim, generator=torch.Generator().manual_seed(1))
    vlm_runs = []
    model.vlm.register_forward_hook(lambda *_: vlm_runs.append(1))
    cached = model.sample_actions(batch, num_steps=3, noise=noise)
    assert len(vlm_runs) == 1  # the VLM runs once for all three steps
    with torch.no_grad():  # the reference runs the VLM and the expert together at every step
        uncached = euler_sample(lambda x, t: model(batch, x, t), noise, 3)
    assert len(vlm_runs) == 4
    assert_close(cached, torch.where(batch["joint_mask"][:, None, :], uncached, 0.0), atol=1e-5, rtol=0)


def test_a_sample_ignores_its_batchmates_and_their_padding(cfg):
    model, batch = make(cfg)
    assert not model.prefix_cache(batch).mask[1].all()  # "stack" is right-padded to the longer task
    x_t, t = torch.randn(2, cfg.chunk, cfg.action_dim), torch.rand(2)
    with torch.no_grad():
        together = model(batch, x_t, t)
        for i in range(2):  # alone: no padding, and the suffix positions start right after its own prefix
            alone = model({k: v[i:i + 1] for k, v in batch.items()}, x_t[i:i + 1], t[i:i + 1])
            assert_close(together[i:i + 1], alone, atol=1e-5, rtol=0)
        other = model({**batch, "task": [TASKS[0], "open the drawer"]}, x_t, t)
    assert_close(other[0], together[0], atol=1e-5, rtol=0)
    assert not torch.allclose(other[1], together[1], atol=1e-4)  # the task reaches the actions


def test_fully_shard_units_and_root_matches_plain_model(cfg):
    (plain, batch), (sharded, _) = make(cfg), make(cfg)
    with one_rank_group():
        shard(sharded, sharded.fsdp_units(), mixed_precision=False)
        check_sharded_matches_plain(plain, sharded, batch)


def test_bf16_mixed_precision_runs_close_to_fp32(cfg):
    (plain, batch), (mixed, _) = make(cfg), make(cfg)
    with one_rank_group():
        check_bf16_close_to_fp32(plain, mixed, batch)
