"""A test double for vLLM's LLMEngine, as the vllm backend drives it (asr_distill/asr/vllm_engine.py's
four functions: start_engine, sampling_params, engine_error, shutdown).

The real engine runs in benchmarks on a GPU machine; this one lets the CPU suite check request
building, output parsing, concurrency, engine servers and failure handling. It "transcribes" by
describing the audio it was sent, so tests can tell which segment an answer belongs to:
`marker <first sample> lasts <seconds> seconds`. A segment whose first sample is negative makes it
"loop" (a repetitive, truncated answer).

Shaped like vLLM 0.26: the engine the backend holds is a front end; the scheduling and "model" run in
an engine core child process, reached over a pipe, and forked as vLLM's is by default
(VLLM_WORKER_MULTIPROC_METHOD=fork): the core holds copies of every descriptor its parent had open. A reader thread hands the core's outputs to
`step()` through a queue, and a monitor thread watches the core: when it dies, the engine is marked
dead and the reader stops without a word, so a `step()` in progress waits forever, exactly as vLLM's
SyncMPClient does when its EngineCore is killed. `engine_error` reads the dead flag and the core's
exit code, as the real one does. A core whose front end is killed lives on (an orphan that would hold
the GPU), until something kills it.

Select it in every process of a job with ASR_DISTILL_VLLM_ENGINE=fake_vllm (and this folder on
PYTHONPATH). Knobs, read from the environment when an engine starts: FAKE_VLLM_STEP_S (seconds per
step, default 0.001), FAKE_VLLM_MAX_AUDIO_S (longer requests are refused as too long, default 30),
FAKE_VLLM_FAIL_AT_STEP (every engine raises at that step: an engine that keeps dying),
FAKE_VLLM_STALL_AT_STEP (the core stops answering at that step, alive: a stalled engine),
FAKE_VLLM_EXIT_AT_STEP (the core process exits at that step: a crashed engine core),
FAKE_VLLM_ADD_S (seconds per add_request: vLLM's input processing, the audio features),
FAKE_VLLM_FAULT_ONCE (a file path: the stall or exit happens in the first engine only, which creates
the file), FAKE_VLLM_START_ERROR (start_engine raises with that message), FAKE_VLLM_START_S
(start_engine takes that long, as a big model's does; with FAKE_VLLM_SLOW_START_ONCE, a file path, only
the first engine does, which creates the file).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import queue
import threading
import time
from types import SimpleNamespace

MAX_AUDIO_S = 30.0


class EngineDeadError(Exception):
    """What vLLM raises for a request sent to an engine whose core is gone."""


def _audio_of(prompt: dict):
    source = prompt.get("encoder_prompt", prompt)
    return source["multi_modal_data"]["audio"]


def _fault_now(step: int, at: int) -> bool:
    if not at or step < at:
        return False
    once = os.environ.get("FAKE_VLLM_FAULT_ONCE")
    if not once:
        return True
    try:
        os.close(os.open(once, os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False  # an earlier engine had the fault; this one runs clean


def _core(conn, max_num_seqs: int, step_s: float, stall_at: int, exit_at: int) -> None:
    """The engine core process: each step advances up to max_num_seqs running requests by one token;
    a request of d seconds of audio finishes after ceil(d) steps."""
    running: dict[str, list] = {}
    waiting: list[str] = []
    steps = 0
    faulted = False
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the front end is gone: like a vLLM engine core, live on holding "the GPU"
            while True:
                time.sleep(3600)
        if message[0] == "add":
            _, rid, steps_left, marker, duration = message
            running[rid] = [steps_left, marker, duration]
            waiting.append(rid)
            continue
        steps += 1
        if not faulted and _fault_now(steps, exit_at):
            os._exit(3)
        if not faulted and _fault_now(steps, stall_at):
            faulted = True
            while True:  # alive, never answering
                time.sleep(3600)
        time.sleep(step_s)
        active = waiting[:max_num_seqs]
        done = []
        for rid in active:
            state = running[rid]
            state[0] -= 1
            if state[0] <= 0:
                del running[rid]
                waiting.remove(rid)
                done.append((rid, state[1], state[2]))
        conn.send(("outputs", len(active), done))


def _output(rid: str, marker: float, duration: float):
    if marker < 0:  # tests mark a segment that makes the model loop
        text, tokens, reason = "la " * 40, [11, 12] * 40, "length"
    else:
        text = f"The original content of this audio is: 'marker {marker:.0f} lasts {duration:.1f} seconds'"
        tokens, reason = list(range(9)), "stop"
    out = SimpleNamespace(text=text, token_ids=tokens, cumulative_logprob=-0.1 * len(tokens), finish_reason=reason)
    return SimpleNamespace(request_id=rid, finished=True, outputs=[out])


class FakeLLMEngine:
    """The front end: add_request / step, as vLLM's LLMEngine. Records what ran together and where."""

    def __init__(self, args: dict):
        self.args = args
        self.max_num_seqs = int(args.get("max_num_seqs", 256))
        self.max_audio_s = float(os.environ.get("FAKE_VLLM_MAX_AUDIO_S", MAX_AUDIO_S))
        self.fail_at = int(os.environ.get("FAKE_VLLM_FAIL_AT_STEP", "0"))
        self.add_s = float(os.environ.get("FAKE_VLLM_ADD_S", "0"))
        self.devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.max_running = 0
        self.steps = 0
        self.requests: list[tuple[str, object, str]] = []  # (prompt text, sampling, request id)
        self.unfinished: set[str] = set()
        self.thread = None
        self.dead = False
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self.core = ctx.Process(target=_core, name="EngineCore_DP0", daemon=True, args=(
            child, self.max_num_seqs, float(os.environ.get("FAKE_VLLM_STEP_S", "0.001")),
            int(os.environ.get("FAKE_VLLM_STALL_AT_STEP", "0")), int(os.environ.get("FAKE_VLLM_EXIT_AT_STEP", "0"))))
        self.core.start()
        child.close()
        self._outputs: queue.Queue = queue.Queue()
        self._reading = True
        threading.Thread(target=self._read, name="EngineCoreOutputQueueThread", daemon=True).start()
        threading.Thread(target=self._monitor, name="MPClientEngineMonitor", daemon=True).start()

    def _read(self) -> None:
        while self._reading:
            if not self._conn.poll(0.05):
                continue
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                return
            self._outputs.put(message)

    def _monitor(self) -> None:
        multiprocessing.connection.wait([self.core.sentinel])
        self.dead = True  # and, as vLLM's client does, the output reader stops without telling step()
        self._reading = False

    def add_request(self, request_id, prompt, params):
        if self.dead:
            raise EngineDeadError("EngineCore encountered an issue. See stack trace (above) for the root cause.")
        self.thread = threading.current_thread().name
        time.sleep(self.add_s)
        audio, rate = _audio_of(prompt)
        duration = len(audio) / rate
        if duration > min(self.max_audio_s, MAX_AUDIO_S):
            raise ValueError(f"prompt is longer than max_model_len ({duration:.1f} s of audio)")
        self.requests.append((prompt.get("prompt", prompt.get("decoder_prompt")), params, request_id))  # no audio
        self.unfinished.add(request_id)
        self._send(("add", request_id, int(duration) + 1, float(audio[0]), duration))

    def _send(self, message) -> None:
        try:
            self._conn.send(message)
        except OSError:  # the core is gone: vLLM's client sends over ZMQ, which drops it without a word
            pass

    def has_unfinished_requests(self):
        return bool(self.unfinished)

    def step(self):
        self.steps += 1
        if self.fail_at and self.steps >= self.fail_at:
            raise RuntimeError(f"fake engine failed at step {self.steps}")
        self._send(("step",))
        _, active, done = self._outputs.get()  # forever, once the core is gone (vLLM 0.26 does the same)
        self.max_running = max(self.max_running, active)
        self.unfinished.difference_update(rid for rid, _, _ in done)
        return [_output(*d) for d in done]


def start_engine(args: dict) -> FakeLLMEngine:
    once = os.environ.get("FAKE_VLLM_SLOW_START_ONCE")
    if not once or not os.path.exists(once):
        if once:
            open(once, "w").close()
        time.sleep(float(os.environ.get("FAKE_VLLM_START_S", "0")))
    if os.environ.get("FAKE_VLLM_START_ERROR"):
        raise RuntimeError(os.environ["FAKE_VLLM_START_ERROR"])
    return FakeLLMEngine(args)


def sampling_params(**kwargs):
    return SimpleNamespace(**kwargs)


def engine_error(engine: FakeLLMEngine):
    if engine.dead:
        engine.core.join(1)  # the monitor saw the core's end: its exit code is a moment away
    code = engine.core.exitcode
    if code is not None:
        return f"engine core process {engine.core.pid} ended ({code})"
    return "engine core dead" if engine.dead else None


def shutdown(engine: FakeLLMEngine) -> None:
    engine.core.kill()
    engine.core.join(5)
