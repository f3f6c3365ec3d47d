"""Model families for the vllm backend: how to ask a model for a transcript and read its answer.

A family is one module with a `FAMILY` object; adding a model is adding a module and a line below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

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

    def instruction(self, template: Optional[str], language: Optional[str]) -> str:
        text = template or self.default_instruction
        name = LANGUAGE_NAMES.get(language or "", language or "")
        if "{language}" in text:
            return text.replace("{language}", name or "the spoken language").strip()
        return f"{text} The speech is in {name}." if name else text

    def prompt(self, instruction: str) -> str:
        return self.template.format(instruction=instruction)


def family_named(name: str) -> ModelFamily:
    from asr_distill.asr.families import qwen2_audio, qwen3_omni

    families = {f.name: f for f in (qwen2_audio.FAMILY, qwen3_omni.FAMILY)}
    if name not in families:
        raise ValueError(f"unknown model family {name!r} (known: {', '.join(sorted(families))})")
    return families[name]


def family_for(model: Optional[str], family: Optional[str]) -> ModelFamily:
    """The named family, or the one the model's name points to (Qwen2-Audio when it says nothing)."""
    if family:
        return family_named(family)
    lowered = (model or "").lower().replace("_", "-")
    if "qwen3-omni" in lowered or "qwen3omni" in lowered:
        return family_named("qwen3-omni")
    return family_named("qwen2-audio")
