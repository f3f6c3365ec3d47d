"""Whisper (OpenAI's encoder-decoder): the audio goes to the encoder, and the decoder starts from
`<|startoftranscript|><|xx|><|transcribe|><|notimestamps|>`, the prompt OpenAI's own decoding uses
for a transcript without timestamps. vLLM takes that as an explicit encoder/decoder prompt.

The configured `prompt`, if any, is Whisper's "previous text" (`<|startofprev|>`), as faster-whisper's
`initial_prompt`: spelling hints and style, not an instruction. Without a language (row or config) the
decoder starts from `<|startoftranscript|>` alone and Whisper picks the language token itself.
"""

from __future__ import annotations

from typing import Optional, Sequence

from asr_distill.asr.families import ModelFamily

INSTRUCTION = "transcribe"
# Whisper's text decoder has 448 positions; the start tokens take 4 of them.
MAX_TARGET_POSITIONS = 448


def decoder_prompt(language: Optional[str], previous: Optional[str] = None) -> str:
    start = "<|startoftranscript|>"
    if language:
        start += f"<|{language}|><|transcribe|><|notimestamps|>"
    return (f"<|startofprev|> {previous.strip()}" if previous else "") + start


def build_request(template: Optional[str], language: Optional[str], audio, rate: int, hints: Sequence[str] = ()
                  ) -> dict:
    """The configured prompt, then the term hints (as faster-whisper's `hotwords`), as previous text."""
    parts = [template] if template and template != INSTRUCTION else []
    if hints:
        parts.append(", ".join(hints))
    previous = " ".join(parts) or None
    return {"encoder_prompt": {"prompt": "", "multi_modal_data": {"audio": (audio, rate)}},
            "decoder_prompt": decoder_prompt(language, previous)}


def parse(text: str) -> str:
    # vLLM drops special tokens when it detokenizes; Whisper puts a space before the first word.
    return " ".join(text.split())


FAMILY = ModelFamily(
    name="whisper",
    default_model="openai/whisper-large-v3",
    template="",
    default_instruction=INSTRUCTION,
    parse=parse,
    engine_defaults={"max_model_len": MAX_TARGET_POSITIONS, "limit_mm_per_prompt": {"audio": 1}},
    build_request=build_request,
    max_new_tokens=MAX_TARGET_POSITIONS - 8,
)
