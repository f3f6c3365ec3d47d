"""The loop that owns a vLLM engine, and what it tells its callers when the engine dies.

Layering, one way: `engine_loop` (this: the engine in a thread, its watchdog, its errors) <-
`engine_server` (the loop in a process of its own, shared over a socket) <- `vllm_backend` (segments to
requests, and which of the two a process uses).

The engine is vLLM's synchronous LLMEngine owned by one thread (`EngineLoop.run`): between engine
steps it adds every request queued by any caller, the loop `LLM.generate` runs, so the running batch
is topped up and never drains at the callers' batch boundaries (measured on an H100: 0.99 of raw
`LLM.generate`).

Why a watchdog: vLLM 0.26's LLMEngine runs its engine core in a child process. When that process is
killed (a CUDA fault, an Xid error, the OOM killer), vLLM's own monitor marks the engine dead and shuts
its output thread down without a word, and `step()` waits on that thread forever (measured on an H200:
the README command hung until the machine's limit). So a second thread asks the engine module every
`WATCH_S` whether the engine is still alive (`engine_error`: for vLLM, its engine core processes and
its dead flag), and also fails the engine when it holds requests and no step has returned for
`stall_s`. Either way every request held or queued fails with EngineDiedError, at once.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from asr_distill.config import InferenceConfig

log = logging.getLogger(__name__)

# Requests added between two engine steps at most: adding one runs vLLM's input processing (the
# audio feature extractor), so a long queue is taken in slices and results keep flowing meanwhile.
_TAKE_PER_STEP = 256
WATCH_S = 0.25  # how often the watchdog looks at the engine


class EngineDiedError(Exception):
    """The engine that held a request is gone (its process died, it failed a step, or it stalled)."""


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


def engine_args(cfg: InferenceConfig, family) -> dict[str, Any]:
    """vLLM's EngineArgs for a config and model family (what makes two engines the same engine)."""
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


class EngineLoop:
    """Owns an engine: `submit` from any thread queues a request; `run` (one thread) adds queued
    requests between steps and resolves each request's future with its EngineOutput; a watchdog
    thread fails them all when the engine dies or stalls."""

    def __init__(self, sampling_params, engine_error: Optional[Callable[[Any], Optional[str]]] = None,
                 stall_s: float = 30.0):
        self._sampling_params = sampling_params
        self._engine_error = engine_error or (lambda engine: None)
        self._stall_s = stall_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: dict[str, concurrent.futures.Future] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._progress_at = time.monotonic()  # the last step that returned (or the first request after idle)
        self.died: Optional[str] = None
        self._refusal: Optional[BaseException] = None  # what a submit gets once the loop is done
        self.on_death: Optional[Callable[[str], None]] = None  # told before any caller hears of it
        self.after_death: Optional[Callable[[str], None]] = None  # told once every caller has

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
            except Exception as err:  # noqa: BLE001 - this request only (too long, bad input) ...
                reason = self._engine_error(engine)
                if reason is not None:  # ... unless the engine is gone (vLLM refuses with EngineDeadError)
                    future.set_exception(EngineDiedError(reason))
                    self._die(reason)
                    return
                future.set_exception(err)
                continue
            with self._lock:
                self._pending[request_id] = future
            self._progress_at = time.monotonic()  # taking requests is progress (vLLM's input processing)

    def run(self, engine) -> None:
        """Until stop(), or the engine's death (every request held or queued then fails with
        EngineDiedError). A step that never returns is left to the watchdog."""
        self._progress_at = time.monotonic()  # requests queued while the engine started have waited, not stalled
        threading.Thread(target=self._watch, args=(engine,), name="vllm-engine-watch", daemon=True).start()
        while not self._stop.is_set() and self.died is None:
            if not self._pending:
                self._progress_at = time.monotonic()
            self._take_queued(engine, block=not self._pending)
            if not self._pending or self.died is not None:
                continue
            try:
                outputs = engine.step()
            except Exception as err:  # noqa: BLE001 - the engine is gone: every waiting caller hears it
                self._die(f"vLLM engine failed a step: {type(err).__name__}: {err}")
                return
            self._progress_at = time.monotonic()
            for out in outputs:
                if out.finished:
                    self._resolve(out)

    def _resolve(self, out) -> None:
        with self._lock:
            future = self._pending.pop(out.request_id, None)
        if future is None:
            return
        try:
            future.set_result(EngineOutput.of(out))
        except ValueError as err:
            future.set_exception(err)
        except concurrent.futures.InvalidStateError:
            pass  # failed by the watchdog meanwhile

    def _watch(self, engine) -> None:
        while not self._stop.is_set() and self.died is None:
            time.sleep(WATCH_S)
            reason = self._engine_error(engine)
            held = len(self._pending)
            if reason is None and held and time.monotonic() - self._progress_at > self._stall_s:
                reason = (f"the vLLM engine stalled: no step returned for {self._stall_s:g} s while it held "
                          f"{held} requests (vllm.stall_s)")
            if reason is not None:
                self._die(reason)
                return

    def _die(self, reason: str) -> None:
        with self._lock:
            if self.died is not None:
                return
            self.died = reason
        if self.on_death:
            self.on_death(reason)
        self.fail_remaining(EngineDiedError(reason))
        if self.after_death:
            self.after_death(reason)

    def fail_remaining(self, error: BaseException) -> None:
        """Every request held or queued fails with `error`, and so does every later submit."""
        with self._lock:
            self._refusal = error
            held, self._pending = list(self._pending.values()), {}
            while not self._queue.empty():
                held.append(self._queue.get_nowait()[3])
        for future in held:
            try:
                future.set_exception(error)
            except concurrent.futures.InvalidStateError:
                pass


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
    """The engine in a thread of this process (share_across_processes: false): no restarts, so a
    death fails the batch with EngineFailedError."""

    def __init__(self, args: dict, request_timeout_s: float = 900.0, stall_s: float = 30.0):
        from asr_distill.asr.vllm_engine import engine_module

        module = engine_module()
        self.args = args
        self._timeout = request_timeout_s
        self._loop = EngineLoop(module.sampling_params, module.engine_error, stall_s)
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
