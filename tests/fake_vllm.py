"""A test double for vLLM's LLMEngine, as the vllm backend drives it (asr_distill/asr/vllm_engine.py's
three functions: start_engine, sampling_params, shutdown).

The real engine runs in benchmarks on a GPU machine; this one lets the CPU suite check request
building, output parsing, concurrency, engine servers and failure handling. It "transcribes" by
describing the audio it was sent, so tests can tell which segment an answer belongs to:
`marker <first sample> lasts <seconds> seconds`. A segment whose first sample is negative makes it
"loop" (a repetitive, truncated answer).

Select it in every process of a job with ASR_DISTILL_VLLM_ENGINE=fake_vllm (and this folder on
PYTHONPATH). Knobs, read from the environment when an engine starts: FAKE_VLLM_STEP_S (seconds per
step, default 0.001), FAKE_VLLM_MAX_AUDIO_S (longer requests are refused as too long, default 30),
FAKE_VLLM_FAIL_AT_STEP (every engine raises at that step: an engine that keeps dying),
FAKE_VLLM_START_ERROR (start_engine raises with that message), FAKE_VLLM_START_S (start_engine takes
that long, as a big model's does).
"""

from __future__ import annotations

import os
import threading
import time
from types import SimpleNamespace

MAX_AUDIO_S = 30.0


def _audio_of(prompt: dict):
    source = prompt.get("encoder_prompt", prompt)
    return source["multi_modal_data"]["audio"]


class FakeLLMEngine:
    """add_request / step: each step advances up to max_num_seqs running requests by one token; a request
    of d seconds of audio finishes after ceil(d) steps. Records what ran together and where."""

    def __init__(self, args: dict):
        self.args = args
        self.max_num_seqs = int(args.get("max_num_seqs", 256))
        self.step_s = float(os.environ.get("FAKE_VLLM_STEP_S", "0.001"))
        self.max_audio_s = float(os.environ.get("FAKE_VLLM_MAX_AUDIO_S", MAX_AUDIO_S))
        self.fail_at = int(os.environ.get("FAKE_VLLM_FAIL_AT_STEP", "0"))
        self.devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.running: dict[str, list] = {}
        self.waiting: list[str] = []
        self.max_running = 0
        self.steps = 0
        self.requests: list[tuple[str, object, str]] = []  # (prompt text, sampling, request id)
        self.thread = None

    def add_request(self, request_id, prompt, params):
        self.thread = threading.current_thread().name
        audio, rate = _audio_of(prompt)
        duration = len(audio) / rate
        if duration > min(self.max_audio_s, MAX_AUDIO_S):
            raise ValueError(f"prompt is longer than max_model_len ({duration:.1f} s of audio)")
        self.requests.append((prompt.get("prompt", prompt.get("decoder_prompt")), params, request_id))  # no audio
        self.running[request_id] = [int(duration) + 1, float(audio[0]), duration]
        self.waiting.append(request_id)

    def has_unfinished_requests(self):
        return bool(self.running)

    def step(self):
        self.steps += 1
        if self.fail_at and self.steps >= self.fail_at:
            raise RuntimeError(f"fake engine failed at step {self.steps}")
        time.sleep(self.step_s)
        active = self.waiting[:self.max_num_seqs]
        self.max_running = max(self.max_running, len(active))
        done = []
        for rid in active:
            state = self.running[rid]
            state[0] -= 1
            if state[0] <= 0:
                del self.running[rid]
                self.waiting.remove(rid)
                marker, duration = state[1], state[2]
                if marker < 0:  # tests mark a segment that makes the model loop
                    text, tokens, reason = "la " * 40, [11, 12] * 40, "length"
                else:
                    text = f"The original content of this audio is: 'marker {marker:.0f} lasts {duration:.1f} seconds'"
                    tokens, reason = list(range(9)), "stop"
                out = SimpleNamespace(text=text, token_ids=tokens, cumulative_logprob=-0.1 * len(tokens),
                                      finish_reason=reason)
                done.append(SimpleNamespace(request_id=rid, finished=True, outputs=[out]))
        return done


def start_engine(args: dict) -> FakeLLMEngine:
    time.sleep(float(os.environ.get("FAKE_VLLM_START_S", "0")))
    if os.environ.get("FAKE_VLLM_START_ERROR"):
        raise RuntimeError(os.environ["FAKE_VLLM_START_ERROR"])
    return FakeLLMEngine(args)


def sampling_params(**kwargs):
    return SimpleNamespace(**kwargs)


def shutdown(engine) -> None:
    pass
