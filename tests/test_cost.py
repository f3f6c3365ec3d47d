"""run.json's cost: measured by the run, and a sizing run's forecast of the full job (the GPU side of
the measurement is checked in test_engine_server.py, with the engine double)."""

import json

import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from asr_distill.cost import cost_section, engine_usage, take_cpu_s
from beam_pipeline import run
from beam_pipeline.pipeline import UsageError
from conftest import write_index


def test_cost_per_1000_hours_and_in_money():
    engine = engine_usage({"spawned_at": 100.0, "first_request_at": 130.0, "ready_at": 150.0,
                           "last_result_at": 190.0, "exit_at": 200.0, "cpu_s": 50.0}, gpus=2)
    # requests came from 130 s and waited for the engine's start (ready at 150 s): busy 60 s, working 40 s
    assert engine == {"cpu_s": 50.0, "held_s": 100.0, "busy_s": 60.0, "work_s": 40.0, "start_s": 50.0,
                      "end_s": 10.0, "gpus": 2}
    cost = cost_section(worker_cpu_s=300.0, launcher_cpu_s=10.0, engines=[engine], audio_s=36_000.0,
                        segment_audio_s=18_000.0, wall_s=120.0, gpu_hour=3.0, cpu_core_hour=0.05)
    # 10 h of audio: per 1000 h, 100x; 200 GPU-s = 5.56 GPU-h per 1000 h, 360 CPU-s = 10 CPU-h per 1000 h
    assert cost["cpu_core_s"] == 360.0 and cost["gpu_s"] == 200.0 and cost["gpu_busy_share"] == 0.6
    assert cost["segment_audio_s_per_gpu_s"] == 90.0 and cost["mean_busy_cores"] == 3.0
    assert cost["segment_audio_s_per_working_gpu_s"] == 225.0  # 18000 s of segments in 2 x 40 GPU-s
    assert (cost["engine_start_s"], cost["engine_end_s"]) == (50.0, 10.0)
    assert cost["per_1000_audio_h"] == {"gpu_h": pytest.approx(5.556, abs=1e-3), "cpu_core_h": 10.0,
                                        "money": pytest.approx(5.556 * 3.0 + 10 * 0.05, abs=0.01)}
    assert take_cpu_s() >= 0 and take_cpu_s() < 0.5  # the second call only has what came since the first


def test_a_sizing_run_forecasts_the_gpu_hours_of_the_full_job(tmp_path, long_forms, short_speech_wav):
    index = write_index(tmp_path / "index.jsonl", [{"key": "talk", "uri": str(long_forms["talk_flac"].path)},
                                                   {"key": "short", "uri": str(short_speech_wav[0])}])
    cfg = tmp_path / "sizing.yaml"
    cfg.write_text("cost:\n  segment_audio_s_per_gpu_s: 400\n  engine_start_s: 50\n  engine_end_s: 4\n  gpu_hour: 3.5\n")
    out = tmp_path / "sizing"
    run([f"--input_index={index}", f"--output={out}", f"--config={cfg}", "--stop_after=segment"],
        test_pipeline=BeamTestPipeline())
    record = json.loads((out / "run.json").read_text())
    pred = record["cost"]["prediction"]
    gpu_h = (50 + record["segment_audio_s"] / 400 + 4) / 3600
    assert record["segment_audio_s"] > 10 and pred["gpu_h"] == pytest.approx(gpu_h, abs=1e-4)
    assert pred["money"] == pytest.approx(gpu_h * 3.5, abs=1e-3)
    assert record["cost"]["gpu_s"] == 0 and record["cost"]["cpu_core_s"] > 0  # a sizing run uses no GPU

    # the throughput of an earlier run (its run.json), instead of a figure in the config
    earlier = tmp_path / "earlier-run.json"
    earlier.write_text(json.dumps({"cost": {"segment_audio_s_per_busy_gpu_s": 150.0, "segment_audio_s_per_working_gpu_s": 200.0,
                                            "engine_start_s": 100.0, "engine_end_s": 5.0}}))
    cfg.write_text(f"cost:\n  throughput_from: {earlier}\n")
    out2 = tmp_path / "sizing2"
    run([f"--input_index={index}", f"--output={out2}", f"--config={cfg}", "--stop_after=segment"],
        test_pipeline=BeamTestPipeline())
    assert json.loads((out2 / "run.json").read_text())["cost"]["prediction"]["gpu_h"] == pytest.approx(
        (100 + record["segment_audio_s"] / 200 + 5) / 3600, abs=1e-4)
    earlier.write_text(json.dumps({"cost": {"gpu_s": 0}}))  # a run without a GPU engine
    with pytest.raises(UsageError, match="has no cost.segment_audio_s_per_working_gpu_s"):
        run([f"--input_index={index}", f"--output={tmp_path / 'sizing3'}", f"--config={cfg}", "--stop_after=segment"],
            test_pipeline=BeamTestPipeline())
    assert not (tmp_path / "sizing3").exists()  # refused before anything ran
