"""One vLLM engine per GPU, shared by every process of the machine: the engine server.

Why a process of its own: an engine hosted inside one SDK worker process lives and dies with that
worker, and Beam's runners end workers when they please (measured: with 16 DirectRunner processes the
hosting worker's engine got SIGTERM mid-run and segments vanished). The server is started, detached,
by the first process that needs it (the launcher on DirectRunner, else the first RunInference to load
its model), so it starts while the front end decodes; every other process on the machine connects to
it. It exits when told to (the launcher, at the end of a local job) or after `idle_exit_s` without
work, never while it holds requests.

How an engine dies, and what happens then: its engine core process is killed or crashes, it raises
in a step, or it holds requests and makes no progress for `vllm.stall_s` (the loop's watchdog,
`engine_loop`, sees each within a second or `stall_s`); the server then drops its socket, answers
every request it held as died, kills its process group (vLLM's engine core with it, so the GPU is
free) and exits. A server that is itself killed may leave its engine core orphaned, and vLLM forks
that core (its default), so the core holds copies of the server's sockets: the clients never read
an end of file. So each client watches the server's process itself (the pid behind its socket,
SO_PEERCRED), and the client that starts the next server first kills what is left of the old one's
process group. Where no client is left to do that (the whole job died with its server), the
server's guard does: a small process in the server's group that kills the group once the server is
gone (`processes.guard_group`).

Wire: a Unix socket per engine in `engine_dir()` (`ASR_DISTILL_ENGINE_DIR`, private to the user), with
`multiprocessing.connection` messages. Starting is serialised by a file lock, so one server per engine
spec and machine. Clients restart a server that went away and send again what it held, at most
`vllm.engine_restarts` times per batch, after which the job fails with `EngineFailedError` (never
silently: a request is always answered or failed).

Copies (`model_copies`): copy i runs with `CUDA_VISIBLE_DEVICES` set to its own GPUs
(`tensor_parallel_size` of them); each process sends a request to the copy it has fewest requests in.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import hashlib
import json
import logging
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Optional, Sequence

from asr_distill.asr.engine_loop import EngineDiedError, EngineFailedError, EngineLoop, engine_args
from asr_distill.asr.vllm_engine import ENGINE_MODULE_ENV, engine_module
from asr_distill.processes import alive, process_group, start_time

log = logging.getLogger(__name__)

ENGINE_DIR_ENV = "ASR_DISTILL_ENGINE_DIR"
_SPAWNED_AT_ENV = "ASR_DISTILL_ENGINE_SPAWNED_AT"
_CONNECT_TIMEOUT_S = 120.0  # the server binds its socket before it imports vLLM: seconds, not minutes
_OLD_SERVER_EXIT_S = 120.0  # a dying server frees its GPU memory before the next one starts
_RECENT_FAILURE_S = 60.0  # a server that failed to start is not started again by every process
_OLD_GROUP_EXIT_S = 30.0  # SIGKILLed leftovers of a dead server (its engine core) are gone in far less
_HELLO_TIMEOUT_S = 30.0
_WATCH_S = 0.25  # how often a client waiting on its server asks whether the server process lives


class EngineStoppedError(EngineDiedError):
    """The server stopped (idle, or told to) with this request queued: send it again, no harm done."""


_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, its last a NUL


def engine_dir() -> Path:
    root = os.environ.get(ENGINE_DIR_ENV) or os.path.join(tempfile.gettempdir(), f"asr_distill-engines-{os.getuid()}")
    path = Path(root)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class EngineSpec:
    """What makes an engine: its vLLM arguments, its GPUs, its engine module; plus when it may exit."""

    args: dict
    copy: int = 0
    devices: Optional[str] = None  # CUDA_VISIBLE_DEVICES of the server; None: the machine's own
    idle_exit_s: float = 120.0
    module: Optional[str] = None  # ASR_DISTILL_VLLM_ENGINE (tests: the engine double)
    stall_s: float = 30.0

    @property
    def name(self) -> str:
        blob = json.dumps([self.args, self.devices, self.module], sort_keys=True, default=str).encode()
        return f"{hashlib.sha256(blob).hexdigest()[:12]}-{self.copy}"

    def path(self, suffix: str) -> Path:
        path = engine_dir() / f"{self.name}.{suffix}"
        if suffix == "sock" and len(os.fsencode(path)) > _MAX_SOCKET_PATH:
            # a Unix socket's path has 108 bytes: one under a long engine dir lives in a short folder of
            # its own that every process derives from that dir alike
            digest = hashlib.sha256(os.fsencode(path.parent)).hexdigest()[:12]
            short = Path(tempfile.gettempdir()) / f"asr_distill-{os.getuid()}-{digest}"
            short.mkdir(mode=0o700, exist_ok=True)
            path = short / path.name
        return path


def engine_specs(cfg) -> list[EngineSpec]:
    """One spec per copy; copy i gets GPUs [i*tp, (i+1)*tp) of CUDA_VISIBLE_DEVICES (or of 0..N-1)."""
    from asr_distill.asr.families import family_for

    args = engine_args(cfg, family_for(cfg.model, cfg.model_family))
    copies, tp = cfg.model_copies, cfg.vllm.tensor_parallel_size
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if copies > 1 and visible and len(visible) < copies * tp:
        raise EngineFailedError(f"model_copies={copies} x tensor_parallel_size={tp} needs {copies * tp} GPUs, "
                                f"CUDA_VISIBLE_DEVICES={','.join(visible)} has {len(visible)}")
    specs = []
    for i in range(copies):
        devices = None
        if copies > 1:  # one copy sees the machine's GPUs as they are (tensor parallel over them)
            devices = ",".join(visible[i * tp:(i + 1) * tp] if visible else map(str, range(i * tp, (i + 1) * tp)))
        specs.append(EngineSpec(args, i, devices, cfg.vllm.idle_exit_s, os.environ.get(ENGINE_MODULE_ENV),
                                cfg.vllm.stall_s))
    return specs


# ---------------------------------------------------------------------------------------- server side


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _audio_seconds(prompt: dict) -> float:
    source = prompt.get("encoder_prompt", prompt)
    audio, rate = source.get("multi_modal_data", {}).get("audio", ((), 1))
    return len(audio) / rate


class EngineServer:
    def __init__(self, spec: EngineSpec):
        self.spec = spec
        self.module = engine_module()
        self.loop = EngineLoop(self.module.sampling_params, self.module.engine_error, spec.stall_s)
        self.loop.on_death = self._on_death
        self.loop.after_death = self._exit_dead
        self.state = "starting"
        self.message = ""
        self._listener: Optional[Listener] = None
        self._conns: set = set()
        self._lock = threading.Lock()
        self._stop_reason: Optional[str] = None
        self._last_activity = time.monotonic()
        self.stats = {"name": spec.name, "pid": os.getpid(), "copy": spec.copy, "devices": spec.devices,
                      "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                      "spawned_at": float(os.environ.get(_SPAWNED_AT_ENV) or time.time()), "ready_at": None, "first_request_at": None,
                      "last_result_at": None, "requests": 0, "results": 0, "request_errors": 0,
                      "audio_s": 0.0, "clients": [], "client_nice": {}, "nice": os.nice(0), "exit": None}

    # -- lifecycle

    def serve(self) -> int:
        self._listener = Listener(str(self.spec.path("sock")), family="AF_UNIX")
        _write_atomic(self.spec.path("pid"), str(os.getpid()))
        self.spec.path("error").unlink(missing_ok=True)
        threading.Thread(target=self._accept, name="accept", daemon=True).start()
        threading.Thread(target=self._watch, name="watch", daemon=True).start()
        guard = subprocess.Popen([sys.executable, "-m", "asr_distill.processes", "guard", str(os.getpid())],
                                 stdin=subprocess.DEVNULL, close_fds=True)
        try:
            return self._serve()
        finally:  # an orderly end: nothing is left for the guard to kill
            guard.kill()
            guard.wait()

    def _serve(self) -> int:
        log.info("engine %s starting (devices %s)", self.spec.name, self.spec.devices)
        try:
            engine = self.module.start_engine(self.spec.args)
        except BaseException as err:  # noqa: BLE001 - every client hears why, then the process ends
            return self._failed_to_start(f"the vLLM engine did not start: {type(err).__name__}: {err}")
        self.state, self.stats["ready_at"] = "ready", time.time()
        self._touch()
        log.info("engine %s ready", self.spec.name)
        self._write_stats()
        self.loop.run(engine)  # a death ends the process in _exit_dead
        self.loop.fail_remaining(EngineStoppedError(f"engine server stopped ({self._stop_reason})"))
        self.stats["exit"] = self._stop_reason
        self._write_stats()
        self._close_listener()
        self.module.shutdown(engine)
        self._write_stats(final=True)  # its CPU with the engine's own processes, once they are gone
        return 0

    def _failed_to_start(self, message: str) -> int:
        self.state, self.message = "failed", message
        log.error("%s", message)
        _write_atomic(self.spec.path("error"), message)
        with self._lock:
            conns = list(self._conns)
        for conn, send_lock in conns:
            self._send(conn, send_lock, ("fatal", message))
        self._close_listener()
        self.stats["exit"] = message
        self._write_stats()
        return 1

    def _on_death(self, reason: str) -> None:
        # Before any waiting request hears of it: no client may reconnect to a dying server.
        self.state = "dead"
        log.error("engine %s died: %s", self.spec.name, reason)
        self._close_listener()
        with self._lock:
            conns = list(self._conns)
        for conn, send_lock in conns:  # every client hears the cause, those holding no request too
            self._send(conn, send_lock, ("died", reason))

    def _exit_dead(self, reason: str) -> None:
        """Every client has heard: go, with the engine's own processes (this server leads their
        group), now. vLLM's orderly shutdown could wait on the dead core; the GPU must be free for the
        server the clients are starting."""
        with self._lock:
            self.stats["exit"], self.stats["died_at"] = reason, time.time()
        self._write_stats(final=True)
        logging.shutdown()
        os.killpg(os.getpgrp(), signal.SIGKILL)

    def _close_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()  # unlinks the socket
            except OSError:
                pass
            self._listener = None

    def _touch(self) -> None:
        self._last_activity = time.monotonic()

    def _watch(self) -> None:
        written = None
        while True:
            time.sleep(0.5)
            if self.state == "ready" and not self.loop.busy and self._stop_reason is None \
                    and time.monotonic() - self._last_activity > self.spec.idle_exit_s:
                self._stop(f"idle for {self.spec.idle_exit_s:g} s")
            snapshot = (self.stats["requests"], self.stats["results"])
            if snapshot != written:
                self._write_stats()
                written = snapshot

    def _stop(self, reason: str) -> None:
        self._stop_reason = reason
        self.loop.stop()
        if self.state == "starting":
            # The engine is being built in the main thread and holds nothing yet: leave now, with the
            # engine's own processes (this server leads their process group).
            log.info("stopped while starting (%s)", reason)
            self.stats["exit"] = reason
            self._write_stats()
            self._close_listener()
            os.killpg(os.getpgrp(), signal.SIGKILL)

    def _write_stats(self, final: bool = False) -> None:
        if final:
            me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            self.stats.update(exit_at=time.time(), cpu_s=round(me.ru_utime + me.ru_stime + children.ru_utime
                                                                + children.ru_stime, 3))
        with self._lock:
            stats = dict(self.stats, clients=sorted(set(self.stats["clients"])))
        _write_atomic(self.spec.path("stats.json"), json.dumps(stats))

    # -- connections

    def _accept(self) -> None:
        while True:
            listener = self._listener
            if listener is None:
                return
            try:
                conn = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    @staticmethod
    def _send(conn: Connection, send_lock: threading.Lock, message) -> None:
        with send_lock:
            try:
                conn.send(message)
            except (OSError, ValueError):
                pass  # the client is gone; its requests are answered to nobody

    def _handle(self, conn: Connection) -> None:
        send_lock = threading.Lock()
        self._send(conn, send_lock, ("hello", {"pid": os.getpid(), "state": self.state, "message": self.message}))
        if self.state in ("failed", "dead"):
            conn.close()
            return
        with self._lock:
            self._conns.add((conn, send_lock))
        self._touch()
        try:
            while True:
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    return
                kind = message[0]
                if kind == "generate":
                    _, request_id, prompt, sampling = message
                    self._generate(conn, send_lock, request_id, prompt, sampling)
                elif kind == "client":
                    with self._lock:
                        self.stats["clients"].append(message[1])
                        self.stats["client_nice"][str(message[1])] = message[2]
                elif kind == "shutdown":
                    self._stop("shut down by its launcher")
                elif kind == "stats":
                    with self._lock:
                        self._send(conn, send_lock, ("stats", dict(self.stats)))
        finally:
            with self._lock:
                self._conns.discard((conn, send_lock))
            conn.close()

    def _generate(self, conn, send_lock, request_id: str, prompt: dict, sampling: dict) -> None:
        self._touch()
        with self._lock:
            self.stats["requests"] += 1
            self.stats["audio_s"] += _audio_seconds(prompt)
            self.stats["first_request_at"] = self.stats["first_request_at"] or time.time()
        future = self.loop.submit(request_id, prompt, sampling)
        future.add_done_callback(lambda f: self._answer(conn, send_lock, request_id, f))

    def _answer(self, conn, send_lock, request_id: str, future: concurrent.futures.Future) -> None:
        self._touch()
        err = future.exception()
        with self._lock:
            self.stats["last_result_at"] = time.time()
            self.stats["results" if err is None else "request_errors"] += 1
        if err is None:
            message = ("result", request_id, future.result())
        elif isinstance(err, EngineStoppedError):
            message = ("error", request_id, "stopped", str(err))
        elif isinstance(err, EngineDiedError):
            message = ("error", request_id, "died", str(err))
        elif isinstance(err, ValueError):
            message = ("error", request_id, "request", str(err))
        else:
            message = ("error", request_id, "other", f"{type(err).__name__}: {err}")
        self._send(conn, send_lock, message)


# ---------------------------------------------------------------------------------------- client side


@dataclass(frozen=True)
class _Peer:
    """The process listening behind a connected Unix socket: the server, even when a process it
    forked holds a copy of that socket."""

    pid: int
    started: Optional[int]

    @classmethod
    def of(cls, conn: Connection) -> "_Peer":
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid = struct.unpack("3i", creds)[0]
        return cls(pid, start_time(pid))

    def alive(self) -> bool:
        return self.started is not None and start_time(self.pid) == self.started


def _server_pid(spec: EngineSpec) -> Optional[int]:
    try:
        return int(spec.path("pid").read_text())
    except (OSError, ValueError):
        return None


def _try_connect(spec: EngineSpec) -> Optional[tuple[Connection, dict]]:
    try:
        conn = Client(str(spec.path("sock")), family="AF_UNIX")
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    server = _Peer.of(conn)
    deadline = time.monotonic() + _HELLO_TIMEOUT_S
    try:
        while not conn.poll(_WATCH_S):  # a dead server's socket may be held by its orphaned engine core
            if not server.alive() or time.monotonic() > deadline:
                conn.close()
                return None
        kind, hello = conn.recv()
    except (EOFError, OSError):  # a dying server's socket took the connection and went away before its hello
        conn.close()
        return None
    if hello["state"] == "failed":
        conn.close()
        raise EngineFailedError(hello["message"])
    if hello["state"] == "dead":
        conn.close()
        return None
    return conn, hello


def _log_tail(spec: EngineSpec, lines: int = 12) -> str:
    try:
        return "\n".join(spec.path("log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _spawn(spec: EngineSpec) -> subprocess.Popen:
    spec_file = spec.path("spec.json")
    _write_atomic(spec_file, json.dumps(asdict(spec), default=str))
    env = dict(os.environ, **{_SPAWNED_AT_ENV: repr(time.time())})  # before the server's own imports
    if spec.devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = spec.devices
    if spec.module:
        env[ENGINE_MODULE_ENV] = spec.module
    with open(spec.path("log"), "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "asr_distill.asr.engine_server", str(spec_file)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, close_fds=True)


def _wait_for_exit(pid: int, timeout_s: float) -> None:
    """Until server `pid` and everything left in its process group (an orphaned engine core that
    holds the GPU, when the server itself was killed) are gone."""
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            log.warning("engine server %d did not exit in %.0f s; killing it", pid, timeout_s)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        time.sleep(0.1)
    # Linux keeps a process group's id from being reused while any member lives, so what is in the
    # old server's group is its own leftovers.
    left = process_group(pid)
    if not left:
        return
    log.warning("engine server %d left %d processes behind (its engine core?); killing them", pid, len(left))
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + _OLD_GROUP_EXIT_S
    while process_group(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _died(spec: EngineSpec) -> bool:
    """The spec's last server went without saying why (killed) or died with its engine."""
    stats = read_stats(spec)
    return stats is not None and (stats.get("exit") is None or "died_at" in stats)


def connect_or_start(spec: EngineSpec) -> tuple[Connection, dict, bool, bool]:
    """A connection to the spec's server, starting one if none is running: (conn, hello, started,
    restarted: started in place of one that died)."""
    with open(spec.path("lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _try_connect(spec)
        if found:
            return (*found, False, False)
        error = spec.path("error")
        if error.exists() and time.time() - error.stat().st_mtime < _RECENT_FAILURE_S:
            raise EngineFailedError(error.read_text())
        old = _server_pid(spec)
        if old is not None and old != os.getpid():
            _wait_for_exit(old, _OLD_SERVER_EXIT_S)
        restarted = old is not None and _died(spec)
        spec.path("sock").unlink(missing_ok=True)
        proc = _spawn(spec)
        deadline = time.monotonic() + _CONNECT_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            found = _try_connect(spec)
            if found:
                return (*found, True, restarted)
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        raise EngineFailedError(f"the engine server {spec.name} did not come up (exit {proc.poll()}); "
                                f"last lines of {spec.path('log')}:\n{_log_tail(spec)}")


class EngineClient:
    """This process's connection to one engine server; requests from any thread, answered as futures."""

    def __init__(self, spec: EngineSpec):
        self.spec = spec
        self._conn, hello, self.started, self.restarted = connect_or_start(spec)
        self.server_pid = hello["pid"]
        self._server = _Peer.of(self._conn)
        self._futures: dict[str, concurrent.futures.Future] = {}
        self._lock = threading.Lock()
        self.gone: Optional[BaseException] = None
        try:
            self._conn.send(("client", os.getpid(), os.nice(0)))
        except OSError:  # gone right after its hello: the reader finds it so, and requests go to a new one
            pass
        threading.Thread(target=self._read, name=f"engine-client-{spec.name}", daemon=True).start()

    @property
    def outstanding(self) -> int:
        return len(self._futures)

    def submit(self, request_id: str, prompt: dict, sampling: dict) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self.gone is not None:
                future.set_exception(self.gone)
                return future
            self._futures[request_id] = future
            try:
                self._conn.send(("generate", request_id, prompt, sampling))
            except (OSError, ValueError):
                # The server is gone (a broken pipe). The reader is about to find it so, after reading
                # what the server said before it went (why it died): it fails this request with that.
                pass
        return future

    def _resolve(self, request_id: str, result=None, error: Optional[BaseException] = None) -> None:
        with self._lock:
            future = self._futures.pop(request_id, None)
        if future is None:
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def _read(self) -> None:
        while True:
            try:
                if not self._conn.poll(_WATCH_S):
                    if self._server.alive() or self._conn.poll(0):  # what it said before it went comes first
                        continue
                    raise EOFError("the server process is gone")  # its socket may live on in its orphans
                message = self._conn.recv()
            except (EOFError, OSError):
                self._fail_all(EngineDiedError(f"the engine server {self.spec.name} (pid {self.server_pid}) "
                                               f"went away; its log: {self.spec.path('log')}"))
                return
            if message[0] == "result":
                self._resolve(message[1], result=message[2])
            elif message[0] == "error":
                _, request_id, kind, text = message
                error = {"request": ValueError, "died": EngineDiedError, "stopped": EngineStoppedError}.get(
                    kind, RuntimeError)(text)
                if isinstance(error, EngineDiedError):
                    with self._lock:
                        self.gone = self.gone or error  # new requests go to a new server
                self._resolve(request_id, error=error)
            elif message[0] == "died":  # the cause, before the server goes: it names the death
                with self._lock:
                    self.gone = self.gone or EngineDiedError(message[1])
            elif message[0] == "fatal":
                self._fail_all(EngineFailedError(message[1]))
                return

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            self.gone = self.gone or error  # the first cause heard (a died message) names the death
            futures, self._futures = self._futures, {}
        for future in futures.values():
            future.set_exception(self.gone)
        try:
            self._conn.close()
        except OSError:
            pass

    def close(self) -> None:
        self._fail_all(EngineStoppedError("client closed"))


class RemoteEngines:
    """The machine's engine servers for one config, as this process sees them (`generate_all`)."""

    def __init__(self, specs: Sequence[EngineSpec], restarts: int = 2, request_timeout_s: float = 900.0):
        self.specs = list(specs)
        self._restarts = restarts
        self._timeout = request_timeout_s
        self._clients: list[Optional[EngineClient]] = [None] * len(self.specs)
        self._lock = threading.Lock()
        self._started_again = 0

    @classmethod
    def for_config(cls, cfg) -> "RemoteEngines":
        return cls(engine_specs(cfg), cfg.vllm.engine_restarts, cfg.request_timeout_s)

    def start(self) -> None:
        """Connect to (starting if needed) every copy now, without waiting for their engines."""
        for i in range(len(self.specs)):
            self._client(i)

    def _client(self, i: int) -> EngineClient:
        with self._lock:
            client = self._clients[i]
            if client is None or client.gone is not None:
                client = EngineClient(self.specs[i])
                self._started_again += int(client.restarted)  # this process started it after one died
                self._clients[i] = client
            return client

    def _least_busy(self) -> int:
        with self._lock:
            load = [c.outstanding if c is not None and c.gone is None else 0 for c in self._clients]
        return min(range(len(load)), key=load.__getitem__)

    def generate_all(self, requests: Sequence[tuple[str, dict, dict]]) -> list:
        """One result per request: an EngineOutput, or its own ValueError/TimeoutError in place.

        Requests a dying engine held are sent again to its restarted server; past `restarts` deaths
        in one call this raises EngineFailedError."""
        results: list = [None] * len(requests)
        todo = list(range(len(requests)))
        deaths = stops = 0
        while todo:
            sent = []
            for i in todo:
                copy = self._least_busy()
                sent.append((i, copy, self._client(copy).submit(*requests[i])))
            todo, last = [], None
            for i, copy, future in sent:
                try:
                    results[i] = future.result(timeout=self._timeout)
                except EngineStoppedError:
                    todo.append(i)
                    stops += 1
                except EngineDiedError as err:
                    todo.append(i)
                    last = err
                except (ValueError, TimeoutError, concurrent.futures.TimeoutError) as err:
                    results[i] = err
            if last is not None:
                deaths += 1
                if deaths > self._restarts:
                    raise EngineFailedError(
                        f"the vLLM engine died {deaths} times while serving one batch "
                        f"(vllm.engine_restarts={self._restarts}); last: {last}")
                log.warning("vLLM engine died (%s); sending %d requests again", last, len(todo))
            if stops > 10 * len(requests):
                raise EngineFailedError("the engine servers keep stopping while requests are sent")
        return results

    def take_restarts(self) -> int:
        """Servers this process started in place of one that died, since the last call."""
        with self._lock:
            n, self._started_again = self._started_again, 0
        return n


# ------------------------------------------------------------------------------- launcher's helpers


def start_engines(cfg) -> list[EngineSpec]:
    """Start the config's engine servers now (if not running), without waiting for their engines."""
    specs = engine_specs(cfg)
    for spec in specs:
        conn, _hello, _started, _restarted = connect_or_start(spec)
        conn.close()
    return specs


def stop_engines(specs: Sequence[EngineSpec], wait_s: float = 120.0) -> None:
    """Ask each server to exit and wait until it has (its GPU memory is free when this returns)."""
    for spec in specs:
        pid = _server_pid(spec)
        found = None
        try:
            found = _try_connect(spec)
        except EngineFailedError:
            pass
        if found:
            conn, _hello = found
            try:
                conn.send(("shutdown",))
            finally:
                conn.close()
        if pid is not None:
            _wait_for_exit(pid, wait_s)


def wait_ready(specs: Sequence[EngineSpec], timeout_s: float, poll_s: float = 0.25) -> bool:
    """After start_engines: True once every spec's running server says its engine is ready; False as
    soon as one failed to start or is gone, or after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready = 0
        for spec in specs:
            pid, stats = _server_pid(spec), read_stats(spec) or {}
            if pid is None or not alive(pid):
                return False
            if stats.get("pid") == pid:  # this server's stats (written once its engine is up, or failed)
                if stats.get("exit"):
                    return False
                ready += bool(stats.get("ready_at"))
        if ready == len(specs):
            return True
        time.sleep(poll_s)
    return False


def read_stats(spec: EngineSpec) -> Optional[dict]:
    try:
        return json.loads(spec.path("stats.json").read_text())
    except (OSError, ValueError):
        return None


def main(argv=None) -> int:
    from asr_distill.cpus import take_machine

    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s engine-server: %(message)s")
    take_machine()  # spawned by a front-end process, which may run niced and off the engine's cores
    spec = EngineSpec(**json.loads(Path(argv[0]).read_text()))
    return EngineServer(spec).serve()


if __name__ == "__main__":
    code = main()
    # The engine is shut down and its stats written: leave without tearing vLLM's and torch's modules
    # down (seconds at the end of every local job, which waits for this process before it returns).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
