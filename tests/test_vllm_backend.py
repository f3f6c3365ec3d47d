"""The vllm backend against an engine with vLLM's AsyncLLM interface (tests/fake_vllm.py)."""

import threading

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

import fake_vllm
from asr_distill.asr import quality
from asr_distill.asr.families import family_for
from asr_distill.asr import vllm_backend
from asr_distill.asr.vllm_backend import VllmBackend, engine_args, max_tokens_for
from asr_distill.config import InferenceConfig, VllmEngineConfig
from asr_distill.records import Segment
from transforms.inference import Transcribe

CFG = InferenceConfig(backend="vllm", model="/models/Qwen2-Audio-7B-Instruct", temperature=0.0, top_p=0.9,
                      max_new_tokens=200, repetition_penalty=1.05, seed=7,
                      vllm=VllmEngineConfig(max_model_len=4096, gpu_memory_utilization=0.8, max_num_seqs=64,
                                            driver="async"))


def seg(index, seconds, marker=None, key="file", language=None):
    audio = np.full(int(seconds * 16000), float(index if marker is None else marker), np.float32)
    return Segment(key, index, 0.0, seconds, audio, language=language)


@pytest.fixture
def engines():
    made = []

    def factory(args):
        made.append(fake_vllm.FakeAsyncLLM(args))
        return made[-1]
    return made, factory


def backend(engines, cfg=CFG):
    made, factory = engines
    return VllmBackend(cfg, engine_factory=factory, sampling_factory=fake_vllm.sampling), made


def test_engine_arguments_come_from_config(engines):
    b, made = backend(engines)
    args = made[0].args
    assert args["model"] == "/models/Qwen2-Audio-7B-Instruct"
    assert (args["max_model_len"], args["gpu_memory_utilization"], args["max_num_seqs"]) == (4096, 0.8, 64)
    assert args["limit_mm_per_prompt"] == {"audio": 1} and args["tensor_parallel_size"] == 1
    assert args["dtype"] == "bfloat16" and args["seed"] == 7
    omni = engine_args(InferenceConfig(backend="vllm", model="Qwen/Qwen3-Omni-30B-A3B-Instruct"),
                       family_for("Qwen/Qwen3-Omni-30B-A3B-Instruct", None))
    assert omni["limit_mm_per_prompt"] == {"audio": 1, "image": 0, "video": 0}


def test_requests_carry_the_audio_in_the_model_chat_template(engines):
    b, made = backend(engines)
    s = seg(3, 5.0, language="de")
    req = b.request(s)
    assert req["prompt"] == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\nTranscribe the speech in this audio exactly. "
        "Reply with the transcript only. The speech is in German.<|im_end|>\n<|im_start|>assistant\n")
    audio, rate = req["multi_modal_data"]["audio"]
    assert audio is s.audio and rate == 16000
    sp = b.sampling_params(s)
    assert (sp.temperature, sp.top_p, sp.max_tokens, sp.repetition_penalty, sp.seed, sp.logprobs) == \
        (0.0, 0.9, 200, 1.05, 7, 0)


def test_qwen3_omni_prompt_and_instruction_template():
    fam = family_for("Qwen/Qwen3-Omni-30B-A3B-Instruct", None)
    p = fam.prompt(fam.instruction("Write down what is said in {language}.", "zh"))
    assert "<|audio_start|><|audio_pad|><|audio_end|>Write down what is said in Chinese.<|im_end|>" in p
    assert fam.parse("<think>hmm</think>\n你好") == "你好"
    assert family_for("x", "qwen3-omni") is fam and family_for("my-finetune", None).name == "qwen2-audio"
    with pytest.raises(ValueError, match="unknown model family"):
        family_for("x", "whisper")


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


def test_results_signals_and_a_bad_segment_failing_alone(engines):
    b, _ = backend(engines)
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


def test_concurrent_batches_share_one_engine_and_overlap(engines):
    """Bundles calling from several threads keep the engine's queue full across batch boundaries."""
    b, made = backend(engines)
    results = {}

    def bundle(t):
        batch = [seg(t * 100 + i, 2.0 + i, key=f"f{t}") for i in range(8)]
        results[t] = b.transcribe_segments(batch)

    threads = [threading.Thread(target=bundle, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1
    assert made[0].max_in_flight > 8  # requests of different batches were in the engine at once
    for t, out in results.items():
        assert [r.text.split()[1] for r in out] == [str(t * 100 + i) for i in range(8)]
    ids = [rid for _, _, rid in made[0].requests]
    assert len(ids) == len(set(ids)) == 32


def test_through_beam_runinference_with_failures(monkeypatch, tmp_path):
    """The default ('step') driver through RunInference: every key back once, the bad one a failure."""
    monkeypatch.setattr("asr_distill.asr.vllm_backend._start_llm_engine", fake_vllm.FakeLLMEngine)
    monkeypatch.setattr("asr_distill.asr.vllm_backend._vllm_sampling_params", fake_vllm.sampling)
    monkeypatch.setattr("asr_distill.asr.vllm_backend._HOSTS", {})
    cfg = InferenceConfig(backend="vllm", batch_size=4, share_across_processes=False, model="m-beam")
    segments = [seg(i, 3.0 + i % 5, key=f"k{i // 10}") for i in range(40)] + [seg(99, 35.0, key="long")]
    with BeamTestPipeline() as p:
        out = p | beam.Create(segments) | Transcribe(cfg)
        texts = out.texts | beam.MapTuple(lambda key, t: (key, t.index, t.text.split()[1]))
        assert_that(texts, equal_to([(f"k{i // 10}", i, str(i)) for i in range(40)]), label="AllKeysBack")
        fails = out.failures | beam.Map(lambda f: (f.key, f.stage, f.segment_index, f.error_type))
        assert_that(fails, equal_to([("long", "inference", 99, "ValueError")]), label="OneFailure")
        assert_that(out.failed_segments, equal_to([("long", 99)]), label="FailedIndex")


def test_one_engine_per_machine_through_a_process_proxy(monkeypatch):
    """share_across_processes: Beam hosts the backend behind a multiprocessing proxy server (in the
    first worker process to ask); every SDK process, that one included, calls it through the proxy."""
    monkeypatch.setattr("asr_distill.asr.vllm_backend._start_async_llm", lambda args: fake_vllm.FakeAsyncLLM(args))
    monkeypatch.setattr("asr_distill.asr.vllm_backend._HOSTS", {})
    monkeypatch.setattr("asr_distill.asr.vllm_backend._vllm_sampling_params", fake_vllm.sampling)
    cfg = InferenceConfig(backend="vllm", batch_size=3, share_across_processes=True, model="m-proxy",
                          vllm=VllmEngineConfig(driver="async"))
    segments = [seg(i, 2.0, key="p") for i in range(7)] + [seg(50, 31.0, key="p")]
    with BeamTestPipeline() as p:
        out = p | beam.Create(segments) | Transcribe(cfg)
        assert_that(out.texts | beam.MapTuple(lambda k, t: t.index), equal_to(list(range(7))), label="Texts")
        assert_that(out.failures | beam.Map(lambda f: f.segment_index), equal_to([50]), label="Failed")
    engine = vllm_backend.shared_backend(cfg).engine
    assert sorted(int(r[0]["multi_modal_data"]["audio"][0][0]) for r in engine.requests) == list(range(7))


def test_accelerator_hint_lands_on_the_inference_step_only():
    cfg = InferenceConfig(backend="vllm", accelerator="type:nvidia-h200;count:1")
    p = beam.Pipeline()
    _ = p | beam.Create([seg(0, 1.0)]) | "Inference" >> Transcribe(cfg)
    proto = p.to_runner_api()
    hinted = set()
    for t in proto.components.transforms.values():
        env = proto.components.environments[t.environment_id] if t.environment_id else None
        if env is not None and env.resource_hints:
            assert dict(env.resource_hints) == {"beam:resources:accelerator:v1": b"type:nvidia-h200;count:1"}
            hinted.add(t.unique_name)
    assert "Inference/RunInference/BeamML_RunInference/ParDo(_RunInferenceDoFn)" in hinted
    assert all(name.startswith("Inference/RunInference/BeamML_RunInference") for name in hinted)


def test_configs_differing_only_in_sampling_share_one_engine(monkeypatch):
    made = []
    monkeypatch.setattr("asr_distill.asr.vllm_backend._start_async_llm",
                        lambda args: made.append(fake_vllm.FakeAsyncLLM(args)) or made[-1])
    monkeypatch.setattr("asr_distill.asr.vllm_backend._vllm_sampling_params", fake_vllm.sampling)
    monkeypatch.setattr("asr_distill.asr.vllm_backend._HOSTS", {})
    v = VllmEngineConfig(driver="async")
    a = vllm_backend.shared_backend(InferenceConfig(backend="vllm", model="m", temperature=0.0, vllm=v))
    b = vllm_backend.shared_backend(InferenceConfig(backend="vllm", model="m", temperature=0.7, ignore_eos=True,
                                                    vllm=v))
    c = vllm_backend.shared_backend(InferenceConfig(backend="vllm", model="m",
                                                    vllm=VllmEngineConfig(max_num_seqs=8, driver="async")))
    assert a.engine is b.engine and a.engine is not c.engine and len(made) == 2
    assert b.sampling_params(seg(0, 1.0)).temperature == 0.7


def test_stepping_driver_tops_up_the_running_batch_from_many_callers():
    made = []
    cfg = InferenceConfig(backend="vllm", model="m")  # the default driver
    b = VllmBackend(cfg, engine_factory=lambda a: made.append(fake_vllm.FakeLLMEngine(a)) or made[-1],
                    sampling_factory=fake_vllm.sampling)
    results = {}

    def bundle(t):
        results[t] = b.transcribe_segments([seg(t * 100 + i, 2.0 + i) for i in range(8)] +
                                           ([seg(t * 100 + 99, 31.0)] if t == 0 else []))

    threads = [threading.Thread(target=bundle, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine = made[0]
    assert engine.thread == "vllm-engine-step" and engine.max_running > 8
    for t, out in results.items():
        assert [r.text.split()[1] for r in out[:8]] == [str(t * 100 + i) for i in range(8)]
        assert out[0].signals["avg_logprob"] == -0.1
    assert isinstance(results[0][8], ValueError)
    b._host.close()
