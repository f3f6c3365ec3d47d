"""Pipeline assembly: `build(...)` wires the stages; `run(argv)` parses options, runs, writes run.json."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import posixpath
import sys
import time
import urllib.request
from functools import partial
from datetime import datetime, timezone
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (DirectOptions, FlinkRunnerOptions, JobServerOptions, PipelineOptions,
                                                  PortableOptions, SparkRunnerOptions, StandardOptions, WorkerOptions)

from asr_distill.asr import model_label, prompt_label
from asr_distill.config import Config, ConfigError, load_config
from asr_distill.cost import cost_section, engine_usage, predict, take_cpu_s
from asr_distill.glossary import Glossary, GlossaryError
from asr_distill.oss import OssConfigError
from asr_distill.redact import redact
from asr_distill.terms import terms_digest, terms_section
from beam_pipeline import job_servers
from beam_pipeline.options import DistillOptions
from beam_pipeline.progress import ProgressLine
from beam_pipeline.pushgateway import push_run
from beam_pipeline.run_record import build_run_record, counters, format_summary, write_json
from transforms.admit import Admit, carried_lines
from transforms.decode import Decode
from transforms.engines import StartEngines
from transforms.hints import TermHints
from transforms.inference import Transcribe
from transforms.oss_filesystem import OssOptions
from transforms.read_index import ReadIndex
from transforms.reassemble import Reassemble
from transforms.resume import SET_ASIDE, before_dir, read_committed
from transforms.segments import CutSegments
from transforms.terms import chunk_records
from transforms.vad import DetectSpeech
from transforms.progress import tap
from transforms.write import WriteFailures, WriteJsonl, work_path

log = logging.getLogger(__name__)

OUTPUT_KINDS = ("transcripts", "failures", "segments", "filtered", "term_chunks")
LOST_DIR = "lost"  # under OUTPUT/_work: the segments of batches that failed the job


class UsageError(Exception):
    """A problem with how the pipeline was called; the message says what to change."""


class JobFailedError(Exception):
    """The job ran and could not finish (an engine that cannot start or keeps dying); one line says why."""


def _segment_row(seg) -> dict:
    return {"key": seg.key, "index": seg.index, "start_s": seg.start_s, "end_s": seg.end_s}


def build(p: beam.Pipeline, cfg: Config, input_index: str, output: str,
          stop_after: Optional[str] = None, resume: bool = False,
          skip_failed: bool = False, progress: bool = False,
          glossary: Optional[Glossary] = None, start_engines: bool = False,
          glossary_path: Optional[str] = None) -> dict[str, beam.PCollection]:
    """The whole graph: every index row ends in one committed transcript or failure record; with a
    glossary, the term chunks of its segments' texts go to term_chunks-*.jsonl (and term-shards/), and
    with `cfg.terms.retriever` too, each segment's likely terms (read from `glossary_path`) go into its
    prompt.

    Returns what gets written, by output kind (tests check these with assert_that)."""
    retry = cfg.data.retry_policy()
    write = partial(WriteJsonl, output, cfg=cfg.writer, retry=retry)
    before = read_committed(p, output, resume)
    count = tap if progress else (lambda pcoll, *_args: pcoll)
    rows = count(p | "ReadIndex" >> ReadIndex(input_index, cfg.data.index_format, retry), "rows")
    if start_engines and stop_after is None and cfg.inference.backend == "vllm" \
            and cfg.inference.share_across_processes:  # on a cluster: the engine loads while the index is read
        # upstream of the rows (it adds none): Spark runs a stage nothing reads from after all the others
        started = p | "StartEngines" >> StartEngines(cfg.inference)
        rows = (rows, started) | "AfterStartEngines" >> beam.Flatten()
    admitted = (rows, before.transcript_keys, before.old_lines, before.texts) | "Admit" >> Admit(skip_failed)
    audio = count(admitted.rows, "admitted") | "Decode" >> Decode(cfg.audio, retry)
    count(audio.good, "decoded", lambda a: {"audio_ms": int(a.duration_s * 1000)})
    voiced = audio.good | "VAD" >> DetectSpeech(cfg.vad)
    cut = voiced.good | "Segments" >> CutSegments(cfg.segmenting)
    count(cut.segments, "segments")
    failures = [admitted.failures, audio.failures, voiced.failures, cut.failures]
    written = {}
    if stop_after == "segment":
        written["segments"] = cut.segments | "SegmentRows" >> beam.Map(_segment_row)
        written["segments"] | "WriteSegments" >> write("segments")
    else:
        # Read -> decode -> VAD -> segments -> inference is one fused stage: the engine gets requests
        # while other files are still decoding, and audio never crosses a shuffle. Segments whose
        # texts were committed before an interruption are not cut out again (Admit, on --resume).
        terms = (glossary, cfg.terms) if glossary is not None else None
        segments = cut.segments
        if glossary is not None and cfg.terms.retriever:
            segments = segments | "TermHints" >> beam.ParDo(TermHints(cfg.terms.retriever, glossary_path, cfg.terms))
        asr = segments | "Inference" >> Transcribe(cfg.inference, work_path(output, LOST_DIR), terms, output)
        count(asr.texts, "transcribed")
        asr.texts | "TextValues" >> beam.Values() | "CommitTexts" >> write("texts", work=True)
        texts = (asr.texts, admitted.reused) | "AllTexts" >> beam.Flatten()
        done = ((cut.files, texts, asr.failed_segments)
                | "Reassemble" >> Reassemble(model_label(cfg.inference), prompt_label(cfg.inference), cfg.filters))
        failures += [asr.failures, done.failures]
        count(done.transcripts, "transcripts")
        written["transcripts"], written["filtered"] = done.transcripts, done.filtered
        # A file's term chunks ride on its segments' texts (reused ones too) and share its bucket,
        # committed before its transcript: a committed transcript has all of them, once.
        written["term_chunks"] = texts | "TermChunkRecords" >> beam.FlatMap(chunk_records)
        # A file's filtered segments and its transcript share a key, so a bucket of the writer, and a
        # bucket writes filtered before transcripts: a transcript is never committed without them;
        # filtered lines committed without theirs are replaced on resume.
        ((done.filtered, carried_lines(admitted.carried, "filtered")) | "AllFiltered" >> beam.Flatten()
         | "NameFiltered" >> beam.Map(lambda r: ("filtered", r)),
         (written["term_chunks"], carried_lines(admitted.carried, "term_chunks")) | "AllTermChunks" >> beam.Flatten()
         | "NameTermChunks" >> beam.Map(lambda r: ("term_chunks", r)),
         done.transcripts | "NameTranscripts" >> beam.Map(lambda r: ("transcripts", r))) \
            | "Results" >> beam.Flatten() | "WriteTranscripts" >> write(("filtered", "term_chunks", "transcripts"))
    written["failures"] = failures | "AllFailures" >> beam.Flatten()
    count(written["failures"], "failures", lambda f: {"failed_files": int(f.segment_index is None)})
    (*failures, carried_lines(admitted.carried, "failures")) | "WriteFailures" >> WriteFailures(output, cfg.writer, retry)
    return written


def _with_retriever(cfg: Config, opts: argparse.Namespace) -> Config:
    """--retriever (or terms.retriever): needs --glossary and a checkpoint this machine can read."""
    checkpoint = opts.retriever or cfg.terms.retriever
    if not checkpoint:
        return cfg
    if not opts.glossary:
        raise UsageError("--retriever finds glossary terms: it needs --glossary")
    if not os.path.isfile(checkpoint):
        raise UsageError(f"--retriever={redact(checkpoint)}: no such file (a trained retriever's final.pt)")
    return cfg.model_copy(update={"terms": cfg.terms.model_copy(update={"retriever": checkpoint})})


def _glossary(opts: argparse.Namespace) -> Optional[Glossary]:
    """--glossary, read and checked before anything runs (a bad one is a UsageError)."""
    if not opts.glossary:
        return None
    if opts.stop_after:
        raise UsageError("--glossary needs transcripts: it does not apply to --stop_after=segment")
    try:
        with FileSystems.open(opts.glossary) as f:
            data = f.read()
    except (OSError, BeamIOError) as err:
        raise UsageError(f"cannot read --glossary={redact(opts.glossary)}: {type(err).__name__}") from None
    try:
        return Glossary.from_json(json.loads(data.decode("utf-8")), redact(opts.glossary))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"--glossary={redact(opts.glossary)} is not JSON: {err}") from None
    except GlossaryError as err:
        raise UsageError(str(err)) from None


def _term_chunk_lines(output: str):
    for path in _match(FileSystems.join(output, "term_chunks-*.jsonl")):
        with FileSystems.open(path) as f:
            for line in f.read().decode("utf-8").splitlines():
                if line.strip():
                    yield json.loads(line)


def _match(pattern: str) -> list[str]:
    """Paths matching pattern; a file system that cannot be used (no OSS endpoint, no keys) is a UsageError."""
    try:
        return [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    except BeamIOError as err:
        inner = next(iter((err.exception_details or {}).values()), None)
        if isinstance(inner, OssConfigError):
            raise UsageError(str(inner)) from None
        raise


def _results(output: str) -> list[str]:
    return [path for kind in OUTPUT_KINDS for path in _match(FileSystems.join(output, f"{kind}-*.jsonl"))]


def _check_inputs(opts: argparse.Namespace, digest: str) -> None:
    if not opts.input_index or not opts.output:
        raise UsageError("both --input_index and --output are required")
    if not _match(opts.input_index):
        raise UsageError(f"no index file matches --input_index={redact(opts.input_index)}")
    if opts.skip_failed and not opts.resume:
        raise UsageError("--skip_failed only applies with --resume")
    if opts.resume and opts.stop_after:
        raise UsageError("--resume does not apply to --stop_after=segment: write to a new --output directory")
    interrupted = FileSystems.exists(work_path(opts.output, "run.json"))
    if not opts.resume:
        existing = _results(opts.output)
        if interrupted or existing:
            raise UsageError(f"--output={redact(opts.output)} already holds results "
                             f"({'an interrupted run' if interrupted else f'{len(existing)} files'}): "
                             "pass --resume to finish it, or choose a new directory")
        return
    if interrupted:
        with FileSystems.open(work_path(opts.output, "run.json")) as f:
            before = json.load(f).get("work_digest")
        if before != digest:
            raise UsageError("the config changed since the interrupted run (VAD, segmenting or inference "
                             "settings, or the glossary and terms settings): resume with the same config, "
                             "or write to a new --output directory")


def start_work(output: str, digest: str, resume: bool) -> None:
    """Marks the output dir as holding a run in progress; on resume, sets earlier failures aside.

    Admit carries the old failure records of keys that stay done and drops those of keys processed
    again, so the finished directory holds each record once. Moving files is O(files), not O(keys).
    """
    write_json(work_path(output, "run.json"), {"work_digest": digest})
    if not resume:
        return
    for kind in SET_ASIDE:
        old = [m.path for m in FileSystems.match([FileSystems.join(output, f"{kind}-*.jsonl")])[0].metadata_list]
        if old:
            aside = before_dir(output, kind)
            if not FileSystems.exists(aside):
                FileSystems.mkdirs(aside)
            FileSystems.rename(old, [FileSystems.join(aside, posixpath.basename(path)) for path in old])


def finish_work(output: str) -> None:
    try:
        FileSystems.delete([work_path(output)])
    except BeamIOError as err:
        log.warning("could not remove %s: %s", redact(work_path(output)), type(err).__name__)


def use_job_server(options: PipelineOptions) -> None:
    """FlinkRunner / SparkRunner start Beam's Java job server from a jar: the one `make job-servers`
    built, unless one was given; a UsageError says what is missing (Java, or the jar). A job server
    given by --job_endpoint must answer at once."""
    endpoint = options.view_as(PortableOptions).job_endpoint
    problem = job_servers.unreachable_job_endpoint(endpoint)
    if problem:
        raise UsageError(problem)
    runner = str(options.view_as(StandardOptions).runner or "").split(".")[-1]
    if runner not in job_servers.RUNNER_ARTIFACTS or endpoint:  # a running job server: no JVM here
        return
    view = options.view_as(FlinkRunnerOptions if runner == "FlinkRunner" else SparkRunnerOptions)
    flag = job_servers.JAR_FLAGS[runner]
    problem = job_servers.missing_job_server(runner, getattr(view, flag))
    if problem:
        raise UsageError(problem)
    if not getattr(view, flag):
        setattr(view, flag, str(job_servers.job_server_jar(runner)))
    launcher = options.view_as(JobServerOptions)
    if launcher.job_server_java_launcher == "java":  # Beam's default: `java` on PATH, which may be absent
        launcher.job_server_java_launcher = job_servers.java_binary()


def _job_server_help(runner: str, beam_message: str) -> str:
    jar_flag = "--" + job_servers.JAR_FLAGS.get(runner.split(".")[-1], "<runner>_job_server_jar")
    cached = beam_message.rsplit("stage the jar at ", 1)[-1] if "stage the jar at " in beam_message else None
    return (f"{runner} needs Beam's job server, and its jar could not be downloaded (no access to Maven "
            f"Central from here?). Either pass {jar_flag}=/path/to/the-job-server.jar (download it where "
            "there is network; launch/README.md says which one)" + (f" or put it at {cached}" if cached else "")
            + ", or start the job server yourself and pass --runner=PortableRunner --job_endpoint=HOST:8099 "
            "(launch/flink/ and launch/spark/ run one beside the cluster).")


def describe_environment(options: PipelineOptions) -> dict:
    """Where the SDK workers ran, for run.json."""
    runner = str(options.view_as(StandardOptions).runner or "DirectRunner")
    if runner.split(".")[-1] in ("DirectRunner", "direct"):
        direct = options.view_as(DirectOptions)
        return {"kind": "direct", "running_mode": direct.direct_running_mode,
                "num_workers": direct.direct_num_workers}
    portable = options.view_as(PortableOptions)
    env = {"kind": "portable", "environment_type": portable.environment_type or "DOCKER",
           "job_endpoint": portable.job_endpoint}
    if portable.environment_type == "EXTERNAL":
        env["environment_config"] = portable.environment_config
    env["sdk_worker_parallelism"] = portable.sdk_worker_parallelism
    if runner.split(".")[-1] == "FlinkRunner":
        env["parallelism"] = options.view_as(FlinkRunnerOptions).parallelism
    return env


def use_oss_settings(options: PipelineOptions, cfg: Config) -> None:
    """The config's OSS settings, unless flags gave them; FileSystems on this machine use them at once."""
    oss = options.view_as(OssOptions)
    oss.oss_endpoint = oss.oss_endpoint or cfg.data.oss_endpoint
    oss.oss_credentials_file = oss.oss_credentials_file or cfg.data.oss_credentials_file
    FileSystems.set_options(options)


def split_args(argv) -> tuple[argparse.Namespace, list[str]]:
    """Our own flags (DistillOptions), and the rest for Beam. Ours stay out of the options Beam ships
    to its workers, which would warn about each flag they do not know, once per worker process."""
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    DistillOptions._add_argparse_args(parser)
    opts, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    opts.input_index, opts.output = absolute_local(opts.input_index), absolute_local(opts.output)
    return opts, rest


def absolute_local(path: Optional[str]) -> Optional[str]:
    """A local path made absolute: SDK workers of a portable runner (EXTERNAL, DOCKER) have their own
    working directory, where a relative index matched nothing (a job of 0 rows, no error)."""
    if not path or FileSystems.get_scheme(path):
        return path
    return os.path.abspath(path)


def _local_cores() -> int:
    """The CPUs this process's front end has (once the engines it started are ready: cpus.py)."""
    from asr_distill.cpus import front_end_cpus

    return len(front_end_cpus())


def use_local_cores(options: PipelineOptions, cfg: Config, beam_args: list[str]) -> Optional[int]:
    """vllm on DirectRunner: one GPU is fed by the front end on every core, so unless told otherwise
    the job runs in one SDK worker process per core (the engine is shared through its server)."""
    runner = str(options.view_as(StandardOptions).runner or "DirectRunner").split(".")[-1]
    given = {a.split("=", 1)[0] for a in beam_args}
    if (runner not in ("DirectRunner", "direct") or cfg.inference.backend != "vllm"
            or given & {"--direct_num_workers", "--direct_running_mode"}):
        return None
    direct = options.view_as(DirectOptions)
    direct.direct_running_mode, direct.direct_num_workers = "multi_processing", _local_cores()
    return direct.direct_num_workers


SPARK_MASTER_UI_PORT = 8080  # a standalone Spark master's web UI: its /json/ says the workers' cores


def use_cluster_parallelism(options: PipelineOptions, beam_args: list[str]) -> Optional[int]:
    """FlinkRunner without --parallelism: the cluster's task slots, asked of its REST API. Beam's job
    server reads no configuration of the cluster's, so it ran every step at parallelism 1: on a 4-slot
    TaskManager the whole job went through one slot and one SDK worker (measured). SparkRunner starting
    its own job server: see _spark_parallelism."""
    runner = str(options.view_as(StandardOptions).runner or "").split(".")[-1]
    if runner == "SparkRunner":
        return _spark_parallelism(options)
    flink = options.view_as(FlinkRunnerOptions)
    given = {a.split("=", 1)[0] for a in beam_args}
    if runner != "FlinkRunner" or "--parallelism" in given or flink.flink_master in ("[local]", "[auto]", None):
        return None
    master = flink.flink_master if "://" in flink.flink_master else f"http://{flink.flink_master}"
    try:
        with urllib.request.urlopen(f"{master.rstrip('/')}/overview", timeout=5) as r:
            slots = int(json.load(r)["slots-total"])
    except (OSError, ValueError, KeyError) as err:
        log.warning("could not ask the Flink cluster at %s for its task slots (%s): the job runs at "
                    "--parallelism=%d; pass --parallelism=N", redact(master), type(err).__name__, flink.parallelism)
        return None
    if slots > 0:
        flink.parallelism = slots
    return slots or None


def _spark_parallelism(options: PipelineOptions) -> Optional[int]:
    """The job server SparkRunner starts gets spark.default.parallelism = the standalone cluster's cores,
    asked of its master's web UI. Beam's Spark runner partitions each shuffle by the Spark context's
    default parallelism when the job starts, before executors register, and Spark then says 2: on a
    16-core GPU node the inference stage ran on 2 SDK workers (0.66 of raw vLLM, measured). A job server
    given by --job_endpoint is configured where it runs (launch/spark/job-server.yaml); a property given
    with --job_server_jvm_properties stands."""
    jvm = options.view_as(JobServerOptions)
    given = list(jvm.job_server_jvm_properties or [])
    master = options.view_as(SparkRunnerOptions).spark_master_url or ""
    if (options.view_as(PortableOptions).job_endpoint or not master.startswith("spark://")
            or any(p.startswith("-Dspark.default.parallelism=") for p in given)):
        return None
    host = master[len("spark://"):].split(",")[0].rsplit(":", 1)[0]
    ui = f"http://{host}:{SPARK_MASTER_UI_PORT}/json/"
    try:
        with urllib.request.urlopen(ui, timeout=5) as r:
            cores = int(json.load(r)["cores"])
    except (OSError, ValueError, KeyError) as err:
        log.warning("could not ask the Spark master at %s for its cores (%s): Beam's Spark runner may then "
                    "run each stage in 2 partitions; pass --job_server_jvm_properties=-Dspark.default.parallelism=N "
                    "(N: the cluster's executor cores)", redact(ui), type(err).__name__)
        return None
    if cores > 0:
        jvm.job_server_jvm_properties = [*given, f"-Dspark.default.parallelism={cores}"]
    return cores or None


def quiet_local_workers(options: PipelineOptions, beam_args: list[str]) -> None:
    """DirectRunner's worker processes log to this terminal: warnings only, and not the ones every
    process repeats (the options it does not know, its staging directory); flags given win."""
    if options.view_as(DirectOptions).direct_running_mode != "multi_processing":
        return
    given = {a.split("=", 1)[0] for a in beam_args}
    worker = options.view_as(WorkerOptions)
    if "--default_sdk_harness_log_level" not in given:
        worker.default_sdk_harness_log_level = "WARNING"
    if "--sdk_harness_log_level_overrides" not in given:
        worker.sdk_harness_log_level_overrides = {"apache_beam.options.pipeline_options": "ERROR",
                                                  "__main__": "ERROR"}


def use_accelerator_hint(options: PipelineOptions, cfg: Config) -> None:
    """The accelerator hint goes on the whole pipeline: a hint on the inference step alone gives it an
    environment of its own, and runners never fuse across environments, so every segment's audio
    would cross a stage boundary to reach it."""
    hints = options.view_as(StandardOptions).resource_hints
    if cfg.inference.accelerator and not any(h.startswith("accelerator=") for h in hints):
        hints.append(f"accelerator={cfg.inference.accelerator}")


def _engine_error(err: BaseException) -> Optional[str]:
    """The message of an EngineFailedError raised in a worker, as Beam reports it (inside its text)."""
    if type(err).__name__ == "EngineFailedError":
        return str(err)
    marker = "EngineFailedError: "
    text = str(err)
    if marker not in text:
        return None
    return text.rsplit(marker, 1)[1].split(" [while running", 1)[0].split("\n", 1)[0].strip()[:2000]


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text)[:500]


def _local_engines(cfg: Config, options: PipelineOptions) -> list:
    """On DirectRunner the vllm engines start now, while Beam starts and reads the index; they are
    stopped when the job ends, so the GPU is free when the command returns."""
    if cfg.inference.backend != "vllm" or not cfg.inference.share_across_processes:
        return []
    if describe_environment(options)["kind"] != "direct":
        return []  # workers elsewhere start their machine's engines; idle ones exit by themselves
    from asr_distill.asr.engine_server import start_engines

    return start_engines(cfg.inference)


def _engine_usage(engines: list) -> list[dict]:
    """Each local engine server's CPU and GPU time, from its stats file (read once it has exited)."""
    if not engines:
        return []
    from asr_distill.asr.engine_server import read_stats

    return [engine_usage(read_stats(spec), len(spec.devices.split(",")) if spec.devices
                         else int(spec.args.get("tensor_parallel_size") or 1)) for spec in engines]


def forecast_rate(cfg: Config) -> Optional[tuple[float, float, float]]:
    """(throughput of a working GPU, engine start, engine end) a sizing run forecasts with; read before
    the job runs, so a bad one is a UsageError at once."""
    c = cfg.cost
    if c.segment_audio_s_per_gpu_s is not None or not c.throughput_from:
        return None if c.segment_audio_s_per_gpu_s is None else \
            (c.segment_audio_s_per_gpu_s, c.engine_start_s, c.engine_end_s)
    try:
        with FileSystems.open(c.throughput_from) as f:
            earlier = json.load(f).get("cost") or {}
    except (OSError, BeamIOError, ValueError) as err:
        raise UsageError(f"cost.throughput_from={redact(c.throughput_from)} cannot be read: {err}") from None
    if not earlier.get("segment_audio_s_per_working_gpu_s"):
        raise UsageError(f"cost.throughput_from={redact(c.throughput_from)} has no "
                         "cost.segment_audio_s_per_working_gpu_s (a run that used a GPU engine has it)")
    return (earlier["segment_audio_s_per_working_gpu_s"], earlier.get("engine_start_s") or 0.0,
            earlier.get("engine_end_s") or 0.0)


def run_cost(record: dict, cfg: Config, engines: list[dict], rate: Optional[tuple[float, float, float]] = None) -> dict:
    """run.json's `cost`: measured (CPU of every process, GPU time of local engines), and with
    --stop_after=segment and a throughput (`rate`), the forecast of the full job."""
    c = cfg.cost
    cost = cost_section(worker_cpu_s=record["metrics"].get("cost", {}).get("cpu_ms", 0) / 1000,
                        launcher_cpu_s=take_cpu_s(), engines=engines, audio_s=record["audio_s"],
                        segment_audio_s=record["segment_audio_s"], wall_s=record["wall_s"],
                        gpu_hour=c.gpu_hour, cpu_core_hour=c.cpu_core_hour)
    if record["stop_after"] == "segment" and rate:
        cost["prediction"] = predict(segment_audio_s=record["segment_audio_s"], audio_s=record["audio_s"],
                                     segment_audio_s_per_gpu_s=rate[0], engine_start_s=rate[1], engine_end_s=rate[2],
                                     gpu_hour=c.gpu_hour)
    return cost


def lost_segments(output: str) -> list[dict]:
    """The segments that batches failing the job held (each once, in key and index order)."""
    found = {}
    for path in _match(work_path(output, LOST_DIR, "lost-*.jsonl")):
        with FileSystems.open(path) as f:
            for line in f.read().decode().splitlines():
                seg = json.loads(line)
                found[(seg["key"], seg["index"])] = seg
    return [found[k] for k in sorted(found)]


def failed_run_record(output_dir: str, error: str, **facts) -> dict:
    """run.json of a job that stopped: why, and which segments it lost (the rest was committed to
    _work/, or never started; --resume does both)."""
    lost = lost_segments(output_dir)
    return {"status": "failed", "error": error, "segments_lost": lost, "segments_lost_count": len(lost),
            "reconciled": False, "resume_with": "--resume", **facts}


def run(argv=None, test_pipeline: Optional[beam.Pipeline] = None) -> dict:
    """Runs the job and returns the run record that was written to OUTPUT/run.json."""
    opts, beam_args = split_args(argv)
    options = PipelineOptions(beam_args)
    cfg = load_config(opts.config).with_backend(opts.backend)
    use_oss_settings(options, cfg)
    glossary = _glossary(opts)
    cfg = _with_retriever(cfg, opts)
    digest = cfg.work_digest() if glossary is None else f"{cfg.work_digest()}-{terms_digest(glossary, cfg.terms)}"
    _check_inputs(opts, digest)
    rate = forecast_rate(cfg) if opts.stop_after == "segment" else None
    workers = use_local_cores(options, cfg, beam_args) if test_pipeline is None else None
    slots = use_cluster_parallelism(options, beam_args) if test_pipeline is None else None
    quiet_local_workers(options, beam_args)
    use_accelerator_hint(options, cfg)
    use_job_server(options)
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.monotonic()
    p = test_pipeline or beam.Pipeline(options=options)
    start_work(opts.output, digest, opts.resume)
    environment = describe_environment(options)
    if slots:
        log.info("%s: the job runs at parallelism %d, the cluster's task slots (Spark: cores)", runner, slots)
    if workers:
        log.warning("vllm on DirectRunner: front end in %d worker processes, one per core "
                    "(--direct_num_workers=N --direct_running_mode=... to choose)", workers)
    # The live line needs the workers in this process: the DirectRunner's in-memory mode (its default).
    live = not opts.quiet and environment.get("running_mode") == "in_memory"
    build(p, cfg, opts.input_index, opts.output, opts.stop_after, opts.resume, opts.skip_failed, progress=live,
          glossary=glossary, start_engines=environment["kind"] == "portable", glossary_path=opts.glossary)
    engines, timings = [], {}
    try:
        if opts.stop_after is None:
            engines = _local_engines(cfg, options if test_pipeline is None else p.options)
        with ProgressLine() if live else contextlib.nullcontext():
            try:
                result = p.run()
            except RuntimeError as err:
                if "job server jar" not in str(err) and "Unable to fetch" not in str(err):
                    raise
                if not opts.resume:
                    finish_work(opts.output)  # nothing ran: leave the directory as it was
                raise UsageError(_job_server_help(str(runner), str(err))) from None
            result.wait_until_finish()
        timings["pipeline_s"] = round(time.monotonic() - t0, 2)
    except Exception as err:  # noqa: BLE001 - an engine or runner failure becomes a one-line error
        reason = _engine_error(err)
        if reason is not None:
            message = (f"the vLLM engine failed, so the job stopped (rerun with --resume to go on from what was "
                       f"committed): {reason}")
            write_json(FileSystems.join(opts.output, "run.json"), failed_run_record(
                opts.output, message, wall_s=time.monotonic() - t0, started_at=started_at,
                input_index=redact(opts.input_index), output=redact(opts.output), runner=str(runner),
                environment=environment, model=model_label(cfg.inference), config_digest=cfg.digest()))
            raise JobFailedError(message) from None
        if "failed in state FAILED" not in str(err):
            raise
        raise JobFailedError(f"the {runner} job failed: {_first_line(str(err))} (the runner's log has the "
                             "rest; rerun with --resume to go on from what was committed)") from None
    finally:
        if engines:
            from asr_distill.asr.engine_server import stop_engines

            stop_engines(engines)
            timings["engines_stopped_s"] = round(time.monotonic() - t0, 2)
    usage = _engine_usage(engines)
    record = build_run_record(
        counters(result), wall_s=time.monotonic() - t0, started_at=started_at,
        input_index=redact(opts.input_index), output=redact(opts.output), resumed=opts.resume,
        runner=str(runner), environment=environment, stop_after=opts.stop_after,
        model=model_label(cfg.inference), backend=cfg.inference.backend,
        config=cfg.model_dump(mode="json"), config_digest=cfg.digest())
    record["cost"] = run_cost(record, cfg, usage, rate)
    record["timings"] = timings  # seconds from the job's start: where the end of a run's wall time went
    if glossary is not None:
        record["terms"] = terms_section(counters(result).get("terms", {}), _term_chunk_lines(opts.output), glossary)
    if cfg.metrics.pushgateway_url:
        record["metrics_push"] = push_run(record, cfg.metrics)
    write_json(FileSystems.join(opts.output, "run.json"), record)
    finish_work(opts.output)
    print(format_summary(record), flush=True)
    return record


__all__ = ["build", "run", "UsageError", "ConfigError", "JobFailedError"]
