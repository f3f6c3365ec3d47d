"""Model families for the vllm backend: how to ask a model for a transcript and read its answer.

A family is one module with a `FAMILY` object; adding a model is adding a module and a line below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

LANGUAGE_NAMES = {
    "en": "English", "zh": "Chinese", "yue": "Cantonese", "ja": "Japanese", "ko": "Korean", "de": "German",
    "fr": "French", "es": "Spanish", "it": "Italian", "pt": "Portuguese", "ru": "Russian", "ar": "Arabic",
    "nl": "Dutch", "tr": "Turkish", "vi": "Vietnamese", "th": "Thai", "id": "Indonesian", "hi": "Hindi",
}


@dataclass(frozen=True)
class ModelFamily:
    name: str
    default_model: str
    # Chat prompt around one audio and an instruction; the audio placeholder is the model's own.
    template: str
    default_instruction: str
    parse: Callable[[str], str]
    engine_defaults: dict = field(default_factory=dict)
    # A family whose prompt is not one chat turn around the audio (an encoder-decoder model) builds
    # its requests itself: (configured prompt, language, audio, rate, term hints) -> vLLM prompt dict.
    build_request: Optional[Callable[[Optional[str], Optional[str], Any, int, Sequence[str]], dict]] = None
    max_new_tokens: Optional[int] = None  # the model's own output limit, if any

    def instruction(self, template: Optional[str], language: Optional[str]) -> str:
        text = template or self.default_instruction
        name = LANGUAGE_NAMES.get(language or "", language or "")
        if "{language}" in text:
            return text.replace("{language}", name or "the spoken language").strip()
        return f"{text} The speech is in {name}." if name else text

    def prompt(self, instruction: str) -> str:
        return self.template.format(instruction=instruction)

    def request(self, template: Optional[str], language: Optional[str], audio, rate: int,
                hints: Sequence[str] = ()) -> dict:
        """The vLLM prompt for one segment: the configured prompt (or the family's), the language, and
        the glossary terms the retriever found likely in it (`hints`), named in the instruction."""
        if self.build_request:
            return self.build_request(template, language, audio, rate, hints)
        instruction = self.instruction(template, language)
        if hints:
            instruction += f" Terms that may occur, as they are spelled: {', '.join(hints)}."
        return {"prompt": self.prompt(instruction), "multi_modal_data": {"audio": (audio, rate)}}


def family_named(name: str) -> ModelFamily:
    from asr_distill.asr.families import qwen2_audio, qwen3_omni, whisper

    families = {f.name: f for f in (qwen2_audio.FAMILY, qwen3_omni.FAMILY, whisper.FAMILY)}
    if name not in families:
        raise ValueError(f"unknown model family {name!r} (known: {', '.join(sorted(families))})")
    return families[name]


# Hugging Face `model_type`s of the families, for a local model directory whose name says nothing.
_MODEL_TYPES = {"whisper": "whisper", "qwen2_audio": "qwen2-audio", "qwen3_omni_moe": "qwen3-omni",
                "qwen3_omni_moe_thinker": "qwen3-omni"}


def _local_model_type(model: Optional[str]) -> Optional[str]:
    import json
    from pathlib import Path

    config = Path(model or "") / "config.json"
    try:
        return json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def family_for(model: Optional[str], family: Optional[str]) -> ModelFamily:
    """The named family; else a local model directory's `model_type`; else what the model's name
    points to (`openai/whisper-large-v3`, `/models/qwen3-omni`); Qwen2-Audio when nothing says."""
    if family:
        return family_named(family)
    local = _MODEL_TYPES.get(_local_model_type(model) or "")
    if local:
        return family_named(local)
    lowered = (model or "").lower().replace("_", "-")
    if "qwen3-omni" in lowered or "qwen3omni" in lowered:
        return family_named("qwen3-omni")
    if "whisper" in lowered:
        return family_named("whisper")
    return family_named("qwen2-audio")
