"""Build a tiny random-weight Qwen3-VL model directory offline, servable by `vllm serve`.

    <vllm venv>/bin/python scripts/tiny_qwen_vl.py OUT_DIR

Used by the annotate tests and benchmarks/annotate.py: the answers are meaningless, but every part of the
serving path is the real one (chat template, multi-image processor, vision tower, schema-constrained decoding).
The directory has a config and safetensors weights, a byte-level BPE tokenizer trained here with Qwen's
special tokens, the Qwen-VL chat template and the image/video processor configs. About 2 MB; the weights are
seeded, so the same command gives the same model.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

# Qwen's special tokens in Qwen's order; here they get the ids 0..13.
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
            "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
# Qwen2's pre-tokenizer split.
SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"""
         r"""|\s+(?!\S)|\s+""")
# The Qwen-VL chat template: string content, or OpenAI content lists with text and image parts.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# A little text like the prompts and answers it will see, so that common words become single tokens.
CORPUS = ["You label robot recordings. Answer with JSON only.",
          '{"task": "hand over the cube", "subtasks": [{"start_s": 1.5, "end_s": 4.25, "instruction": "grasp the '
          'cube with the left arm"}], "confidence": 0.8, "needs_review": false}',
          "top left_wrist right_wrist view t= s proposed spans subtask instruction recording seconds",
          "pick place put stack open close push pull move reach release the a an to from on in with arm gripper"] * 10


def tokenizer(vocab_size: int):
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(SPLIT), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIALS), show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    trained = json.loads(bpe.to_str())["model"]
    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for t in sorted(trained["vocab"], key=trained["vocab"].get):
        vocab.setdefault(t, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in trained["merges"]]
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", additional_special_tokens=SPECIALS, errors="replace")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build(out: Path, vocab_size: int = 512, seed: int = 0) -> None:
    from transformers import (Qwen2VLImageProcessor, Qwen3VLConfig, Qwen3VLForConditionalGeneration,
                              Qwen3VLProcessor, Qwen3VLVideoProcessor)

    torch.manual_seed(seed)
    tok = tokenizer(vocab_size)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIALS}
    hidden = 128
    config = Qwen3VLConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=64,  # 64: every attention backend has it
                         max_position_embeddings=16384, rms_norm_eps=1e-6, tie_word_embeddings=False,
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"],
                         # mrope sections sum to head_dim / 2
                         rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [8, 12, 12],
                                          "mrope_interleaved": True}),
        vision_config=dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, in_channels=3, patch_size=16,
                           spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=hidden,
                           num_position_embeddings=256, deepstack_visual_indexes=[0]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    model = Qwen3VLForConditionalGeneration(config).to(torch.bfloat16).eval()
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out, safe_serialization=True)
    # A small pixel budget (4 to 64 merged vision tokens per image) keeps prompts short on a CPU.
    unit = 16 * 2  # patch x merge
    pixels = dict(patch_size=16, temporal_patch_size=2, merge_size=2,
                  size={"shortest_edge": unit * unit * 4, "longest_edge": unit * unit * 64})
    Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(**pixels), video_processor=Qwen3VLVideoProcessor(**pixels),
                     tokenizer=tok, chat_template=CHAT_TEMPLATE).save_pretrained(out)
    tok.save_pretrained(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    build(a.out, a.vocab_size, a.seed)
    print(a.out)


if __name__ == "__main__":
    main()
