"""A test double with the interface of vLLM's AsyncLLM (generate -> async iterator of RequestOutput).

The real engine runs in benchmarks/gpu_handler.py on a GPU machine; this one lets the CPU suite check
request building, output parsing, concurrency and failure handling. It "transcribes" by describing
the audio it was sent, so tests can tell which segment an answer belongs to.
"""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

MAX_AUDIO_S = 30.0


class FakeAsyncLLM:
    def __init__(self, args: dict, seconds_per_audio_s: float = 0.002):
        self.args = args
        self.delay = seconds_per_audio_s
        self.requests: list[tuple[dict, object, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self.loop_thread = threading.current_thread().name

    async def generate(self, prompt: dict, sampling_params, request_id: str):
        assert threading.current_thread().name == self.loop_thread, "generate must run on the engine loop"
        audio, rate = prompt["multi_modal_data"]["audio"]
        duration = len(audio) / rate
        if duration > MAX_AUDIO_S:
            raise ValueError(f"prompt is longer than max_model_len ({duration:.1f} s of audio)")
        with self._lock:
            self.requests.append((prompt, sampling_params, request_id))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay * duration)
        finally:
            with self._lock:
                self.in_flight -= 1
        marker = float(audio[0])
        if marker < 0:  # tests mark a segment that makes the model loop
            text, tokens, reason = "la " * 40, [11, 12] * 40, "length"
        else:
            text = f"The original content of this audio is: 'marker {marker:.0f} lasts {duration:.1f} seconds'"
            tokens = list(range(9))
            reason = "stop"
        out = SimpleNamespace(text=text, token_ids=tokens, cumulative_logprob=-0.9 * len(tokens) / 9,
                              finish_reason=reason)
        yield SimpleNamespace(request_id=request_id, finished=True, outputs=[out])

    def shutdown(self):
        pass


def sampling(**kwargs):
    return SimpleNamespace(**kwargs)


class FakeLLMEngine:
    """vLLM LLMEngine's stepping interface: add_request, has_unfinished_requests, step.

    Each step advances every running request by one token; a request of d seconds of audio finishes
    after ceil(d) steps. Records how many requests ran together in a step."""

    def __init__(self, args: dict):
        self.args = args
        self.running: dict[str, list] = {}
        self.max_running = 0
        self.requests: list[tuple[dict, object, str]] = []
        self.thread = None

    def add_request(self, request_id, prompt, params):
        self.thread = threading.current_thread().name
        audio, rate = prompt["multi_modal_data"]["audio"]
        duration = len(audio) / rate
        if duration > MAX_AUDIO_S:
            raise ValueError(f"prompt is longer than max_model_len ({duration:.1f} s of audio)")
        self.requests.append((prompt, params, request_id))
        self.running[request_id] = [int(duration) + 1, float(audio[0]), duration]

    def has_unfinished_requests(self):
        return bool(self.running)

    def step(self):
        import time

        time.sleep(0.001)
        self.max_running = max(self.max_running, len(self.running))
        done = []
        for rid, state in list(self.running.items()):
            state[0] -= 1
            if state[0] <= 0:
                del self.running[rid]
                text = f"The original content of this audio is: 'marker {state[1]:.0f} lasts {state[2]:.1f} seconds'"
                out = SimpleNamespace(text=text, token_ids=list(range(9)), cumulative_logprob=-0.9,
                                      finish_reason="stop")
                done.append(SimpleNamespace(request_id=rid, finished=True, outputs=[out]))
        return done
