"""Beam's worker pool for the EXTERNAL environment, with SDK workers forked from a warm process.

  python -m beam_pipeline.worker_pool --service_port=50000

The same gRPC service as Beam's `apache_beam.runners.worker.worker_pool_main` (a Flink or Spark task
asks it for an SDK worker, then talks to that worker itself), with one difference: Beam's pool starts
each SDK worker as a new `python -c ...` process, which imports Beam, torch and this pipeline's
transforms again (about 5 CPU-s) before its first bundle, and portable runners start a worker for
every stage of every task (the Spark runner started 14 for the 3-file demo job). Here each worker is
forked from a server process (multiprocessing's forkserver) that imported all of that once, so a
worker starts in milliseconds; it is still a process of its own, which a runner can lose and the job
survive (tests/test_runners.py kills one). Worker processes are named `beam-sdk-worker`
(/proc/PID/comm).

The forkserver imports modules only (no threads, no gRPC channels, no models): the workers load
models in their DoFns' setup, as before.

A runner that asked for a worker waits for it to connect, without end (Beam's
ExternalEnvironmentFactory: a Flink job hung so in a test run, its worker forked but never connected).
So the pool watches each worker it starts: one that has neither connected (an established TCP
connection, read from /proc) nor been stopped within CONNECT_S is killed and forked again, same id and
endpoint, up to RESTARTS times; the runner then sees the worker it asked for. One that exits before it
connects is forked again at once, its exit code logged (in a full test run one did, and the job
waited the 60 s for it).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import multiprocessing
import subprocess
import sys
import threading
import time
import traceback

from apache_beam.portability.api import beam_fn_api_pb2
from apache_beam.runners.worker import worker_pool_main

from asr_distill.processes import tcp_connected

log = logging.getLogger("beam_pipeline.worker_pool")

# What an SDK worker imports to run this pipeline's stages, imported once by the forkserver.
PRELOAD = ["apache_beam.runners.worker.sdk_worker", "apache_beam.transforms.core", "numpy", "torch",
           "beam_pipeline.pipeline", "transforms.decode", "transforms.vad", "transforms.segments",
           "transforms.inference", "transforms.reassemble", "transforms.write", "transforms.admit",
           "transforms.read_index"]
WORKER_NAME = b"beam-sdk-worker"  # 15 bytes: what the kernel keeps of a process name
CONNECT_S = 60.0  # a worker forked in milliseconds connects in about a second; this is for a loaded machine
RESTARTS = 3


def _name_process(name: bytes) -> None:
    try:
        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name), 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):  # not Linux: the name is cosmetic
        pass


def run_worker(control_url: str, worker_id: str, state_cache_size: int, data_buffer_time_limit_ms: int,
               nice: int = 0, engine_cpus: int = 0) -> None:
    """In the forked process: one SDK harness, as Beam's pool runs it in `python -c`; on a GPU node it
    yields the CPU to the node's engine server (asr_distill/cpus.py), as DirectRunner's workers do."""
    _name_process(WORKER_NAME)
    if nice or engine_cpus:
        from asr_distill.cpus import yield_to_engine

        yield_to_engine(nice, engine_cpus)
    from apache_beam.runners.worker.sdk_worker import SdkHarness

    SdkHarness(control_url, worker_id=worker_id, state_cache_size=state_cache_size,
               data_buffer_time_limit_ms=data_buffer_time_limit_ms).run()


class _Forked:
    """A forked worker as Beam's pool handles a subprocess (terminate, wait with a timeout, kill)."""

    def __init__(self, process: multiprocessing.Process):
        self.process = process

    def terminate(self) -> None:
        self.process.terminate()

    def kill(self) -> None:
        self.process.kill()

    def exit_code(self) -> int | None:
        return self.process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired(f"sdk worker {self.process.pid}", timeout)
        return self.process.exitcode


class ForkingWorkerPool(worker_pool_main.BeamFnExternalWorkerPoolServicer):
    front_end_nice = 0  # set by main() from its flags
    engine_cpus = 0

    def StartWorker(self, request, unused_context):  # noqa: N802 (the gRPC method's name)
        try:
            worker = self._fork(request)
            self._worker_processes[request.worker_id] = worker
            threading.Thread(target=self._watch, args=(request, worker), daemon=True,
                             name=f"watch-{request.worker_id}").start()
            return beam_fn_api_pb2.StartWorkerResponse()
        except Exception:  # the runner shows this to the user
            return beam_fn_api_pb2.StartWorkerResponse(error=traceback.format_exc())

    def _fork(self, request) -> _Forked:
        from beam_pipeline.worker_pool import run_worker as target  # by its module's name, even under -m

        process = multiprocessing.get_context("forkserver").Process(
            target=target, name=f"sdk-worker-{request.worker_id}",
            args=(request.control_endpoint.url, request.worker_id, self._state_cache_size,
                  self._data_buffer_time_limit_ms, self.front_end_nice, self.engine_cpus))
        process.start()
        log.info("SDK worker %s: pid %d", request.worker_id, process.pid)
        return _Forked(process)

    def _watch(self, request, worker: _Forked, connect_s: float = CONNECT_S, restarts: int = RESTARTS) -> None:
        """Forks the worker again (same id and endpoint) while it has neither connected nor been stopped."""
        wid = request.worker_id
        for attempt in range(restarts + 1):
            deadline = time.monotonic() + connect_s
            while time.monotonic() < deadline:
                if self._worker_processes.get(wid) is not worker:  # stopped (StopWorker), or replaced
                    return
                if tcp_connected(worker.process.pid):
                    return
                if worker.exit_code() is not None:  # gone before it connected: no use waiting
                    break
                time.sleep(0.5)
            if attempt == restarts:
                log.error("SDK worker %s never connected to %s after %d starts; the runner waits for it",
                          wid, request.control_endpoint.url, restarts + 1)
                return
            code = worker.exit_code()
            log.warning("SDK worker %s (pid %s) %s: starting it again", wid, worker.process.pid,
                        f"exited with code {code} before it connected" if code is not None
                        else f"has not connected in {connect_s:.0f} s")
            worker.kill()
            worker = self._fork(request)
            if self._worker_processes.get(wid) is None:  # stopped meanwhile
                worker.kill()
                return
            self._worker_processes[wid] = worker


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m beam_pipeline.worker_pool", description=__doc__.split("\n\n")[0])
    parser.add_argument("--service_port", type=int, required=True, help="the port EXTERNAL's environment_config names")
    parser.add_argument("--front_end_nice", type=int, default=0,
                        help="GPU nodes: SDK workers run at this niceness, below the node's vLLM engine server "
                             "(10, as vllm.front_end_nice does on DirectRunner)")
    parser.add_argument("--engine_cpus", type=int, default=0,
                        help="GPU nodes: logical CPUs (whole physical cores) the SDK workers keep off, for the "
                             "engine server (as vllm.engine_cpus on DirectRunner)")
    args = parser.parse_args(argv)
    ForkingWorkerPool.front_end_nice, ForkingWorkerPool.engine_cpus = args.front_end_nice, args.engine_cpus
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    multiprocessing.set_forkserver_preload(PRELOAD)
    multiprocessing.get_context("forkserver").Process(target=time.sleep, args=(0,)).start()  # warm it now
    address, server = ForkingWorkerPool.start(use_process=True, port=args.service_port)
    log.info("worker pool at %s; SDK workers forked from a process with %s imported", address, ", ".join(PRELOAD))
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
