"""The Qwen3-Omni model directory that the GPU benchmark serves with random weights
(benchmarks/make_qwen3_omni.py), checked with transformers' own Qwen3-Omni classes on CPU: the real
model's size at full dimensions, and our qwen3-omni request (prompt + audio) going through the
checkpoint's processor and the thinker's generate at tiny dimensions."""

import torch
from transformers import AutoConfig, AutoProcessor, Qwen3OmniMoeThinkerForConditionalGeneration

from asr_distill.asr.families import family_for
from asr_distill.media import decode_to_mono16k
from benchmarks import make_qwen3_omni

AUDIO_PAD = 151675


def _sizes(model) -> dict:
    return {name: sum(p.numel() for p in part.parameters()) for name, part in model.model.named_children()}


def test_full_dimensions_are_the_released_thinker(tmp_path):
    out = make_qwen3_omni.build(tmp_path / "qwen3-omni")
    config = AutoConfig.from_pretrained(out)
    assert type(config).__name__ == "Qwen3OmniMoeConfig" and not config.enable_audio_output
    with torch.device("meta"):  # shapes only: no memory for 31.7B parameters
        thinker = Qwen3OmniMoeThinkerForConditionalGeneration(config.thinker_config)
    sizes = _sizes(thinker)
    text = sizes["language_model"] + thinker.lm_head.weight.numel()
    assert abs(text - 30.53e9) < 0.01e9  # "30.5B total, 3.3B active": 48 layers x 128 experts
    assert 0.6e9 < sizes["audio_tower"] < 0.7e9  # the audio encoder, 32 layers of 1280
    total = sum(sizes.values()) + thinker.lm_head.weight.numel()
    assert 2 * total < 64 * 2**30  # bf16 weights leave an H200 (141 GB) most of its memory for KV cache
    assert family_for(str(out), None).name == "qwen3-omni"  # from config.json's model_type


def test_our_request_goes_through_the_checkpoints_processor_and_thinker(tmp_path, short_speech_wav):
    out = make_qwen3_omni.build(tmp_path / "tiny", tiny=True)
    family = family_for(str(out), None)
    audio = decode_to_mono16k(str(short_speech_wav[0]))
    request = family.request(None, "en", audio, 16000)  # what the vllm backend hands vLLM
    processor = AutoProcessor.from_pretrained(out)
    clip, rate = request["multi_modal_data"]["audio"]
    inputs = processor(text=[request["prompt"]], audio=[clip], sampling_rate=rate, return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    # One audio placeholder became the encoder's output length: 13 positions per second of audio.
    frames = int(inputs["feature_attention_mask"].sum())
    assert frames == len(audio) // 160
    assert ids.count(AUDIO_PAD) == (frames // 100) * 13 + _tail_tokens(frames % 100)
    start = ids.index(make_qwen3_omni.token_id("<|audio_start|>"))
    assert ids[start + 1] == AUDIO_PAD and ids[start + 1 + ids.count(AUDIO_PAD)] == make_qwen3_omni.token_id(
        "<|audio_end|>")
    assert "English" in processor.tokenizer.decode(ids[start:])  # the instruction follows the audio

    config = AutoConfig.from_pretrained(out)
    torch.manual_seed(0)
    thinker = Qwen3OmniMoeThinkerForConditionalGeneration(config.thinker_config).eval()
    with torch.no_grad():
        generated = thinker.generate(**inputs, max_new_tokens=6, do_sample=False)
    new = generated[0, len(ids):].tolist()
    assert len(new) == 6
    text = family.parse(processor.tokenizer.decode(new, skip_special_tokens=True))
    assert text and all(word.startswith("f") for word in text.split())  # filler words: random weights


def _tail_tokens(frames: int) -> int:
    """The audio encoder's three stride-2 convolutions over the last partial 100-frame window."""
    if frames == 0:
        return 0
    for _ in range(3):
        frames = (frames - 1) // 2 + 1
    return frames
