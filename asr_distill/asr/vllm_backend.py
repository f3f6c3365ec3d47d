"""vLLM backend: one in-process AsyncLLM engine, fed concurrently from every thread that calls it.

Every call of `transcribe_batch` (one per Beam batch, from any number of bundles/threads at once)
submits its segments as separate requests to the same engine, whose scheduler batches all requests in
flight continuously. So the GPU does not drain at batch boundaries: while one bundle waits for its last
long segment, the others' requests keep the batch full. A bad request (too long for max_model_len, say)
fails alone. One engine per process (see `shared_backend`); Beam's `share_model_across_processes`
makes it one per machine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import logging
import math
import threading
from typing import Any, Callable, Optional, Sequence, Union

from asr_distill.asr import IsolatingBackend, Transcription
from asr_distill.asr.families import ModelFamily, family_for
from asr_distill.asr.quality import quality_signals
from asr_distill.config import InferenceConfig
from asr_distill.records import SAMPLE_RATE, Segment

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 512
_MIN_NEW_TOKENS = 4


def engine_args(cfg: InferenceConfig, family: ModelFamily) -> dict[str, Any]:
    v = cfg.vllm
    args = {
        "model": cfg.model or family.default_model,
        "max_model_len": v.max_model_len,
        "gpu_memory_utilization": v.gpu_memory_utilization,
        "tensor_parallel_size": v.tensor_parallel_size,
        "dtype": v.dtype,
        "max_num_seqs": v.max_num_seqs,
        "load_format": v.load_format,
        "enforce_eager": v.enforce_eager,
        "limit_mm_per_prompt": {"audio": 1},
        "seed": cfg.seed if cfg.seed is not None else 0,
        "disable_log_stats": True,
    }
    args.update(family.engine_defaults)
    args.update(v.engine_kwargs)
    return args


def max_tokens_for(cfg: InferenceConfig, audio_s: float) -> int:
    cap = cfg.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    if cfg.max_new_tokens_per_s:
        cap = min(cap, max(_MIN_NEW_TOKENS, math.ceil(cfg.max_new_tokens_per_s * audio_s)))
    return cap


def _vllm_sampling_params(**kwargs):
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(output_kind=RequestOutputKind.FINAL_ONLY, **kwargs)


def _start_async_llm(args: dict):
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    return AsyncLLM.from_engine_args(AsyncEngineArgs(**args))


class EngineHost:
    """An engine and the event-loop thread it runs on; requests from any thread are scheduled there."""

    def __init__(self, args: dict, factory: Callable[[dict], Any]):
        self.args = args
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-engine-loop", daemon=True)
        self._thread.start()
        log.info("starting vLLM engine for %s", args.get("model"))
        # Built on the loop: the engine binds its output handler to the running loop.
        self.engine = self.submit(self._call(factory, args)).result()

    @staticmethod
    async def _call(fn, *args):
        return fn(*args)

    def submit(self, coro) -> "concurrent.futures.Future":
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def close(self) -> None:
        shutdown = getattr(self.engine, "shutdown", None)
        if shutdown:
            shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


_HOSTS: dict[str, EngineHost] = {}
_HOSTS_LOCK = threading.Lock()


def shared_host(args: dict, factory: Optional[Callable[[dict], Any]] = None) -> EngineHost:
    """One engine per process and engine arguments, whoever asks: RunInference instances, pipelines
    with different sampling settings, benchmarks."""
    key = json.dumps(args, sort_keys=True, default=str)
    with _HOSTS_LOCK:
        if key not in _HOSTS:
            _HOSTS[key] = EngineHost(args, factory or _start_async_llm)
        return _HOSTS[key]


class VllmBackend(IsolatingBackend):
    # Request-level errors (vLLM raises ValueError for a prompt longer than max_model_len, for example);
    # anything else means the engine itself is in trouble and fails the batch.
    recoverable_errors = (ValueError,)

    def __init__(self, cfg: InferenceConfig, engine_factory: Optional[Callable[[dict], Any]] = None,
                 sampling_factory: Optional[Callable[..., Any]] = None, host: Optional[EngineHost] = None):
        self._cfg = cfg
        self._family = family_for(cfg.model, cfg.model_family)
        self.model_name = cfg.model or self._family.default_model
        self.prompt = cfg.prompt or self._family.default_instruction
        self._sampling_factory = sampling_factory or _vllm_sampling_params
        self._ids = itertools.count()
        self._host = host or EngineHost(engine_args(cfg, self._family), engine_factory or _start_async_llm)

    @property
    def engine(self):
        return self._host.engine

    def request(self, segment: Segment) -> dict:
        instruction = self._family.instruction(self._cfg.prompt, segment.language or self._cfg.language)
        return {"prompt": self._family.prompt(instruction),
                "multi_modal_data": {"audio": (segment.audio, SAMPLE_RATE)}}

    def sampling_params(self, segment: Segment):
        cfg = self._cfg
        return self._sampling_factory(
            temperature=cfg.temperature, top_p=cfg.top_p, repetition_penalty=cfg.repetition_penalty,
            max_tokens=max_tokens_for(cfg, len(segment.audio) / SAMPLE_RATE), seed=cfg.seed,
            ignore_eos=cfg.ignore_eos, logprobs=0)

    async def _transcribe(self, segment: Segment) -> Transcription:
        request_id = f"{segment.segment_id}#{next(self._ids)}"
        final = None
        async for output in self._host.engine.generate(self.request(segment), self.sampling_params(segment),
                                                  request_id):
            final = output
        if final is None or not final.outputs:
            raise RuntimeError(f"engine returned no output for {request_id}")
        out = final.outputs[0]
        text = self._family.parse(out.text)
        signals = quality_signals(text, out.token_ids, out.cumulative_logprob, out.finish_reason)
        if segment.language or self._cfg.language:
            signals["language"] = segment.language or self._cfg.language
        return Transcription(text=text, signals=signals)

    def transcribe_batch(self, segments: Sequence[Segment]) -> list[Union[Transcription, BaseException]]:
        """All segments go to the engine at once; each result is its transcription or its own error."""
        futures = [self._host.submit(self._transcribe(s)) for s in segments]
        results: list[Union[Transcription, BaseException]] = []
        for future in futures:
            try:
                results.append(future.result(timeout=self._cfg.request_timeout_s))
            except self.recoverable_errors as err:
                results.append(err)
        return results

    # Request errors come back in place already; a batch-level error means the engine is unwell.
    transcribe_segments = transcribe_batch

def shared_backend(cfg: InferenceConfig) -> VllmBackend:
    """A backend on this process's engine for the config's engine arguments (started on first use)."""
    family = family_for(cfg.model, cfg.model_family)
    return VllmBackend(cfg, host=shared_host(engine_args(cfg, family)))
