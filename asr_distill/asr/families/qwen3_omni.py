"""Qwen3-Omni (thinker only: audio in, text out): `<|audio_start|><|audio_pad|><|audio_end|>`."""

from asr_distill.asr.families import ModelFamily
from asr_distill.asr.families.qwen2_audio import parse as _strip_wrapper


def parse(text: str) -> str:
    # Instruct checkpoints answer directly; a stray think block from a Thinking checkpoint is dropped.
    if "</think>" in text:
        text = text.split("</think>", 1)[1]
    return _strip_wrapper(text)


FAMILY = ModelFamily(
    name="qwen3-omni",
    default_model="Qwen/Qwen3-Omni-30B-A3B-Instruct",
    template=("<|im_start|>system\nYou are a speech recognition model.<|im_end|>\n"
              "<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|>{instruction}<|im_end|>\n"
              "<|im_start|>assistant\n"),
    default_instruction="Transcribe the audio into text exactly. Reply with the transcript only.",
    parse=parse,
    # Text out only: the talker (speech output) is never loaded. Images stay allowed (1 per prompt, never
    # sent): with image and video both 0, vLLM 0.26 skips the vision tower and leaves the thinker's
    # deepstack buffers on the meta device, and the engine dies at its first compile ("Tensor on device
    # meta is not on the expected device cuda:0", H200 2026-12-02).
    engine_defaults={"limit_mm_per_prompt": {"audio": 1, "image": 1, "video": 0}},
)
