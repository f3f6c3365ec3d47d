"""faster-whisper (CTranslate2) backend: batched decoding of many segments in one model call.

Uses faster-whisper's own batched path (`BatchedInferencePipeline.forward`) on segments we cut
ourselves, so results match the library's batched transcribe on the same audio.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Optional, Sequence

import numpy as np

from asr_distill.asr import IsolatingBackend, Transcription
from asr_distill.asr.quality import compression_ratio
from asr_distill.config import InferenceConfig
from asr_distill.models import EMBEDDED_MODEL_NAME, embedded_whisper_base
from asr_distill.records import SAMPLE_RATE, Segment


class FasterWhisperBackend(IsolatingBackend):
    recoverable_errors = (ValueError, RuntimeError)

    def __init__(self, cfg: InferenceConfig):
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self._cfg = cfg
        model_dir = cfg.model or str(embedded_whisper_base())
        self.model_name = cfg.model or EMBEDDED_MODEL_NAME
        self.prompt = cfg.prompt
        self._model = WhisperModel(model_dir, device=cfg.device, compute_type=cfg.compute_type,
                                   cpu_threads=cfg.cpu_threads, local_files_only=True)
        self._pipeline = BatchedInferencePipeline(self._model)

    def _options(self, tokenizer, multilingual: bool, hotwords: Optional[str] = None):
        from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

        cfg = self._cfg
        return TranscriptionOptions(
            beam_size=cfg.beam_size, best_of=5, patience=1, length_penalty=1, repetition_penalty=1,
            no_repeat_ngram_size=0, log_prob_threshold=-1.0, no_speech_threshold=0.6,
            compression_ratio_threshold=2.4, condition_on_previous_text=False,
            prompt_reset_on_temperature=0.5, temperatures=[cfg.temperature],
            initial_prompt=cfg.prompt, prefix=None, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]), without_timestamps=True,
            max_initial_timestamp=0.0, word_timestamps=False,
            prepend_punctuations="\"'“¿([{-", append_punctuations="\"'.。,，!！?？:：”)]}、",
            multilingual=multilingual, max_new_tokens=cfg.max_new_tokens, clip_timestamps="0",
            hallucination_silence_threshold=None, hotwords=hotwords)

    def transcribe_batch(self, segments: Sequence[Segment]) -> list[Transcription]:
        # one model call per language and term hints (the retriever's, as `hotwords`: one prompt a call)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, seg in enumerate(segments):
            groups[seg.language or self._cfg.language, seg.hints or ()].append(i)
        results: list[Optional[Transcription]] = [None] * len(segments)
        for (language, hints), idx in groups.items():
            for i, tr in zip(idx, self._transcribe_group([segments[i] for i in idx], language, hints)):
                results[i] = tr
        return results  # type: ignore[return-value]

    def _transcribe_group(self, segments: Sequence[Segment], language: Optional[str], hints: tuple = ()
                          ) -> list[Transcription]:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer

        model = self._model
        detect = language is None and model.model.is_multilingual
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                              language="en" if detect else (language or "en"))
        features = np.stack([pad_or_trim(model.feature_extractor(s.audio)[..., :-1]) for s in segments])
        meta = [{"offset": 0.0, "duration": len(s.audio) / SAMPLE_RATE} for s in segments]
        outputs = self._pipeline.forward(features, tokenizer, meta,
                                         self._options(tokenizer, detect, ", ".join(hints) or None))
        return [self._to_transcription(parts, language) for parts in outputs]

    @staticmethod
    def _to_transcription(parts: list[dict], language: Optional[str]) -> Transcription:
        text = " ".join(p["text"].strip() for p in parts if p["text"].strip())
        signals = {
            "avg_logprob": round(float(parts[0]["avg_logprob"]), 4) if parts else None,
            "no_speech_prob": round(float(parts[0]["no_speech_prob"]), 4) if parts else None,
            "compression_ratio": round(compression_ratio(text), 4),
            "num_tokens": sum(len(p["tokens"]) for p in parts),
        }
        if language:
            signals["language"] = language
        return Transcription(text=text, signals=signals)
