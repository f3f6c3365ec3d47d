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
    # Text out only: the talker (speech output) is never loaded.
    engine_defaults={"limit_mm_per_prompt": {"audio": 1, "image": 0, "video": 0}},
)
