"""Qwen2-Audio-7B-Instruct: `Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>` in a ChatML user turn."""

import re

from asr_distill.asr.families import ModelFamily

# The instruct model often wraps a transcript: The original content of this audio is: '...'
_WRAPPED = re.compile(
    r"^\s*(?:the\s+)?(?:original\s+content|transcription|transcript)(?:\s+of\s+(?:this|the)\s+audio)?"
    r"(?:\s+is)?\s*[:：]\s*(?P<q>['\"“‘]?)(?P<text>.*?)(?P=q)?\s*$",
    re.IGNORECASE | re.DOTALL)


def parse(text: str) -> str:
    text = text.strip()
    m = _WRAPPED.match(text)
    if m:
        text = m.group("text").strip()
        if text[-1:] in "'\"”’":
            text = text[:-1].rstrip()
    return text


FAMILY = ModelFamily(
    name="qwen2-audio",
    default_model="Qwen/Qwen2-Audio-7B-Instruct",
    template=("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
              "<|im_start|>user\nAudio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n{instruction}<|im_end|>\n"
              "<|im_start|>assistant\n"),
    default_instruction="Transcribe the speech in this audio exactly. Reply with the transcript only.",
    parse=parse,
)
