"""One pydantic model for the whole job: YAML -> Config -> frozen sections handed to each stage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from asr_distill.retry import RetryPolicy


class ConfigError(ValueError):
    """A config file or override that does not validate; the message names the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    index_format: Literal["auto", "jsonl", "parquet", "webdataset"] = Field(
        "auto", description="Index file format; 'auto' picks by extension (.parquet, .tar for WebDataset "
        "shards, else JSONL).")
    oss_endpoint: Optional[str] = Field(
        None, description="OSS endpoint for oss:// paths, e.g. https://oss-cn-hangzhou-internal.aliyuncs.com "
        "(--oss_endpoint and OSS_ENDPOINT also work). Keys come from OSS_ACCESS_KEY_ID / OSS_ACCESS_KEY_SECRET "
        "or a credentials file, never from this config.")
    oss_credentials_file: Optional[str] = Field(
        None, description="JSON or INI file with access_key_id and access_key_secret, readable on every worker.")
    io_attempts: int = Field(
        4, ge=1, description="Calls in all for a read or write that fails transiently (5xx, timeout, reset).")
    io_retry_base_s: float = Field(0.5, ge=0, description="First backoff before a retry; doubles each time.")
    io_retry_max_s: float = Field(30.0, ge=0, description="Longest backoff between two retries.")

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.io_attempts, self.io_retry_base_s, self.io_retry_max_s)


class AudioConfig(_Section):
    sample_rate: Literal[16000] = Field(16000, description="Decode target rate (Hz); the models need 16 kHz.")
    max_duration_s: Optional[float] = Field(
        21600.0, gt=0, description="Files longer than this fail at decode, from the header when it says so, "
        "else while decoding (None: no limit; memory grows by 230 MB per audio hour).")
    max_size_bytes: Optional[int] = Field(
        20 * 2**30, gt=0, description="Files bigger than this fail at read, before any decoding (None: no limit).")


class VadConfig(_Section):
    backend: Literal["silero", "silero-sequence", "silero-onnx", "silero-jit"] = Field(
        "silero-sequence", description="Silero VAD runtime: 'silero-sequence' the wheel's sequence ONNX model "
        "over blocks of frames (no torch in the process); 'silero' the network over blocks of frames in torch "
        "(2.4x as fast per core; the GPU configs); 'silero-onnx'/'silero-jit' the stock per-frame loop.")
    threshold: float = Field(0.5, gt=0, lt=1, description="Speech probability threshold.")
    min_speech_ms: int = Field(250, ge=0, description="Drop speech shorter than this.")
    min_silence_ms: int = Field(300, ge=0, description="Silence needed to end a speech region.")
    speech_pad_ms: int = Field(200, ge=0, description="Padding added on both sides of a region.")
    num_threads: int = Field(1, ge=1, description="Threads for the VAD model per worker process.")


class SegmentingConfig(_Section):
    max_segment_s: float = Field(30.0, gt=1, le=30, description="Longest segment sent to the model.")
    pack: bool = Field(
        False, description="Pack a file's speech toward max_segment_s per request: silences between regions "
        "are shortened to pack_gap_s, so regions far apart share one request (fewer, fuller encoder windows).")
    pack_gap_s: float = Field(0.3, ge=0, description="Silence kept between packed regions.")
    max_merge_gap_s: float = Field(
        5.0, ge=0, description="Neighbouring regions closer than this merge while the result fits max_segment_s.")
    min_split_s: float = Field(
        10.0, gt=0, description="A long region is cut at its quietest point no earlier than this into the piece.")

    @model_validator(mode="after")
    def _split_inside_limit(self) -> "SegmentingConfig":
        if self.min_split_s >= self.max_segment_s:
            raise ValueError("min_split_s must be smaller than max_segment_s")
        return self


class VllmEngineConfig(_Section):
    """Arguments of vLLM's engine (AsyncEngineArgs); `engine_kwargs` passes any other one through."""

    max_model_len: int = Field(4096, ge=256, description="Longest prompt + output in tokens; a longer request fails alone.")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Share of GPU memory vLLM may take (weights + KV cache).")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one engine spans.")
    dtype: str = Field("bfloat16", description="Weight and activation dtype.")
    max_num_seqs: int = Field(256, ge=1, description="Requests decoded together (raise on H200: more KV cache).")
    load_format: str = Field("auto", description="'dummy' gives random weights (benchmarks only).")
    enforce_eager: bool = Field(False, description="Skip CUDA graphs (faster start, slower decoding).")
    engine_restarts: int = Field(
        2, ge=0, description="Times a batch's requests are sent again to a restarted engine after the engine "
        "died holding them; one more death fails the job (loudly, with the engine's log).")
    stall_s: float = Field(
        30.0, gt=0, description="An engine that holds requests and returns no step for this long is taken "
        "for dead: its requests go to a restarted engine (as when its process dies). Above the slowest "
        "step (a first batch that compiles kernels takes seconds), far below request_timeout_s.")
    front_end_nice: int = Field(
        10, ge=0, le=19, description="DirectRunner: once the command has started its engine servers, it and "
        "its SDK worker processes (decode, VAD) run at this niceness, so the engines, starting and then "
        "stepping, come first for the CPU. 0 leaves priorities alone.")
    engine_cpus: int = Field(
        0, ge=0, description="DirectRunner: logical CPUs (whole physical cores) its SDK worker processes keep "
        "off, for the engine servers (asr_distill/cpus.py); 0 keeps every CPU for both. On a cluster the "
        "worker pool's --engine_cpus does the same.")
    engine_start_cpus: int = Field(
        0, ge=0, description="DirectRunner: logical CPUs its SDK worker processes keep off while the engine "
        "servers it started are starting (import, compile, CUDA graphs), then `engine_cpus`; 0: "
        "`engine_cpus` from the start.")
    idle_exit_s: float = Field(
        120.0, gt=0, description="An engine server with no work for this long exits and frees its GPU (the "
        "next request starts it again). A local job stops its engines when it ends.")
    engine_kwargs: dict = Field(default_factory=dict, description="Any other engine argument, passed through.")


class InferenceConfig(_Section):
    backend: Literal["faster-whisper", "vllm"] = Field("faster-whisper", description="ASR backend name.")
    model: Optional[str] = Field(
        None, description="Model directory or name; None: the embedded Whisper base (faster-whisper) or "
        "Qwen/Qwen2-Audio-7B-Instruct (vllm).")
    model_family: Optional[Literal["qwen2-audio", "qwen3-omni", "whisper"]] = Field(
        None, description="Prompt/output format of a vllm model; None infers it from the model name "
        "('qwen3-omni' or 'whisper' in it, else qwen2-audio).")
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="faster-whisper: where the model runs.")
    compute_type: str = Field("int8", description="CTranslate2 compute type (int8, float16, ...).")
    cpu_threads: int = Field(0, ge=0, description="Threads per model (0: the library's default).")
    batch_size: int = Field(8, ge=1, description="Largest batch of segments per model call.")
    language: Optional[str] = Field(
        None, description="Language code; None detects per segment unless the index row names one.")
    beam_size: int = Field(5, ge=1, description="faster-whisper: beam search width.")
    temperature: float = Field(0.0, ge=0)
    prompt: Optional[str] = Field(
        None, description="Initial prompt (faster-whisper) or instruction (vllm; '{language}' is replaced "
        "by the language name); None: the backend's default.")
    max_new_tokens: Optional[int] = Field(None, ge=1, description="Output token cap (vllm default: 512).")
    max_new_tokens_per_s: Optional[float] = Field(
        None, gt=0, description="vllm: cap output at this many tokens per audio second (at least 4), so a "
        "looping generation stops early.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling (only with temperature > 0).")
    repetition_penalty: float = Field(1.0, gt=0, description="vllm: > 1 discourages repeating tokens.")
    seed: Optional[int] = Field(None, description="Sampling seed (null: random).")
    ignore_eos: bool = Field(False, description="Benchmarks only: always generate the cap.")
    request_timeout_s: float = Field(900.0, gt=0, description="vllm: longest wait for one segment.")
    share_across_processes: bool = Field(
        True, description="vllm: the engine runs in an engine server process per GPU (model_copies), shared "
        "by every SDK worker process of the machine; false: one engine inside each process that asks.")
    model_copies: int = Field(
        1, ge=1, description="vllm: engines per machine, copy i on its own GPUs (tensor_parallel_size each, "
        "in CUDA_VISIBLE_DEVICES order); every process spreads its requests over them.")
    accelerator: Optional[str] = Field(
        None, description="Beam resource hint, e.g. 'type:nvidia-h200;count:1', set on the whole pipeline "
        "(a hint on one step would split the fused audio path at a stage boundary).")
    vllm: VllmEngineConfig = VllmEngineConfig()


class WriterConfig(_Section):
    commit_every_records: int = Field(
        1000, ge=1, description="Segment texts (what a killed job resumes from) are committed at least this "
        "often per worker and at the end of every bundle; result files hold about this many records each.")
    commit_every_s: float = Field(60.0, gt=0, description="... or when the oldest uncommitted segment text is this old.")


class FiltersConfig(_Section):
    """Quality rules for segment transcripts (asr_distill/filters.py); null turns a rule off."""

    action: Literal["flag", "drop"] = Field(
        "flag", description="'flag': keep the segment, with the broken rules in its `quality_flags`; 'drop': "
        "leave it out of the transcript and write it to filtered-*.jsonl.")
    flag_empty: bool = Field(True, description="Rule 'empty': the segment's text is empty.")
    min_avg_logprob: Optional[float] = Field(
        -1.0, description="Rule 'low_logprob': mean token log-probability below this (Whisper's own fallback "
        "threshold is -1.0).")
    max_compression_ratio: Optional[float] = Field(
        2.4, gt=0, description="Rule 'high_compression_ratio': text compresses (zlib) better than this, i.e. it "
        "repeats itself (Whisper's threshold: 2.4).")
    min_chars_per_s: Optional[float] = Field(
        None, ge=0, description="Rule 'too_few_chars_per_s': fewer characters per second of speech than this.")
    max_chars_per_s: Optional[float] = Field(
        40.0, gt=0, description="Rule 'too_many_chars_per_s': more characters per second of speech than this "
        "(fast English speech is about 20).")
    reference_wer_max: Optional[float] = Field(
        None, ge=0, description="File rule 'high_reference_wer': a file whose index row has a reference "
        "transcript (`text`, or `meta.reference_text`) and whose pseudo-label's WER against it (Whisper's "
        "normaliser) is above this (e.g. 0.1, as distil-whisper) is flagged, or with action 'drop' written to "
        "filtered-*.jsonl instead of transcripts-*.jsonl. None: off (the WER is recorded either way).")


class MetricsConfig(_Section):
    pushgateway_url: Optional[str] = Field(
        None, description="Prometheus Pushgateway (e.g. http://pushgateway:9091): the run's counters are pushed "
        "there when the job ends. None: not pushed (run.json has them either way).")
    job_name: str = Field("asr_distill", description="Pushgateway job label.")
    push_timeout_s: float = Field(10.0, gt=0, description="A push that takes longer is given up (with a warning).")


class CostConfig(_Section):
    """Prices and a throughput for run.json's `cost` (asr_distill/cost.py); every field optional."""

    gpu_hour: Optional[float] = Field(None, ge=0, description="Price of one GPU-hour: cost in money per 1000 "
                                      "audio hours, and a sizing run's forecast in money.")
    cpu_core_hour: Optional[float] = Field(None, ge=0, description="Price of one CPU-core-hour.")
    segment_audio_s_per_gpu_s: Optional[float] = Field(
        None, gt=0, description="Seconds of segment audio one working GPU transcribes per second (a finished "
        "run's run.json: cost.segment_audio_s_per_working_gpu_s): with --stop_after=segment, run.json predicts "
        "the full job's GPU-hours.")
    engine_start_s: float = Field(0.0, ge=0, description="An engine's start, added once to that forecast.")
    engine_end_s: float = Field(0.0, ge=0, description="An engine's end (last result to exit), added once.")
    throughput_from: Optional[str] = Field(
        None, description="A finished run's run.json whose cost (segment_audio_s_per_working_gpu_s, "
        "engine_start_s, engine_end_s) the forecast uses (when segment_audio_s_per_gpu_s is not given).")


class TermsConfig(_Section):
    """Term chunks for the retriever (`--glossary`; asr_distill/terms.py, transforms/terms.py)."""

    context_s: float = Field(1.0, ge=0, description="Words within this many seconds of a term go into its chunk.")
    max_chunk_s: float = Field(5.0, gt=0, le=30, description="No chunk is longer (context words are left out first).")
    margin_s: float = Field(0.25, ge=0, description="Audio kept before a chunk's first word and after its last "
                            "(word times from alignment are off by about 0.15 s: benchmarks/RESULTS.md).")
    no_term_ratio: float = Field(0.1, ge=0, description="No-term chunks per term chunk (a segment without a term "
                                 "gets one with this probability).")
    no_term_s: float = Field(2.0, gt=0, description="Length of a no-term chunk (whole words, about this long).")
    align_model: Optional[str] = Field(None, description="CTranslate2 Whisper directory that times the words of "
                                       "segments with a term (forced alignment of the text the backend wrote); "
                                       "None: the embedded Whisper base.")
    align_device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="Where alignment runs.")
    shard_mb: int = Field(64, ge=1, description="Chunk audio is written to packed shards of about this size "
                          "(term-shards/ beside the outputs), each before the texts that point into it.")
    retriever: Optional[str] = Field(None, description="A trained term retriever (final.pt of `python -m "
                                     "asr_distill.retrieval.train`; `--retriever`): with a glossary, each segment's "
                                     "audio is scored against it first and the terms found go into the teacher's "
                                     "prompt (faster-whisper: hotwords; Whisper on vLLM: its previous text; "
                                     "Qwen2-Audio, Qwen3-Omni: the instruction), written as meta.term_hints.")
    hints_top_k: int = Field(1, ge=1, description="At most this many term hints a segment, best first. 1 was chosen "
                             "on a validation voice (benchmarks/term_hints.py: term recall 0.195 -> 0.39, hinted terms "
                             "written but not spoken in 0.5% of segments; with 5, 0.365 and 9.5%).")
    hints_threshold: Optional[float] = Field(None, ge=-1, le=1, description="Least retriever score of a hint; None: "
                                             "the one its training run chose on validation for hints (test.json "
                                             "`hint_threshold`: the lowest at which three hints in four are right; "
                                             "none when it found no such score), else (a run from before "
                                             "hints) its `operating_threshold`.")
    hints_device: Literal["cpu", "cuda"] = Field("cpu", description="Where the retriever scores segments.")


class Config(_Section):
    data: DataConfig = DataConfig()
    audio: AudioConfig = AudioConfig()
    vad: VadConfig = VadConfig()
    segmenting: SegmentingConfig = SegmentingConfig()
    inference: InferenceConfig = InferenceConfig()
    writer: WriterConfig = WriterConfig()
    filters: FiltersConfig = FiltersConfig()
    metrics: MetricsConfig = MetricsConfig()
    cost: CostConfig = CostConfig()
    terms: TermsConfig = TermsConfig()

    def digest(self) -> str:
        """Stable short hash of the effective config, recorded in run.json."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def work_digest(self) -> str:
        """Hash of what decides segment ids and texts; a resumed run must match the interrupted one."""
        blob = json.dumps(self.model_dump(mode="json", include={"vad", "segmenting", "inference"}), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def with_backend(self, backend: Optional[str]) -> "Config":
        if not backend:
            return self
        return validate_config({**self.model_dump(mode="json"),
                                "inference": {**self.inference.model_dump(mode="json"), "backend": backend}})


def _explain(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"{where}: {e['msg']}")
    return "invalid config: " + "; ".join(lines)


def validate_config(data: dict) -> Config:
    try:
        return Config.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(_explain(err)) from None


def read_config_file(path: str | Path) -> dict:
    """A YAML config file's mapping of sections ({} for an empty file); a clear ConfigError otherwise."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {err}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of sections, got {type(data).__name__}")
    return data or {}


def load_config(path: Optional[str | Path] = None) -> Config:
    """Config from a YAML file, or all defaults when no path is given."""
    if path is None:
        return Config()
    return validate_config(read_config_file(path))
