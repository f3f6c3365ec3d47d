"""vLLM backend: segments in, one request each, into an engine whose scheduler batches continuously.

The engine runs in an `EngineLoop` (`engine_loop`): with `share_across_processes` (the default) in an
engine server process per GPU (`engine_server`), fed by every SDK worker process on the machine;
otherwise in a thread of the calling process (`LocalEngine`). `shared_engines` is the one place that
chooses. A request that vLLM refuses (longer than max_model_len, say) fails alone; an engine that dies
fails (or, through the server, retries) every request it held.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
from typing import Any, Sequence, Union

from asr_distill.asr import IsolatingBackend, Transcription
from asr_distill.asr.engine_loop import EngineOutput, LocalEngine, engine_args
from asr_distill.asr.engine_server import RemoteEngines
from asr_distill.asr.families import family_for
from asr_distill.asr.quality import quality_signals
from asr_distill.config import InferenceConfig
from asr_distill.records import SAMPLE_RATE, Segment

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 512
_MIN_NEW_TOKENS = 4


def max_tokens_for(cfg: InferenceConfig, audio_s: float) -> int:
    cap = cfg.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    if cfg.max_new_tokens_per_s:
        cap = min(cap, max(_MIN_NEW_TOKENS, math.ceil(cfg.max_new_tokens_per_s * audio_s)))
    return cap


class VllmBackend(IsolatingBackend):
    # Request-level errors (vLLM raises ValueError for a prompt longer than max_model_len, for example);
    # anything else means the engine itself is in trouble and fails the batch.
    recoverable_errors = (ValueError,)

    def __init__(self, cfg: InferenceConfig, engines=None):
        self._cfg = cfg
        self._family = family_for(cfg.model, cfg.model_family)
        self.model_name = cfg.model or self._family.default_model
        self.prompt = cfg.prompt or self._family.default_instruction
        self._ids = itertools.count()
        self._engines = engines or LocalEngine(engine_args(cfg, self._family), cfg.request_timeout_s,
                                               cfg.vllm.stall_s)

    @property
    def engines(self):
        return self._engines

    def request(self, segment: Segment) -> dict:
        return self._family.request(self._cfg.prompt, segment.language or self._cfg.language,
                                    segment.audio, SAMPLE_RATE, segment.hints or ())

    def sampling_kwargs(self, segment: Segment) -> dict:
        cfg = self._cfg
        max_tokens = max_tokens_for(cfg, len(segment.audio) / SAMPLE_RATE)
        if self._family.max_new_tokens:
            max_tokens = min(max_tokens, self._family.max_new_tokens)
        return dict(temperature=cfg.temperature, top_p=cfg.top_p, repetition_penalty=cfg.repetition_penalty,
                    max_tokens=max_tokens, seed=cfg.seed, ignore_eos=cfg.ignore_eos, logprobs=0)

    def _transcription(self, segment: Segment, out: EngineOutput) -> Transcription:
        text = self._family.parse(out.text)
        signals = quality_signals(text, out.token_ids, out.cumulative_logprob, out.finish_reason)
        if segment.language or self._cfg.language:
            signals["language"] = segment.language or self._cfg.language
        return Transcription(text=text, signals=signals)

    def transcribe_batch(self, segments: Sequence[Segment]) -> list[Union[Transcription, BaseException]]:
        """All segments go to the engine at once; each result is its transcription or its own error."""
        requests = [(f"{s.segment_id}#{next(self._ids)}", self.request(s), self.sampling_kwargs(s))
                    for s in segments]
        outputs = self._engines.generate_all(requests)
        return [self._transcription(s, o) if isinstance(o, EngineOutput) else o for s, o in zip(segments, outputs)]

    def take_restarts(self) -> int:
        """Engine restarts since the last call (the Beam handler counts them)."""
        return self._engines.take_restarts()

    # Request errors come back in place already; a batch-level error means the engine is unwell.
    transcribe_segments = transcribe_batch


_ENGINES: dict[str, Any] = {}
_ENGINES_LOCK = threading.Lock()


def shared_engines(cfg: InferenceConfig):
    """One set of engines per process and engine arguments, whoever asks (RunInference instances,
    pipelines with different sampling settings, benchmarks): the engine servers of the machine, or an
    engine in this process."""
    args = engine_args(cfg, family_for(cfg.model, cfg.model_family))
    shared = cfg.share_across_processes
    key = json.dumps([shared, cfg.model_copies, args], sort_keys=True, default=str)
    with _ENGINES_LOCK:
        if key not in _ENGINES:
            if shared:
                _ENGINES[key] = RemoteEngines.for_config(cfg)
            else:
                _ENGINES[key] = LocalEngine(args, cfg.request_timeout_s, cfg.vllm.stall_s)
        return _ENGINES[key]


def shared_backend(cfg: InferenceConfig) -> VllmBackend:
    return VllmBackend(cfg, engines=shared_engines(cfg))
