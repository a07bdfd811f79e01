"""Build a tiny random-weight Qwen2.5-VL folder offline, for the trainer's VLM prefix on a CPU.

    .venv/bin/python -m scripts.tiny_qwen2_5_vl OUT_DIR        (from the repository root)

The folder has what `PolicyConfig(prefix="qwen2_5_vl", vlm_path=OUT_DIR)` loads from a real Qwen2.5-VL download:
config and safetensors weights (saved in the hub's key layout), a byte-level BPE tokenizer with Qwen's special
tokens (the one scripts/tiny_qwen_vl.py trains) and the image processor config. Two decoder layers of width 64
with grouped-query attention (4 query heads, 2 KV heads), a two-block vision tower with 8-pixel patches, merged
2x2: a 32x32 view is 4 tokens. About 1 MB; the weights are seeded, so the same command gives the same model.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from scripts.tiny_qwen_vl import SPECIALS, tokenizer


def build(out: Path, vocab_size: int = 512, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    tok = tokenizer(vocab_size)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIALS}
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6,
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"],
                         # mrope sections sum to head_dim / 2
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=8,
                           spatial_merge_size=2, temporal_patch_size=2, window_size=32, fullatt_block_indexes=[1],
                           out_hidden_size=64),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    if out.exists():
        shutil.rmtree(out)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(out)
    unit = 8 * 2  # patch x merge
    # The PIL processor needs no torchvision; the config it writes loads as Qwen2VLImageProcessor either way.
    Qwen2VLImageProcessorPil(patch_size=8, temporal_patch_size=2, merge_size=2,
                             size={"shortest_edge": unit * unit, "longest_edge": unit * unit * 64}).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    print(build(a.out, seed=a.seed))


if __name__ == "__main__":
    main()
