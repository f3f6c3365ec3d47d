"""The forking worker pool's watch: a worker that never connects to its runner is started again."""

import multiprocessing
import socket
import time
from types import SimpleNamespace

from asr_distill.processes import alive
from beam_pipeline.worker_pool import ForkingWorkerPool, _Forked


def _hang() -> None:
    time.sleep(60)


def _connect(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)):
        time.sleep(60)


def test_a_worker_that_never_connects_is_forked_again_under_its_id():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        forked = []

        class Pool(ForkingWorkerPool):
            def _fork(self, request):  # the first two starts hang before connecting (or die), the third connects
                target, args = [(_hang, ()), (time.sleep, (0,)), (_connect, (port,))][len(forked)]
                process = multiprocessing.get_context("fork").Process(target=target, args=args, daemon=True)
                process.start()
                forked.append(_Forked(process))
                return forked[-1]

        pool = Pool()
        request = SimpleNamespace(worker_id="4-1", control_endpoint=SimpleNamespace(url=f"localhost:{port}"))
        first = pool._fork(request)
        pool._worker_processes["4-1"] = first
        started = time.monotonic()
        pool._watch(request, first, connect_s=1.0, restarts=3)
        assert len(forked) == 3 and pool._worker_processes["4-1"] is forked[2]  # the runner gets a worker
        assert not alive(forked[0].process.pid) and alive(forked[2].process.pid)
        assert time.monotonic() - started < 10
        forked[2].kill()

        # a worker the runner stopped (StopWorker took it out) is not started again
        forked.clear()
        pool._worker_processes["4-1"] = lone = pool._fork(request)
        del pool._worker_processes["4-1"]
        pool._watch(request, lone, connect_s=0.5, restarts=3)
        assert len(forked) == 1
        lone.kill()
