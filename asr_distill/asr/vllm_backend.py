"""vLLM backend: segments in, one request each, into an engine whose scheduler batches continuously.

The engine is vLLM's synchronous LLMEngine owned by one thread (`EngineLoop`): between engine steps it
adds every request queued by any caller, the loop `LLM.generate` runs, so the running batch is topped
up and never drains at the callers' batch boundaries (measured on an H100: 0.99 of raw
`LLM.generate`). With `share_across_processes` (the default) that loop runs in an engine server
process per GPU (`engine_server`), fed by every SDK worker process on the machine; otherwise in a
thread of the calling process. A request that vLLM refuses (longer than max_model_len, say) fails
alone; an engine that dies fails (or, in the server, retries) every request it held.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import logging
import math
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

from asr_distill.asr import IsolatingBackend, Transcription
from asr_distill.asr.families import ModelFamily, family_for
from asr_distill.asr.quality import quality_signals
from asr_distill.asr.vllm_engine import engine_module
from asr_distill.config import InferenceConfig
from asr_distill.records import SAMPLE_RATE, Segment

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 512
_MIN_NEW_TOKENS = 4
# Requests added between two engine steps at most: adding one runs vLLM's input processing (the
# audio feature extractor), so a long queue is taken in slices and results keep flowing meanwhile.
_TAKE_PER_STEP = 256


class EngineDiedError(Exception):
    """The engine that held a request is gone (its process died or it failed a step)."""


class EngineFailedError(Exception):
    """The engine could not be started, or kept dying: the job cannot go on.

    Deliberately not a RuntimeError: the inference stage turns those into failure records per segment
    and goes on, which for a dead engine would mean millions of identical records."""


@dataclass(frozen=True)
class EngineOutput:
    """What the backend needs of a finished vLLM request (plain data: it crosses processes)."""

    text: str
    token_ids: tuple
    cumulative_logprob: Optional[float]
    finish_reason: Optional[str]

    @classmethod
    def of(cls, request_output) -> "EngineOutput":
        if not request_output.outputs:
            raise ValueError(f"engine returned no output for {request_output.request_id}")
        out = request_output.outputs[0]
        return cls(out.text, tuple(out.token_ids), out.cumulative_logprob, out.finish_reason)


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


class EngineLoop:
    """Owns an engine: `submit` from any thread queues a request; `run` (one thread) adds queued
    requests between steps and resolves each request's future with its EngineOutput."""

    def __init__(self, sampling_params):
        self._sampling_params = sampling_params
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: dict[str, concurrent.futures.Future] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.died: Optional[str] = None
        self._refusal: Optional[BaseException] = None  # what a submit gets once the loop is done
        self.on_death: Optional[Callable[[str], None]] = None  # told before any caller hears of it

    @property
    def busy(self) -> bool:
        return bool(self._pending) or not self._queue.empty()

    def submit(self, request_id: str, prompt: dict, sampling: dict) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._refusal is not None:
                future.set_exception(type(self._refusal)(str(self._refusal)))
            else:
                self._queue.put((request_id, prompt, sampling, future))
        return future

    def stop(self) -> None:
        self._stop.set()

    def _take_queued(self, engine, block: bool) -> None:
        for _ in range(_TAKE_PER_STEP):
            try:
                item = self._queue.get(timeout=0.05) if block else self._queue.get_nowait()
            except queue.Empty:
                return
            block = False
            request_id, prompt, sampling, future = item
            try:
                engine.add_request(request_id, prompt, self._sampling_params(**sampling))
            except Exception as err:  # noqa: BLE001 - this request only (too long, bad input)
                future.set_exception(err)
                continue
            self._pending[request_id] = future

    def run(self, engine) -> None:
        """Until stop() or a failed step (then every request held or queued fails with EngineDiedError)."""
        while not self._stop.is_set():
            self._take_queued(engine, block=not self._pending)
            if not self._pending:
                continue
            try:
                outputs = engine.step()
            except Exception as err:  # noqa: BLE001 - the engine is gone: every waiting caller hears it
                self._die(f"vLLM engine failed a step: {type(err).__name__}: {err}")
                return
            for out in outputs:
                if out.finished and out.request_id in self._pending:
                    future = self._pending.pop(out.request_id)
                    try:
                        future.set_result(EngineOutput.of(out))
                    except ValueError as err:
                        future.set_exception(err)

    def _die(self, reason: str) -> None:
        if self.on_death:
            self.on_death(reason)
        self.died = reason
        self.fail_remaining(EngineDiedError(reason))

    def fail_remaining(self, error: BaseException) -> None:
        """Every request held or queued fails with `error`, and so does every later submit."""
        with self._lock:
            self._refusal = error
            queued = []
            while not self._queue.empty():
                queued.append(self._queue.get_nowait()[3])
        for future in [*self._pending.values(), *queued]:
            future.set_exception(error)
        self._pending.clear()


def wait_all(futures: Sequence[concurrent.futures.Future], timeout_s: float) -> list:
    """Each future's result, or its exception in place (a request that fails, fails alone)."""
    results: list = []
    for future in futures:
        try:
            results.append(future.result(timeout=timeout_s))
        except (ValueError, TimeoutError, concurrent.futures.TimeoutError, EngineDiedError) as err:
            results.append(err)
    return results


class LocalEngine:
    """The engine in a thread of this process (share_across_processes: false)."""

    def __init__(self, args: dict, request_timeout_s: float = 900.0):
        module = engine_module()
        self.args = args
        self._timeout = request_timeout_s
        self._loop = EngineLoop(module.sampling_params)
        self._module = module
        started: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(started,), name="vllm-engine-step", daemon=True)
        self._thread.start()
        self.engine = started.result()

    def _run(self, started) -> None:
        try:
            engine = self._module.start_engine(self.args)
        except BaseException as err:  # noqa: BLE001 - handed to the constructor's caller
            started.set_exception(err)
            return
        started.set_result(engine)
        self._loop.run(engine)

    def generate_all(self, requests: Sequence[tuple[str, dict, dict]]) -> list:
        results = wait_all([self._loop.submit(*r) for r in requests], self._timeout)
        for r in results:
            if isinstance(r, EngineDiedError):
                raise EngineFailedError(str(r))
        return results

    def take_restarts(self) -> int:
        return 0

    def close(self) -> None:
        self._loop.stop()
        self._thread.join(timeout=10)
        self._module.shutdown(self.engine)


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
        self._engines = engines or LocalEngine(engine_args(cfg, self._family), cfg.request_timeout_s)

    @property
    def engines(self):
        return self._engines

    def request(self, segment: Segment) -> dict:
        return self._family.request(self._cfg.prompt, segment.language or self._cfg.language,
                                    segment.audio, SAMPLE_RATE)

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
                from asr_distill.asr.engine_server import RemoteEngines

                _ENGINES[key] = RemoteEngines.for_config(cfg)
            else:
                _ENGINES[key] = LocalEngine(args, cfg.request_timeout_s)
        return _ENGINES[key]


def shared_backend(cfg: InferenceConfig) -> VllmBackend:
    return VllmBackend(cfg, engines=shared_engines(cfg))
