import atexit
import logging
import os
import sys

from beam_pipeline.cli import main, setup_logging, start_engines_early

if __name__ == "__main__":
    setup_logging()
    # A local vllm job's engine starts before Beam and torch are even imported (about 5 s sooner).
    engines = start_engines_early(sys.argv[1:])
    try:
        # Imported after logging is set up: Beam logs at import time.
        from beam_pipeline.pipeline import run

        status = main(run)
    finally:
        if engines:  # run() stops them when it ends; this covers the ways it can stop early
            from asr_distill.asr.engine_server import stop_engines

            stop_engines(engines)
    # Everything is written and the engines are gone: leave without tearing the modules down (torch's
    # and Beam's took ~1 s of every command, measured on the engine double). The exit hooks still run:
    # Beam's stop the job server it started for a portable runner (a JVM left running otherwise).
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
