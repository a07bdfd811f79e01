"""Flow-matching math and the policy model: hand-computed values, mask structure, prefix caching, causality,
padding invariance, loss masking, learning on a fixed batch, and FSDP2 wrapping on one CPU rank."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch.testing import assert_close

from trainer.flow import (blockwise_causal_mask, euler_sample, flow_loss, interpolate, sample_time,
                          velocity_target)
from trainer.model import TEXT_PAD, Policy, PolicyConfig, tokenize

CFG = PolicyConfig.tiny()


def make_batch(cfg: PolicyConfig = CFG, b: int = 2, seed: int = 0) -> dict:
    """A loader-shaped batch: 16 real joints of 75, and the first sample's episode ending at step 30."""
    g = torch.Generator().manual_seed(seed)
    joint_mask = torch.zeros(b, cfg.action_dim, dtype=torch.bool)
    joint_mask[:, :16] = True
    action_is_pad = torch.zeros(b, cfg.chunk, dtype=torch.bool)
    action_is_pad[0, 30:] = True
    return {
        "images": torch.randint(0, 256, (b, cfg.views, 3, cfg.image_size, cfg.image_size), generator=g,
                                dtype=torch.uint8),
        "state": torch.randn(b, cfg.state_dim, generator=g) * joint_mask,
        "actions": torch.randn(b, cfg.chunk, cfg.action_dim, generator=g) * joint_mask[:, None],
        "action_is_pad": action_is_pad,
        "joint_mask": joint_mask,
        "task": ["pick", "stack"][:b],
    }


def make_model(cfg: PolicyConfig = CFG, seed: int = 0) -> Policy:
    torch.manual_seed(seed)
    return Policy(cfg)


@contextmanager
def one_rank_group() -> Iterator[None]:
    """A one-rank gloo process group for FSDP2 on CPU (skips the test without torch.distributed)."""
    dist = pytest.importorskip("torch.distributed")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def check_sharded_matches_plain(plain: Policy, sharded: Policy, batch: dict) -> None:
    """Inside `one_rank_group`: `sharded` (a fully_shard-ed copy of `plain`) gets the same gradients (none where
    `plain` has none: frozen parameters) and samples the same actions."""
    from torch.distributed.fsdp import register_fsdp_forward_method

    register_fsdp_forward_method(sharded, "sample_actions")
    for model in (plain, sharded):
        loss, _ = model.loss(batch, torch.Generator().manual_seed(2))
        loss.backward()
    for (name, p), q in zip(plain.named_parameters(), sharded.parameters()):
        if p.grad is None:
            assert q.grad is None, name
        else:
            assert_close(q.grad.full_tensor(), p.grad, atol=1e-6, rtol=1e-5, msg=name)
    noise = torch.randn(2, plain.cfg.chunk, plain.cfg.action_dim)
    assert_close(sharded.sample_actions(batch, noise=noise), plain.sample_actions(batch, noise=noise),
                 atol=1e-5, rtol=0)


def check_bf16_close_to_fp32(plain: Policy, mixed: Policy, batch: dict) -> None:
    """Inside `one_rank_group`: `mixed`, a copy of `plain` sharded with bf16 compute, gives an fp32 loss within 2%
    of `plain`'s and finite gradients for every trainable parameter."""
    from trainer.distributed import shard

    shard(mixed, mixed.fsdp_units(), mixed_precision=True)  # bf16 compute, fp32 output
    reference, _ = plain.loss(batch, torch.Generator().manual_seed(2))
    loss, _ = mixed.loss(batch, torch.Generator().manual_seed(2))
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(reference.item(), rel=0.02)
    loss.backward()
    assert all(torch.isfinite(p.grad.full_tensor()).all() for p in mixed.parameters() if p.requires_grad)


# ---- flow pieces ----

def test_interpolate_and_velocity_target_by_hand():
    actions = torch.tensor([[[1.0, 2.0]]])
    noise = torch.tensor([[[3.0, -2.0]]])
    assert_close(interpolate(actions, noise, torch.tensor([0.25])), torch.tensor([[[1.5, 1.0]]]))
    assert_close(interpolate(actions, noise, torch.tensor([1.0])), noise)  # t=1 is pure noise
    assert_close(interpolate(actions, noise, torch.tensor([0.0])), actions)
    assert_close(velocity_target(actions, noise), torch.tensor([[[2.0, -4.0]]]))


def test_sample_time_is_scaled_beta_and_reproducible():
    t = sample_time(20000, torch.Generator().manual_seed(0))
    assert t.shape == (20000,) and t.min() >= 0.001 and t.max() <= 1.0
    assert abs(t.mean().item() - (0.001 + 0.999 * 0.6)) < 0.01  # Beta(1.5, 1) has mean 0.6
    assert_close(sample_time(4, torch.Generator().manual_seed(3)), sample_time(4, torch.Generator().manual_seed(3)))


def test_flow_loss_counts_only_real_slots():
    # Real slots: step 0, joints 0 and 2 (joint 1 is absent, step 1 is past the episode end).
    target = torch.zeros(1, 2, 3)
    pred = torch.tensor([[[1.0, 100.0, -3.0], [50.0, float("nan"), float("inf")]]])
    joint_mask = torch.tensor([[True, False, True]])
    action_is_pad = torch.tensor([[False, True]])
    assert flow_loss(pred, target, joint_mask, action_is_pad, "mse").item() == pytest.approx((1 + 9) / 2)
    assert flow_loss(pred, target, joint_mask, action_is_pad, "l1").item() == pytest.approx((1 + 3) / 2)


def test_flow_loss_gradient_is_zero_on_masked_slots():
    pred = torch.randn(2, 4, 5, requires_grad=True)
    joint_mask = torch.tensor([[1, 1, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    action_is_pad = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    flow_loss(pred, torch.zeros(2, 4, 5), joint_mask, action_is_pad).backward()
    valid = joint_mask[:, None, :] & ~action_is_pad[:, :, None]
    assert (pred.grad[~valid] == 0).all() and (pred.grad[valid] != 0).all()


def test_euler_constant_velocity_is_exact():
    noise = torch.tensor([[[1.0, -2.0]]])
    v = torch.tensor([[[0.5, 3.0]]])
    assert_close(euler_sample(lambda x, t: v.expand_as(x), noise, 7), noise - v)


def test_euler_time_dependent_velocity_uses_left_endpoints():
    # dx/dt = t from t=1 to 0: Euler sums -(1/n)·Σ(1 − i/n) = -(n+1)/(2n); the exact change is -1/2.
    n = 4
    x0 = euler_sample(lambda x, t: t.view(-1, 1, 1).expand_as(x), torch.zeros(2, 1, 1), n)
    assert_close(x0, torch.full((2, 1, 1), -(n + 1) / (2 * n)))


def test_euler_linear_field_against_analytic_solution():
    # dx/dt = x: x(0) = x(1)/e exactly; Euler gives (1 − 1/n)^n·x(1), off by about 1/(2n e).
    noise = torch.tensor([[[2.0, -1.0]]], dtype=torch.float64)
    n = 50
    x0 = euler_sample(lambda x, t: x, noise, n)
    assert_close(x0, noise * (1 - 1 / n) ** n)
    assert (x0 - noise / math.e).abs().max() < 1.0 / n


def test_blockwise_causal_mask_structure():
    expected = torch.tensor([
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(blockwise_causal_mask([3, 1, 2]), expected)


# ---- model ----

def test_tokenize_utf8_bytes_truncates_and_pads():
    ids, is_pad = tokenize(["hé", "abcdef"], 4)
    assert ids.tolist() == [[104, 195, 169, TEXT_PAD], [97, 98, 99, 100]]
    assert is_pad.tolist() == [[False, False, False, True], [False] * 4]


def test_config_rejects_patch_size_not_dividing_image():
    with pytest.raises(ValueError, match="patch_size"):
        PolicyConfig(image_size=60, patch_size=8)


def test_forward_shape():
    batch = make_batch()
    out = make_model()(batch, batch["actions"], torch.rand(2))
    assert out.shape == (2, CFG.chunk, CFG.action_dim)


def test_sample_actions_with_prefix_cache_equals_uncached_euler():
    model, batch = make_model(), make_batch()
    noise = torch.randn(2, CFG.chunk, CFG.action_dim, generator=torch.Generator().manual_seed(1))
    prefix_runs = []
    model.patch_embed.register_forward_hook(lambda *_: prefix_runs.append(1))
    cached = model.sample_actions(batch, num_steps=3, noise=noise)
    assert len(prefix_runs) == 1  # the prefix is embedded once for all three steps
    with torch.no_grad():  # the reference runs the full joint attention at every step
        uncached = euler_sample(lambda x, t: model(batch, x, t), noise, 3)
    uncached = torch.where(batch["joint_mask"][:, None, :], uncached, 0.0)
    assert_close(cached, uncached, atol=1e-5, rtol=0)
    assert (cached[:, :, 16:] == 0).all()


def _trace(model: Policy, batch: dict, x_t: torch.Tensor, t: torch.Tensor) -> list[dict]:
    """Per block: the prefix keys/values and hidden state, and the state token's hidden state."""
    prefix, prefix_pad = model.embed_prefix(batch)
    suffix = model.embed_suffix(batch, x_t, t)
    mask = model.attention_mask(prefix_pad)
    n = prefix.shape[1]
    trace = []
    with torch.no_grad():
        for block in model.blocks:
            prefix, suffix, (k, v) = block(prefix, suffix, mask)
            trace.append({"prefix_k": k[:, :, :n], "prefix_v": v[:, :, :n], "prefix": prefix, "state": suffix[:, 0],
                          "actions": suffix[:, 1:]})
    return trace


def _assert_same(a: list[dict], b: list[dict], keys: list[str]) -> None:
    for block_a, block_b in zip(a, b):
        for key in keys:
            if block_a[key] is not None:
                assert_close(block_a[key], block_b[key], atol=1e-6, rtol=0)


def test_later_blocks_do_not_change_earlier_ones():
    model, batch = make_model(), make_batch()
    x_t, t = torch.randn(2, CFG.chunk, CFG.action_dim), torch.rand(2)
    base = _trace(model, batch, x_t, t)

    other_actions = _trace(model, batch, torch.randn_like(x_t), torch.rand(2))
    _assert_same(base, other_actions, ["prefix_k", "prefix_v", "prefix", "state"])
    assert not torch.allclose(base[-1]["actions"], other_actions[-1]["actions"])

    other_state = _trace(model, {**batch, "state": torch.randn(2, CFG.state_dim)}, x_t, t)
    _assert_same(base, other_state, ["prefix_k", "prefix_v", "prefix"])
    assert not torch.allclose(base[-1]["state"], other_state[-1]["state"])


def test_text_padding_does_not_change_output():
    model, batch = make_model(), make_batch()  # tasks "pick" and "stack": positions 5.. are padding in both
    x_t, t = torch.randn(2, CFG.chunk, CFG.action_dim), torch.rand(2)
    with torch.no_grad():
        base = model(batch, x_t, t)
        model.text_embed.weight[TEXT_PAD] += 10 * torch.randn(CFG.width)
        model.text_pos[5:] += 10 * torch.randn(CFG.max_text_len - 5, CFG.width)
        assert_close(model(batch, x_t, t), base, atol=1e-6, rtol=0)
        model.text_pos[0] += 1.0  # a real token's embedding does matter
        assert not torch.allclose(model(batch, x_t, t), base, atol=1e-4)


def test_loss_ignores_absent_joints():
    model, batch = make_model(), make_batch()
    loss, metrics = model.loss(batch, torch.Generator().manual_seed(5))
    junk = batch["actions"] + 100 * torch.randn_like(batch["actions"]) * ~batch["joint_mask"][:, None, :]
    perturbed, _ = model.loss({**batch, "actions": junk}, torch.Generator().manual_seed(5))
    assert perturbed.item() == loss.item()
    assert set(metrics) == {"loss", "mse", "l1"} and metrics["loss"] == metrics["mse"]


def test_optimizer_steps_on_a_fixed_batch_reduce_the_loss():
    model, batch = make_model(), make_batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss, _ = model.loss(batch, torch.Generator().manual_seed(0))  # same noise and times each step
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_fully_shard_per_block_and_root_matches_plain_model():
    batch = make_batch()
    plain, sharded = make_model(), make_model()
    with one_rank_group():
        from torch.distributed.fsdp import fully_shard

        for block in sharded.blocks:
            fully_shard(block)
        fully_shard(sharded)
        check_sharded_matches_plain(plain, sharded, batch)
    assert all(p.grad is not None for p in plain.parameters())  # nothing frozen here: every parameter compared


def test_bf16_mixed_precision_runs_close_to_fp32():
    batch = make_batch()
    plain, mixed = make_model(), make_model()
    with one_rank_group():
        check_bf16_close_to_fp32(plain, mixed, batch)
