"""The forking worker pool's watch: a worker that never connects to its runner is started again."""

import socket
import subprocess
import sys
import time
from types import SimpleNamespace

from asr_distill.processes import alive
from beam_pipeline.worker_pool import ForkingWorkerPool


class _Child:
    """A stand-in for a forked worker: a fresh process (it inherits none of this test process's sockets)."""

    def __init__(self, code: str):
        self.popen = subprocess.Popen([sys.executable, "-c", code])
        self.process = SimpleNamespace(pid=self.popen.pid)

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait()

    def exit_code(self):
        return self.popen.poll()


def test_a_worker_that_never_connects_is_forked_again_under_its_id(caplog):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        starts = ["import time; time.sleep(60)",  # hangs before it connects
                  "pass",  # dies before it connects
                  f"import socket, time; s = socket.create_connection(('127.0.0.1', {port})); time.sleep(60)"]
        forked = []

        class Pool(ForkingWorkerPool):
            def _fork(self, request):
                forked.append(_Child(starts[len(forked)]))
                return forked[-1]

        pool = Pool()
        request = SimpleNamespace(worker_id="4-1", control_endpoint=SimpleNamespace(url=f"localhost:{port}"))
        pool._worker_processes["4-1"] = first = pool._fork(request)
        started = time.monotonic()
        pool._watch(request, first, connect_s=3.0, restarts=3)
        assert len(forked) == 3 and pool._worker_processes["4-1"] is forked[2]  # the runner gets a worker
        assert not alive(forked[0].process.pid) and alive(forked[2].process.pid)
        said = [r.getMessage() for r in caplog.records if r.name == "beam_pipeline.worker_pool"]
        assert "has not connected in 3 s" in said[0]  # the one that hung: killed after connect_s
        assert "exited with code 0 before it connected" in said[1]  # the one that died: forked again at once
        assert time.monotonic() - started < 15
        forked[2].kill()

        # a worker the runner stopped (StopWorker took it out) is not started again
        forked.clear()
        lone = pool._fork(request)
        pool._watch(request, lone, connect_s=1.0, restarts=3)
        assert len(forked) == 1
        lone.kill()
