"""A Qwen3-Omni-30B-A3B-Instruct model directory with random weights, for `vllm.LLM(model=DIR,
load_format="dummy")` on a GPU machine that cannot reach the model hub.

  python benchmarks/make_qwen3_omni.py OUTDIR          # the real dimensions (thinker ~30.5B parameters)
  python benchmarks/make_qwen3_omni.py OUTDIR --tiny   # same layout, small enough to run on a CPU

The directory has what vLLM and Hugging Face's Qwen3OmniMoeProcessor read: config.json (thinker with
its audio and vision encoders, as in the released checkpoint; `enable_audio_output: false`, so no
talker), generation_config.json, a byte-level tokenizer whose special tokens sit at the checkpoint's
ids (`<|audio_pad|>` = 151675, `<|audio_start|>` = 151669, ...; the ordinary vocabulary is fillers,
so dummy outputs decode to filler words), the Whisper-style feature extractor (128 mel bins, 16 kHz)
and the image and video processors. No weights: with `load_format: dummy` vLLM draws them.

Throughput measured with it is the real model's (same shapes, same expert routing cost); the words
are not. `tests/test_qwen3_omni_dir.py` loads the directory with transformers on CPU: the parameter
count at full size, and the tiny model generating from our qwen3-omni prompt around real audio.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

VOCAB = 152064           # the embedding rows (the tokenizer has fewer; the rest are padding)
FIRST_SPECIAL = 151643
# The checkpoint's added tokens from id 151643 on, in order.
SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
    "</tool_response>", "<think>", "</think>", "<|audio_start|>", "<|audio_end|>", "<tts_pad>",
    "<tts_text_bos>", "<tts_text_eod>", "<tts_text_bos_single>", "<|audio_pad|>",
]
ROLE_TOKENS = {"system": 8948, "user": 872, "assistant": 77091}  # ordinary vocabulary ids in the checkpoint


def token_id(token: str) -> int:
    return FIRST_SPECIAL + SPECIALS.index(token)


AUDIO_ENCODER = {
    "model_type": "qwen3_omni_moe_audio_encoder", "d_model": 1280, "encoder_layers": 32,
    "encoder_attention_heads": 20, "encoder_ffn_dim": 5120, "num_mel_bins": 128, "max_source_positions": 1500,
    "n_window": 50, "n_window_infer": 800, "conv_chunksize": 500, "downsample_hidden_size": 480,
    "output_dim": 2048, "activation_function": "gelu", "scale_embedding": False, "dropout": 0.0,
    "attention_dropout": 0.0, "activation_dropout": 0.0,
}
VISION_ENCODER = {
    "model_type": "qwen3_omni_moe_vision_encoder", "depth": 27, "hidden_size": 1152, "intermediate_size": 4304,
    "num_heads": 16, "hidden_act": "gelu_pytorch_tanh", "in_channels": 3, "patch_size": 16,
    "spatial_patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 2048,
    "num_position_embeddings": 2304, "image_size": 768, "apply_vit_abs_pos_embed": True,
    "deepstack_visual_indexes": [8, 16, 24], "tokens_per_second": 2,
}
TEXT = {
    "model_type": "qwen3_omni_moe_text", "hidden_size": 2048, "num_hidden_layers": 48, "num_attention_heads": 32,
    "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 768, "moe_intermediate_size": 768,
    "num_experts": 128, "num_experts_per_tok": 8, "decoder_sparse_step": 1, "mlp_only_layers": [],
    "norm_topk_prob": True, "shared_expert_intermediate_size": 0, "vocab_size": VOCAB,
    "max_position_embeddings": 65536, "hidden_act": "silu", "rms_norm_eps": 1e-6, "attention_bias": False,
    "use_qk_norm": True, "tie_word_embeddings": False, "use_sliding_window": False, "sliding_window": None,
    "rope_theta": 1000000,
    "rope_scaling": {"rope_type": "default", "type": "default", "interleaved": True, "mrope_interleaved": True,
                     "mrope_section": [24, 20, 20]},
}
# --tiny: the same layout at a size a CPU runs in seconds (two text layers, eight experts, ...).
TINY = {
    "audio_config": {"d_model": 64, "encoder_layers": 2, "encoder_attention_heads": 4, "encoder_ffn_dim": 128,
                     "downsample_hidden_size": 32, "output_dim": 64},
    "vision_config": {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4,
                      "out_hidden_size": 64, "deepstack_visual_indexes": [0]},
    "text_config": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                    "head_dim": 16, "intermediate_size": 64, "moe_intermediate_size": 32, "num_experts": 8,
                    "num_experts_per_tok": 2,
                    "rope_scaling": {"rope_type": "default", "type": "default", "interleaved": True,
                                     "mrope_interleaved": True, "mrope_section": [2, 3, 3]}},
}


def model_config(tiny: bool = False) -> dict:
    thinker = {
        "model_type": "qwen3_omni_moe_thinker", "audio_config": copy.deepcopy(AUDIO_ENCODER),
        "vision_config": copy.deepcopy(VISION_ENCODER), "text_config": copy.deepcopy(TEXT),
        "audio_token_id": token_id("<|audio_pad|>"), "image_token_id": token_id("<|image_pad|>"),
        "video_token_id": token_id("<|video_pad|>"), "audio_start_token_id": token_id("<|audio_start|>"),
        "audio_end_token_id": token_id("<|audio_end|>"), "vision_start_token_id": token_id("<|vision_start|>"),
        "vision_end_token_id": token_id("<|vision_end|>"), "user_token_id": ROLE_TOKENS["user"],
        "position_id_per_seconds": 13, "seconds_per_chunk": 2, "tie_word_embeddings": False,
        "dtype": "bfloat16",
    }
    if tiny:
        for part, changes in TINY.items():
            thinker[part].update(copy.deepcopy(changes))
    return {
        "architectures": ["Qwen3OmniMoeForConditionalGeneration"], "model_type": "qwen3_omni_moe",
        "thinker_config": thinker, "enable_audio_output": False, "dtype": "bfloat16",
        "im_start_token_id": token_id("<|im_start|>"), "im_end_token_id": token_id("<|im_end|>"),
        "tts_pad_token_id": token_id("<tts_pad>"), "tts_bos_token_id": token_id("<tts_text_bos>"),
        "tts_eos_token_id": token_id("<tts_text_eod>"), "system_token_id": ROLE_TOKENS["system"],
        "user_token_id": ROLE_TOKENS["user"], "assistant_token_id": ROLE_TOKENS["assistant"],
    }


def _tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate(alphabet)}
    for i in range(len(vocab), FIRST_SPECIAL):
        vocab[f"\u0120f{i}"] = i  # fillers: a dummy model's outputs decode to " f123 f4567 ..."
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(SPECIALS)
    for token in SPECIALS:
        assert tokenizer.token_to_id(token) == token_id(token), token
    tokenizer.save(str(out / "tokenizer.json"))


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'audio' %}<|audio_start|><|audio_pad|><|audio_end|>"
    "{% elif c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build(out: Path, tiny: bool = False) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    _tokenizer(out)
    named = {"image_token": "<|image_pad|>", "audio_token": "<|audio_pad|>", "video_token": "<|video_pad|>",
             "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>",
             "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>"}
    files = {
        "config.json": model_config(tiny),
        "generation_config.json": {"eos_token_id": [token_id("<|im_end|>"), token_id("<|endoftext|>")],
                                   "pad_token_id": token_id("<|endoftext|>"), "do_sample": False},
        "tokenizer_config.json": {
            "tokenizer_class": "Qwen2Tokenizer", "model_max_length": 65536, "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>", "bos_token": None, "unk_token": None, "errors": "replace",
            "clean_up_tokenization_spaces": False, "split_special_tokens": False,
            "extra_special_tokens": named, "chat_template": CHAT_TEMPLATE},
        "chat_template.json": {"chat_template": CHAT_TEMPLATE},
        "preprocessor_config.json": {
            "processor_class": "Qwen3OmniMoeProcessor",
            "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": 128, "sampling_rate": 16000,
            "hop_length": 160, "chunk_length": 300, "n_fft": 400, "n_samples": 4800000, "nb_max_frames": 30000,
            "padding_side": "right", "padding_value": 0.0, "return_attention_mask": True, "dither": 0.0,
            "image_processor_type": "Qwen2VLImageProcessor", "patch_size": 16, "temporal_patch_size": 2,
            "merge_size": 2, "min_pixels": 128 * 32 * 32, "max_pixels": 768 * 32 * 32,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_rescale": True,
            "rescale_factor": 1 / 255, "do_normalize": True, "do_resize": True, "do_convert_rgb": True},
        "video_preprocessor_config.json": {
            "video_processor_type": "Qwen2VLVideoProcessor", "patch_size": 16, "temporal_patch_size": 2,
            "merge_size": 2, "min_pixels": 128 * 32 * 32, "max_pixels": 768 * 32 * 32,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
    }
    for name, content in files.items():
        (out / name).write_text(json.dumps(content, indent=1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--tiny", action="store_true", help="small dimensions, for a CPU")
    args = ap.parse_args()
    print("model dir ready:", build(args.out, args.tiny))


if __name__ == "__main__":
    main()
