"""The vllm backend against the engine double (tests/fake_vllm.py), in this process."""

import dataclasses
import threading

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from asr_distill.asr import quality
from asr_distill.asr.families import family_for
from asr_distill.asr import vllm_backend
from asr_distill.asr.engine_loop import EngineFailedError
from asr_distill.asr.vllm_backend import VllmBackend, engine_args, max_tokens_for
from asr_distill.config import InferenceConfig, VllmEngineConfig
from asr_distill.records import Segment
from transforms.inference import Transcribe

CFG = InferenceConfig(backend="vllm", model="/models/Qwen2-Audio-7B-Instruct", temperature=0.0, top_p=0.9,
                      max_new_tokens=200, repetition_penalty=1.05, seed=7, share_across_processes=False,
                      vllm=VllmEngineConfig(max_model_len=4096, gpu_memory_utilization=0.8, max_num_seqs=64))


def seg(index, seconds, marker=None, key="file", language=None):
    audio = np.full(int(seconds * 16000), float(index if marker is None else marker), np.float32)
    return Segment(key, index, 0.0, seconds, audio, language=language)


@pytest.fixture(autouse=True)
def fake_engine(monkeypatch):
    monkeypatch.setenv("ASR_DISTILL_VLLM_ENGINE", "fake_vllm")
    monkeypatch.setattr(vllm_backend, "_ENGINES", {})


def backend(cfg=CFG):
    b = VllmBackend(cfg)
    return b, b.engines.engine


def test_engine_arguments_come_from_config():
    b, engine = backend()
    args = engine.args
    assert args["model"] == "/models/Qwen2-Audio-7B-Instruct"
    assert (args["max_model_len"], args["gpu_memory_utilization"], args["max_num_seqs"]) == (4096, 0.8, 64)
    assert args["limit_mm_per_prompt"] == {"audio": 1} and args["tensor_parallel_size"] == 1
    assert args["dtype"] == "bfloat16" and args["seed"] == 7
    omni = engine_args(InferenceConfig(backend="vllm", model="Qwen/Qwen3-Omni-30B-A3B-Instruct"),
                       family_for("Qwen/Qwen3-Omni-30B-A3B-Instruct", None))
    # image 1 keeps vLLM 0.26 from leaving the thinker's deepstack buffers on the meta device (H200 run)
    assert omni["limit_mm_per_prompt"] == {"audio": 1, "image": 1, "video": 0}


def test_requests_carry_the_audio_in_the_model_chat_template():
    b, _ = backend()
    s = seg(3, 5.0, language="de")
    req = b.request(s)
    assert req["prompt"] == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\nTranscribe the speech in this audio exactly. "
        "Reply with the transcript only. The speech is in German.<|im_end|>\n<|im_start|>assistant\n")
    audio, rate = req["multi_modal_data"]["audio"]
    assert audio is s.audio and rate == 16000
    sp = b.sampling_kwargs(s)
    assert (sp["temperature"], sp["top_p"], sp["max_tokens"], sp["repetition_penalty"], sp["seed"],
            sp["logprobs"]) == (0.0, 0.9, 200, 1.05, 7, 0)


def test_qwen3_omni_prompt_and_instruction_template():
    fam = family_for("Qwen/Qwen3-Omni-30B-A3B-Instruct", None)
    p = fam.prompt(fam.instruction("Write down what is said in {language}.", "zh"))
    assert "<|audio_start|><|audio_pad|><|audio_end|>Write down what is said in Chinese.<|im_end|>" in p
    assert fam.parse("<think>hmm</think>\n你好") == "你好"
    assert family_for("x", "qwen3-omni") is fam and family_for("my-finetune", None).name == "qwen2-audio"
    with pytest.raises(ValueError, match="unknown model family"):
        family_for("x", "wav2vec")


@pytest.mark.parametrize("raw, parsed", [
    ("The original content of this audio is: 'Hello there, friend.'", "Hello there, friend."),
    ('Transcription: "Good morning"', "Good morning"),
    ("  plain words  ", "plain words"),
    ("The original content of this audio is: 'It's fine'", "It's fine"),
])
def test_output_parsing_strips_the_wrapper(raw, parsed):
    assert family_for(None, None).parse(raw) == parsed


def test_output_cap_follows_audio_length():
    cfg = InferenceConfig(backend="vllm", max_new_tokens=300, max_new_tokens_per_s=6)
    assert max_tokens_for(cfg, 10.0) == 60 and max_tokens_for(cfg, 0.2) == 4 and max_tokens_for(cfg, 80) == 300
    assert max_tokens_for(InferenceConfig(backend="vllm"), 10.0) == 512


def test_results_signals_and_a_bad_segment_failing_alone():
    b, _ = backend()
    batch = [seg(0, 4.0), seg(1, 31.0), seg(2, 2.0, marker=-1), seg(3, 6.0)]
    out = b.transcribe_segments(batch)
    assert out[0].text == "marker 0 lasts 4.0 seconds" and out[3].text == "marker 3 lasts 6.0 seconds"
    assert isinstance(out[1], ValueError) and "max_model_len" in str(out[1])
    assert out[0].signals == {"avg_logprob": -0.1, "num_tokens": 9, "finish_reason": "stop",
                              "compression_ratio": out[0].signals["compression_ratio"], "max_repeats": 1,
                              "flags": []}
    assert out[2].signals["flags"] == ["repetition", "truncated"]
    assert out[2].signals["max_repeats"] >= 4


def test_quality_flags():
    assert quality.quality_signals("", [], None, "stop")["flags"] == ["empty"]
    assert quality.longest_repeat([1, 2, 3, 4, 5]) == 1
    assert quality.longest_repeat([9, 1, 2, 1, 2, 1, 2]) == 3
    assert quality.compression_ratio("ha " * 50) > quality.MAX_COMPRESSION_RATIO


def test_through_beam_runinference_with_failures():
    """The engine in this process through RunInference: every key back once, the bad one a failure."""
    cfg = InferenceConfig(backend="vllm", batch_size=4, share_across_processes=False, model="m-beam")
    segments = [seg(i, 3.0 + i % 5, key=f"k{i // 10}") for i in range(40)] + [seg(99, 35.0, key="long")]
    with BeamTestPipeline() as p:
        out = p | beam.Create(segments) | Transcribe(cfg)
        texts = out.texts | beam.MapTuple(lambda key, t: (key, t.index, t.text.split()[1]))
        assert_that(texts, equal_to([(f"k{i // 10}", i, str(i)) for i in range(40)]), label="AllKeysBack")
        fails = out.failures | beam.Map(lambda f: (f.key, f.stage, f.segment_index, f.error_type))
        assert_that(fails, equal_to([("long", "inference", 99, "ValueError")]), label="OneFailure")
        assert_that(out.failed_segments, equal_to([("long", 99)]), label="FailedIndex")


def test_configs_differing_only_in_sampling_share_one_engine():
    a = vllm_backend.shared_backend(InferenceConfig(backend="vllm", model="m", temperature=0.0,
                                                    share_across_processes=False))
    b = vllm_backend.shared_backend(InferenceConfig(backend="vllm", model="m", temperature=0.7, ignore_eos=True,
                                                    share_across_processes=False))
    c = vllm_backend.shared_backend(InferenceConfig(backend="vllm", model="m", share_across_processes=False,
                                                    vllm=VllmEngineConfig(max_num_seqs=8)))
    assert a.engines is b.engines and a.engines is not c.engines
    assert a.engines.engine.args["max_num_seqs"] == 256 and c.engines.engine.args["max_num_seqs"] == 8
    assert b.sampling_kwargs(seg(0, 1.0))["temperature"] == 0.7


def test_the_engine_loop_tops_up_the_running_batch_from_many_callers():
    b, engine = backend()
    results = {}

    def bundle(t):
        results[t] = b.transcribe_segments([seg(t * 100 + i, 2.0 + i) for i in range(8)] +
                                           ([seg(t * 100 + 99, 31.0)] if t == 0 else []))

    threads = [threading.Thread(target=bundle, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert engine.thread == "vllm-engine-step" and engine.max_running > 8  # batches overlapped
    for t, out in results.items():
        assert [r.text.split()[1] for r in out[:8]] == [str(t * 100 + i) for i in range(8)]
        assert out[0].signals["avg_logprob"] == -0.1
    assert isinstance(results[0][8], ValueError)
    ids = [rid for _, _, rid in engine.requests]
    assert len(ids) == len(set(ids)) == 32
    b.engines.close()


def test_an_engine_that_fails_a_step_fails_the_batch_loudly(monkeypatch):
    """In this process there is no second engine to go to: the batch raises EngineFailedError, which
    the inference stage does not turn into per-segment failure records (the job stops)."""
    from transforms.inference import BATCH_ERRORS

    monkeypatch.setenv("FAKE_VLLM_FAIL_AT_STEP", "2")
    b, _ = backend()
    with pytest.raises(EngineFailedError, match="failed a step") as caught:
        b.transcribe_segments([seg(i, 3.0) for i in range(3)])
    assert not isinstance(caught.value, BATCH_ERRORS)
    with pytest.raises(EngineFailedError):  # and so does every later batch
        b.transcribe_segments([seg(9, 1.0)])


def test_an_engine_whose_core_process_dies_fails_the_batch_at_once(monkeypatch):
    """vLLM 0.26's step() never returns once its engine core process is gone; the loop's watchdog
    sees the process gone and fails what the engine held within a second, not request_timeout_s."""
    import os
    import signal
    import time

    # 21 steps of 0.4 s (8.4 s of work) and the kill 0.5 s in: mid-way even on a loaded machine
    monkeypatch.setenv("FAKE_VLLM_STEP_S", "0.4")
    b, engine = backend(CFG.model_copy(update={"request_timeout_s": 600.0}))
    threading.Timer(0.5, os.kill, args=(engine.core.pid, signal.SIGKILL)).start()
    started = time.monotonic()
    with pytest.raises(EngineFailedError, match=f"engine core process {engine.core.pid} ended"):
        b.transcribe_segments([seg(i, 20.0) for i in range(4)])
    assert time.monotonic() - started < 5  # seen within a second or two, not after the work or the timeout


def test_a_stalled_engine_fails_the_batch_after_stall_s(monkeypatch):
    import time

    monkeypatch.setenv("FAKE_VLLM_STALL_AT_STEP", "3")
    b, engine = backend(CFG.model_copy(update={"vllm": CFG.vllm.model_copy(update={"stall_s": 1.0})}))
    started = time.monotonic()
    # it held both requests, or one if the other finished in the two steps before the stall (a loaded machine)
    with pytest.raises(EngineFailedError, match="stalled: no step returned for 1 s while it held [12] request"):
        b.transcribe_segments([seg(i, 5.0) for i in range(2)])
    assert 1.0 <= time.monotonic() - started < 10 and engine.core.is_alive()  # alive, but no progress


def test_whisper_requests_are_encoder_decoder_prompts():
    cfg = InferenceConfig(backend="vllm", model="/models/whisper-base-hf", language="en", share_across_processes=False,
                          max_new_tokens=1000)
    b, engine = backend(cfg)
    assert b._family.name == "whisper" and engine.args["max_model_len"] == 448
    s = seg(4, 6.0)
    req = b.request(s)
    assert req["decoder_prompt"] == "<|startoftranscript|><|en|><|transcribe|><|notimestamps|>"
    audio, rate = req["encoder_prompt"]["multi_modal_data"]["audio"]
    assert audio is s.audio and rate == 16000 and req["encoder_prompt"]["prompt"] == ""
    assert b.sampling_kwargs(s)["max_tokens"] == 440  # Whisper's decoder has 448 positions
    [out] = b.transcribe_segments([s])
    assert out.text == "The original content of this audio is: 'marker 4 lasts 6.0 seconds'"
    hinted = VllmBackend(InferenceConfig(backend="vllm", model="openai/whisper-large-v3", prompt="Kubernetes, Beam.",
                                         share_across_processes=False))
    assert hinted.request(s)["decoder_prompt"] == "<|startofprev|> Kubernetes, Beam.<|startoftranscript|>"
    # the retriever's term hints (--retriever) follow the configured prompt as previous text
    with_hints = dataclasses.replace(s, hints=("Grafana", "Kafka"))
    assert hinted.request(with_hints)["decoder_prompt"] == \
        "<|startofprev|> Kubernetes, Beam. Grafana, Kafka<|startoftranscript|>"
    assert b.request(with_hints)["decoder_prompt"] == \
        "<|startofprev|> Grafana, Kafka<|startoftranscript|><|en|><|transcribe|><|notimestamps|>"


def test_term_hints_are_named_in_a_chat_models_instruction():
    b, _ = backend()
    s = dataclasses.replace(seg(3, 5.0, language="de"), hints=("Kubernetes", "Grafana"))
    assert ("Reply with the transcript only. The speech is in German. Terms that may occur, as they are spelled: "
            "Kubernetes, Grafana.<|im_end|>") in b.request(s)["prompt"]
    assert "Terms that may occur" not in b.request(dataclasses.replace(s, hints=()))["prompt"]


def test_a_local_model_directory_says_its_family(tmp_path):
    teacher = tmp_path / "teacher"  # a name that says nothing
    teacher.mkdir()
    (teacher / "config.json").write_text('{"model_type": "whisper"}')
    assert family_for(str(teacher), None).name == "whisper"
    (teacher / "config.json").write_text('{"model_type": "qwen3_omni_moe"}')
    assert family_for(str(teacher), None).name == "qwen3-omni"
    assert family_for(str(tmp_path / "missing"), None).name == "qwen2-audio"
    assert family_for(str(teacher), "whisper").name == "whisper"  # the config's word wins


def test_a_dead_vllm_engine_is_read_from_its_multiprocess_client():
    """vllm_engine.engine_error reads LLMEngine.engine_core (SyncMPClient) as vLLM 0.26 builds it:
    resources.engine_manager.processes (multiprocessing processes) and resources.engine_dead."""
    from types import SimpleNamespace

    from asr_distill.asr import vllm_engine

    core = SimpleNamespace(pid=4242, name="EngineCore_DP0", exitcode=None)
    resources = SimpleNamespace(engine_dead=False, engine_manager=SimpleNamespace(processes=[core]))
    engine = SimpleNamespace(engine_core=SimpleNamespace(resources=resources))
    assert vllm_engine.engine_error(engine) is None
    core.exitcode = -9
    assert vllm_engine.engine_error(engine) == "vLLM's engine core process 4242 (EngineCore_DP0) was killed by signal 9"
    core.exitcode = 1
    assert "exited with status 1" in vllm_engine.engine_error(engine)
    core.exitcode, resources.engine_dead = None, True
    assert vllm_engine.engine_error(engine) == "vLLM reported its engine core dead"
    assert vllm_engine.engine_error(SimpleNamespace()) is None  # another shape: the stall watchdog remains


def test_requests_queued_while_the_engine_starts_are_not_a_stall(monkeypatch):
    """Workers queue requests during a minute-long engine start; when the loop starts they are work to
    take, not an engine that stopped moving (on an H200 that mistake killed three engines in a row)."""
    import time

    monkeypatch.setenv("FAKE_VLLM_ADD_S", "0.005")  # taking 256 requests: 1.3 s of input processing

    import fake_vllm
    from asr_distill.asr.engine_loop import EngineLoop, EngineOutput

    b, _ = backend()
    loop = EngineLoop(fake_vllm.sampling_params, fake_vllm.engine_error, stall_s=0.5)
    futures = [loop.submit(f"r{i}", b.request(seg(i, 2.0)), b.sampling_kwargs(seg(i, 2.0))) for i in range(300)]
    time.sleep(1.0)  # longer than stall_s, before the engine runs
    threading.Thread(target=loop.run, args=(fake_vllm.start_engine({}),), daemon=True).start()
    outputs = [f.result(timeout=30) for f in futures]
    assert loop.died is None and all(isinstance(o, EngineOutput) for o in outputs)
    assert [o.text.split()[-4] for o in outputs[:3]] == ["0", "1", "2"]
    loop.stop()
