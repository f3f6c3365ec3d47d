"""vLLM backend: one in-process engine, fed concurrently from every thread that calls it.

Every call of `transcribe_batch` (one per Beam batch, from any number of bundles/threads at once)
submits its segments as separate requests to the same engine, whose scheduler batches all requests in
flight continuously. So the GPU does not drain at batch boundaries: while one bundle waits for its last
long segment, the others' requests keep the batch full. A bad request (too long for max_model_len, say)
fails alone. One engine per process (see `shared_backend`); Beam's `share_model_across_processes`
makes it one per machine.

Two drivers (`vllm.driver`): 'step' (default) owns vLLM's LLMEngine in one thread and adds queued
requests between engine steps, the loop `LLM.generate` runs; 'async' runs AsyncLLM on an event loop.
Measured on an H100 (benchmarks/RESULTS.md): step 0.99 of raw `LLM.generate`, async 0.80-0.85.
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


def _start_llm_engine(args: dict):
    from vllm.engine.arg_utils import EngineArgs
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.llm_engine import LLMEngine

    return LLMEngine.from_engine_args(EngineArgs(**args), usage_context=UsageContext.LLM_CLASS)


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

    async def _final_output(self, request_id: str, prompt: dict, params):
        final = None
        async for output in self.engine.generate(prompt, params, request_id):
            final = output
        return final

    def generate(self, request_id: str, prompt: dict, params) -> concurrent.futures.Future:
        """A future of the request's final RequestOutput (the same call as SteppingHost's)."""
        return self.submit(self._final_output(request_id, prompt, params))

    def close(self) -> None:
        shutdown = getattr(self.engine, "shutdown", None)
        if shutdown:
            shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


class SteppingHost:
    """vLLM's synchronous LLMEngine, owned by one thread: between engine steps it adds every request
    queued by any caller, so the running batch is topped up continuously and never drains at the
    callers' batch boundaries. Results come back as futures of the final RequestOutput."""

    def __init__(self, args: dict, factory: Callable[[dict], Any]):
        import queue

        self.args = args
        self._queue: "queue.SimpleQueue" = queue.SimpleQueue()
        self._empty = queue.Empty
        self._pending: dict[str, concurrent.futures.Future] = {}
        self._stop = threading.Event()
        started: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(factory, started), name="vllm-engine-step",
                                        daemon=True)
        self._thread.start()
        self.engine = started.result()

    def generate(self, request_id: str, prompt: dict, params) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((request_id, prompt, params, future))
        return future

    def _take_queued(self, engine, block: bool) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.05) if block else self._queue.get_nowait()
            except self._empty:
                return
            block = False
            request_id, prompt, params, future = item
            try:
                engine.add_request(request_id, prompt, params)
            except ValueError as err:  # this request only (too long, bad input)
                future.set_exception(err)
                continue
            self._pending[request_id] = future

    def _run(self, factory, started) -> None:
        try:
            engine = factory(self.args)
        except BaseException as err:  # noqa: BLE001 - handed to the constructor's caller
            started.set_exception(err)
            return
        started.set_result(engine)
        while not self._stop.is_set():
            self._take_queued(engine, block=not self._pending)
            if not self._pending:
                continue
            try:
                outputs = engine.step()
            except Exception as err:  # noqa: BLE001 - the engine is gone: every waiting caller hears it
                for future in self._pending.values():
                    future.set_exception(RuntimeError(f"vLLM engine failed: {err}"))
                self._pending.clear()
                continue
            for out in outputs:
                if out.finished and out.request_id in self._pending:
                    self._pending.pop(out.request_id).set_result(out)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        shutdown = getattr(getattr(self.engine, "engine_core", None), "shutdown", None)
        if shutdown:
            shutdown()


_HOSTS: dict[str, Any] = {}
_HOSTS_LOCK = threading.Lock()


def make_host(args: dict, driver: str, factory: Optional[Callable[[dict], Any]] = None):
    if driver == "step":
        return SteppingHost(args, factory or _start_llm_engine)
    return EngineHost(args, factory or _start_async_llm)


def shared_host(args: dict, driver: str = "async", factory: Optional[Callable[[dict], Any]] = None):
    """One engine per process and engine arguments, whoever asks: RunInference instances, pipelines
    with different sampling settings, benchmarks."""
    key = json.dumps([driver, args], sort_keys=True, default=str)
    with _HOSTS_LOCK:
        if key not in _HOSTS:
            _HOSTS[key] = make_host(args, driver, factory)
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
        self._host = host or make_host(engine_args(cfg, self._family), cfg.vllm.driver, engine_factory)

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

    def _transcription(self, segment: Segment, request_id: str, final) -> Transcription:
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
        ids = [f"{s.segment_id}#{next(self._ids)}" for s in segments]
        futures = [self._host.generate(i, self.request(s), self.sampling_params(s)) for i, s in zip(ids, segments)]
        results: list[Union[Transcription, BaseException]] = []
        for seg, request_id, future in zip(segments, ids, futures):
            try:
                results.append(self._transcription(seg, request_id,
                                                   future.result(timeout=self._cfg.request_timeout_s)))
            except self.recoverable_errors as err:
                results.append(err)
        return results

    # Request errors come back in place already; a batch-level error means the engine is unwell.
    transcribe_segments = transcribe_batch

def shared_backend(cfg: InferenceConfig) -> VllmBackend:
    """A backend on this process's engine for the config's engine arguments (started on first use)."""
    family = family_for(cfg.model, cfg.model_family)
    return VllmBackend(cfg, host=shared_host(engine_args(cfg, family), cfg.vllm.driver))
