"""What every `python -m beam_pipeline[.command]` shares: quiet logging, usage errors as one line."""

from __future__ import annotations

import logging
import sys
from typing import Callable

# Beam warnings that say nothing about the user's job.
_NOISE = ("requested in with_outputs() but not declared in type hints", "apitools not found",
          "Resource module is not available", "Really starting service at", "Really destroying service at")
# Said by the launcher and again by every SDK worker process: once is enough.
_ONCE = ("Discarding unparseable args",)


class _QuietFilter(logging.Filter):
    def __init__(self):
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(n in message for n in _NOISE):
            return False
        if any(o in message for o in _ONCE):
            if message in self._seen:
                return False
            self._seen.add(message)
        return True


def setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet = _QuietFilter()
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet)


def start_engines_early(argv: list) -> list:
    """On DirectRunner with the vllm backend, start the machine's engine servers now, before the
    slow imports; the job connects to them as usual. Anything off (a bad config, an engine that will
    not start) is left for run() to report."""
    import argparse

    from asr_distill.config import ConfigError

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in ("--config", "--backend", "--runner", "--stop_after"):
        parser.add_argument(flag)
    flags, _ = parser.parse_known_args(argv)
    if flags.stop_after or (flags.runner or "DirectRunner").split(".")[-1] not in ("DirectRunner", "direct"):
        return []
    try:
        from asr_distill.config import load_config

        cfg = load_config(flags.config).with_backend(flags.backend)
    except ConfigError:
        return []
    if cfg.inference.backend != "vllm" or not cfg.inference.share_across_processes:
        return []
    from asr_distill.asr.engine_server import start_engines
    from asr_distill.asr.engine_loop import EngineFailedError

    try:
        specs = start_engines(cfg.inference)
    except EngineFailedError:
        return []
    # This process and the SDK workers it starts from now on yield the CPU to the engine servers
    # (vLLM's start competed with 16 decoding workers): a lower priority, and off the engine's cores,
    # more of them while the engines start (engine_start_cpus), the usual engine_cpus once they are ready.
    import threading

    from asr_distill.cpus import yield_to_engine

    vllm = cfg.inference.vllm
    after = yield_to_engine(vllm.front_end_nice, vllm.engine_cpus, vllm.engine_start_cpus)
    if vllm.engine_start_cpus > vllm.engine_cpus:
        threading.Thread(target=_front_end_when_ready, args=(specs, after, cfg.inference.request_timeout_s),
                         name="front-end-cpus", daemon=True).start()
    return specs


def _front_end_when_ready(specs: list, cpus: set, timeout_s: float) -> None:
    """Once the engines are ready (or failed, or not within timeout_s), the launcher and the SDK workers
    it started move to `cpus`; twice, for the threads started while the first pass ran."""
    import time

    from asr_distill.asr.engine_server import wait_ready
    from asr_distill.cpus import move_front_end

    ready = wait_ready(specs, timeout_s)
    for _ in range(2):
        moved = move_front_end(cpus)
        time.sleep(1.0)
    logging.getLogger(__name__).info("engines %s; front end (%d threads) now on %d CPUs",
                                     "ready" if ready else "not ready", moved, len(cpus))


def main(run: Callable[[list], object], argv=None) -> int:
    """Calls run(argv). A UsageError or ConfigError becomes `error: ...` on stderr and exit status 2; a
    job that failed (JobFailedError), or whose rows or segments are not all accounted for, exit 1."""
    from asr_distill.config import ConfigError
    from beam_pipeline.pipeline import JobFailedError, UsageError

    try:
        record = run(sys.argv[1:] if argv is None else argv)
    except (UsageError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except JobFailedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if isinstance(record, dict) and (record.get("reconciled") is False or record.get("segments_reconciled") is False):
        print("error: the run finished but not everything is accounted for (see the summary above and "
              "run.json); `python -m beam_pipeline.check DIR` says what", file=sys.stderr)
        return 1
    return 0
