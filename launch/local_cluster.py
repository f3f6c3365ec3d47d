"""Real Flink and Spark clusters on localhost, and Beam's job servers for them (make flink-up, ...).

  python launch/local_cluster.py job-servers          # Beam's Flink and Spark job servers, from Maven
  python launch/local_cluster.py fetch                # those, and Flink's and Spark's jars (all the downloads)
  python launch/local_cluster.py flink-up [--slots N --taskmanager-memory 2048m] | flink-down
  python launch/local_cluster.py spark-up [--slots CORES] | spark-down
  python launch/local_cluster.py status
  python launch/local_cluster.py bundle --out flink.tar   # the Flink cluster's jars, for a machine without network

Everything lives under .cache/ (git-ignored; ASR_DISTILL_CLUSTER_CACHE moves it):
- `runners/{flink,spark}/`: the job servers, built by `launch/runners/*/pom.xml` (Maven resolves Beam's
  runner with its dependencies: Flink's as one shaded jar, which each job ships to the cluster in one
  blob; Spark's as a launcher jar whose manifest names them);
- `flink-<v>/`: Flink's own jars, from PyPI's `apache-flink-libraries` (Flink's distribution, repackaged);
- `spark-<v>/`: Spark's, from PyPI's `pyspark` (jars and bin/spark-class);
- `clusters/{flink,spark}/`: each cluster's configuration, logs and the pids of its processes.

The Flink session cluster is a JobManager (StandaloneSessionClusterEntrypoint) and a TaskManager
(TaskManagerRunner), each its own JVM with the memory options Flink's own scripts would compute
(BashJavaUtils), REST on localhost:8081, a Beam worker pool on localhost:50000 for the EXTERNAL
environment (as the Kubernetes sidecar; the Spark cluster's is on 50001), and Beam's job server for
it on localhost:8099 (Spark's: 8199), as launch/flink and launch/spark run one beside the cluster:
`--job_endpoint=localhost:8099` sends a job there instead of starting a job-server JVM per job. The Spark cluster is a standalone Master (spark://localhost:7077,
UI 8080) and one Worker, started through pyspark's bin/spark-class. `*-down` stops every process it
started and waits until they are gone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from asr_distill.processes import alive  # noqa: E402
from beam_pipeline.job_servers import NO_JAVA, cache_root, java_binary, job_server_jar  # noqa: E402

CACHE = cache_root()
FLINK = "1.19.0"  # what Beam 2.62's Flink 1.19 runner is built against
SPARK = "3.5.5"  # a Spark 3 release with Python 3.11 wheels' era; Beam's Spark 3 runner runs on 3.2+
FLINK_REST = 8081
WORKER_POOLS = {"flink": 50000, "spark": 50001}  # Beam worker pools (EXTERNAL environment), one per cluster
JOB_SERVERS = {"flink": 8099, "spark": 8199}  # Beam job servers (job port; artifact and expansion: +1, +2)
SPARK_MASTER, SPARK_UI, SPARK_WORKER_UI = 7077, 8080, 8082


class ClusterError(RuntimeError):
    pass


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if out.returncode:
        raise ClusterError(f"{' '.join(map(str, cmd[:3]))} ... failed ({out.returncode}):\n{out.stderr[-3000:] or out.stdout[-3000:]}")
    return out


def _need_java() -> str:
    java = java_binary()
    if not java:
        raise ClusterError(f"no `java` on PATH: {NO_JAVA}")
    return java


# ------------------------------------------------------------------------------------ job servers


def build_job_server(runner: str) -> Path:
    jar = job_server_jar({"flink": "FlinkRunner", "spark": "SparkRunner"}[runner])
    if jar.exists():
        return jar
    _need_java()
    if not shutil.which("mvn"):
        raise ClusterError("no `mvn` on PATH: install Maven (Debian: apt-get install maven)")
    out = jar.parent
    _run(["mvn", "-q", "-B", "-f", str(ROOT / "launch" / "runners" / runner / "pom.xml"), f"-Dout={out}", "package"])
    if not jar.exists():
        raise ClusterError(f"Maven ran but {jar} is not there")
    return jar


# ------------------------------------------------------------------------------ distributions


def _pip_download(spec: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    found = list(dest.glob(f"{spec.split('==')[0].replace('-', '?')}-*"))
    if not found:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), spec])
        found = list(dest.glob(f"{spec.split('==')[0].replace('-', '?')}-*"))
    return found[0]


def _extract(archive: Path, members_under: str, target: Path) -> None:
    """The archive's files below `members_under` (a path inside its top folder), into target."""
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            parts = m.name.split("/", 1)
            if len(parts) == 2 and parts[1].startswith(members_under) and m.isfile():
                m.name = parts[1][len(members_under):].lstrip("/")
                tar.extract(m, tmp, filter="data")
    tmp.rename(target)


def flink_home() -> Path:
    home = CACHE / f"flink-{FLINK}"
    if not (home / "lib" / f"flink-dist-{FLINK}.jar").exists():
        shutil.rmtree(home, ignore_errors=True)
        archive = _pip_download(f"apache-flink-libraries=={FLINK}", CACHE / "downloads")
        _extract(archive, "deps", home)
    return home


def spark_home() -> Path:
    home = CACHE / f"spark-{SPARK}"
    if not (home / "bin" / "spark-class").exists():
        shutil.rmtree(home, ignore_errors=True)
        archive = _pip_download(f"pyspark=={SPARK}", CACHE / "downloads")
        _extract(archive, "deps", home)
        for script in (home / "bin").iterdir():
            script.chmod(0o755)
    return home


def fetch() -> None:
    """Everything the clusters need from the network (the job servers from Maven, Flink's and Spark's
    jars from PyPI), so that starting one later only starts processes: `make test` runs this beside the
    system packages' install, not on the critical path of the test worker that starts the clusters. The
    Maven builds (one local repository: one after the other) and the two distributions go side by side."""
    with ThreadPoolExecutor(3) as pool:
        done = [pool.submit(lambda: [build_job_server(name) for name in ("flink", "spark")]),
                pool.submit(flink_home), pool.submit(spark_home)]
        for job in done:
            print(job.result())


# ----------------------------------------------------------------------------------- processes


def _state(name: str) -> Path:
    path = CACHE / "clusters" / name
    (path / "log").mkdir(parents=True, exist_ok=True)
    return path


def _pids(name: str) -> dict:
    try:
        return json.loads((_state(name) / "pids.json").read_text())
    except (OSError, ValueError):
        return {}


def _start(name: str, role: str, cmd: list, env: dict | None = None) -> int:
    log = _state(name) / "log" / f"{role}.out"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env or os.environ.copy(), cwd=_state(name))
    pids = _pids(name)
    pids[role] = proc.pid
    (_state(name) / "pids.json").write_text(json.dumps(pids))
    return proc.pid


def _wait(what: str, test, timeout_s: float = 120, pids: list | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = test()
        if result:
            return result
        for pid in pids or []:
            if not alive(pid):
                tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
                raise ClusterError(f"{what}: process {pid} exited\n{tail}")
        time.sleep(0.5)
    raise ClusterError(f"{what}: not up after {timeout_s:.0f} s")


def _http_json(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def down(name: str) -> None:
    pids = _pids(name)
    for role, pid in pids.items():
        if alive(pid):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(alive(p) for p in pids.values()):
        time.sleep(0.2)
    for pid in pids.values():
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
    while any(alive(p) for p in pids.values()):
        time.sleep(0.1)
    (_state(name) / "pids.json").unlink(missing_ok=True)
    print(f"{name}: stopped {len(pids)} processes")


# ------------------------------------------------------------------------------------------ Flink


FLINK_CONF = """\
jobmanager.rpc.address: localhost
jobmanager.bind-host: localhost
rest.address: localhost
rest.bind-address: localhost
rest.port: {rest}
taskmanager.host: localhost
taskmanager.bind-host: localhost
taskmanager.numberOfTaskSlots: {slots}
parallelism.default: {slots}
jobmanager.memory.process.size: 1024m
taskmanager.memory.process.size: {tm_memory}
# A Beam batch job is one pipelined region here: every exchange of every step (about 40 for this
# pipeline) takes its buffers at once, slots x slots channels each. Flink's default share (0.1) ran out
# at 16 slots ("Insufficient number of network buffers"), so a quarter, up to 4 GB.
taskmanager.memory.network.fraction: 0.25
taskmanager.memory.network.max: 4g
# Beam's gRPC channels to the SDK workers take direct buffers outside Flink's own budget, in arenas that
# grow with the machine's cores: on 16 cores the TaskManager died of "Cannot reserve ... bytes of direct
# buffer memory" seconds into the first job (a fatal error for Flink). 64 MB a core.
taskmanager.memory.task.off-heap.size: {off_heap}
# What Beam's batch steps sort in Flink's managed memory is small (rows, keys, texts): a fifth (default 0.4)
# leaves the task heap what it had before the two above.
taskmanager.memory.managed.fraction: 0.2
restart-strategy.type: fixed-delay
restart-strategy.fixed-delay.attempts: 3
restart-strategy.fixed-delay.delay: 2 s
heartbeat.interval: 2000
heartbeat.timeout: 8000
io.tmp.dirs: {tmp}
web.submit.enable: false
"""

LOG4J = """\
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = MainAppender
appender.main.name = MainAppender
appender.main.type = File
appender.main.append = true
appender.main.fileName = ${sys:log.file}
appender.main.layout.type = PatternLayout
appender.main.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
"""


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("localhost", port)) == 0


def job_server_up(name: str, cores: int = 0) -> None:
    """Beam's job server for the cluster, running: jobs sent to localhost:JOB_SERVERS[name] skip the
    job-server JVM start (~17 s) that `--runner=FlinkRunner` alone pays on every job. Spark's is told
    the cluster's `cores` as spark.default.parallelism: Beam's Spark runner partitions each shuffle by
    the Spark context's default parallelism when the job starts, before any executor has registered,
    and that is then 2 (on a 16-core GPU node, the 1650-file job ran its decode and inference stage on
    2 SDK workers: 0.66 of raw vLLM)."""
    jar, port, state = build_job_server(name), JOB_SERVERS[name], _state(name)
    # Flink: the cluster's conf dir, so a job sent here without --parallelism runs on every slot
    # (parallelism.default) instead of Beam's 1
    master = (["--flink-master", f"localhost:{FLINK_REST}", "--flink-conf-dir", str(state / "conf")] if name == "flink"
              else ["--spark-master-url", f"spark://localhost:{SPARK_MASTER}"])
    jvm = []
    if name == "spark":  # what Beam's SparkRunner passes its own job server (Spark on Java 17)
        from apache_beam.runners.portability.spark_runner import SPARK_JAR_JOB_SERVER_JVM_ARGS

        jvm = [*SPARK_JAR_JOB_SERVER_JVM_ARGS, *([f"-Dspark.default.parallelism={cores}"] if cores else [])]
    pid = _start(name, "job_server", [_need_java(), *jvm, "-jar", str(jar), *master,
                                      "--artifacts-dir", str(state / "artifacts"), "--job-port", str(port),
                                      "--artifact-port", str(port + 1), "--expansion-port", str(port + 2)])
    _wait(f"Beam's {name} job server", lambda: _listening(port), pids=[pid],
          log=state / "log" / "job_server.out")


def _flink_jvm(home: Path, conf: Path, which: str) -> tuple[list, list]:
    """The JVM options and dynamic properties Flink's start scripts would use (BashJavaUtils)."""
    cp = f"{home / 'bin' / 'bash-java-utils.jar'}:{home / 'lib'}/*"
    out = _run([_need_java(), "-classpath", cp, "org.apache.flink.runtime.util.bash.BashJavaUtils", which,
                "--configDir", str(conf)]).stdout.splitlines()
    lines = [ln.split("BASH_JAVA_UTILS_EXEC_RESULT:", 1)[1] for ln in out if "BASH_JAVA_UTILS_EXEC_RESULT:" in ln]
    jvm = lines[0].split() if lines else []
    dynamic = lines[1].split() if len(lines) > 1 else []
    return jvm, dynamic


def _flink_process(role: str) -> int:
    home, state = flink_home(), _state("flink")
    conf = state / "conf"
    main, which = {"jobmanager": ("org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
                                  "GET_JM_RESOURCE_PARAMS"),
                   "taskmanager": ("org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
                                   "GET_TM_RESOURCE_PARAMS")}[role]
    jvm, dynamic = _flink_jvm(home, conf, which)
    return _start("flink", role, [_need_java(), *jvm, f"-Dlog.file={state / 'log' / f'{role}.log'}",
                                  f"-Dlog4j.configurationFile=file:{conf / 'log4j.properties'}",
                                  "-classpath", f"{home / 'lib'}/*", main, "--configDir", str(conf), *dynamic])


def flink_taskmanager() -> int:
    """Start a TaskManager (again, after one died: what Kubernetes does for a pod) and wait for it."""
    before = (_http_json(f"http://localhost:{FLINK_REST}/taskmanagers") or {}).get("taskmanagers", [])
    known = {t["id"] for t in before}
    pid = _flink_process("taskmanager")

    def registered():
        now = (_http_json(f"http://localhost:{FLINK_REST}/taskmanagers") or {}).get("taskmanagers", [])
        return [t for t in now if t["id"] not in known]
    _wait("Flink TaskManager", registered, pids=[pid], log=_state("flink") / "log" / "taskmanager.out")
    return pid


def flink_up(slots: int = 2, taskmanager_memory: str = "2048m", pool_args: tuple = ()) -> None:
    """A JobManager and one TaskManager of `slots` slots (parallelism.default too). A GPU node of 16
    cores ran the vLLM teacher with 16 slots and 8g (benchmarks/RESULTS.md); tests use 2 and 2048m."""
    if any(alive(p) for p in _pids("flink").values()):
        print(f"flink: already up (REST http://localhost:{FLINK_REST})")
        return
    state = _state("flink")
    conf = state / "conf"
    conf.mkdir(exist_ok=True)
    (state / "tmp").mkdir(exist_ok=True)
    (conf / "flink-conf.yaml").write_text(FLINK_CONF.format(rest=FLINK_REST, slots=slots, tmp=state / "tmp",
                                                            tm_memory=taskmanager_memory,
                                                            off_heap=f"{64 * max(2, os.cpu_count() or 1)}m"))
    (conf / "log4j.properties").write_text(LOG4J)
    pid = _flink_process("jobmanager")
    _wait("Flink JobManager", lambda: _http_json(f"http://localhost:{FLINK_REST}/overview"), pids=[pid],
          log=state / "log" / "jobmanager.out")
    flink_taskmanager()
    worker_pool_up("flink", pool_args)
    job_server_up("flink")
    print(f"flink {FLINK}: JobManager and TaskManager ({slots} slots) up, REST http://localhost:{FLINK_REST}; "
          f"Beam worker pool on localhost:{WORKER_POOLS['flink']}, job server on localhost:{JOB_SERVERS['flink']}")


def worker_pool_up(name: str, pool_args: tuple = ()) -> None:
    """The Python worker pool of the EXTERNAL environment (Beam's service; SDK workers forked from a
    process that has imported Beam, torch and the transforms: beam_pipeline/worker_pool.py), with this
    interpreter's packages."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    port = WORKER_POOLS[name]
    pid = _start(name, "worker_pool", [sys.executable, "-m", "beam_pipeline.worker_pool", f"--service_port={port}",
                                       *pool_args], env=env)
    _wait("Beam worker pool", lambda: _listening(port), pids=[pid], log=_state(name) / "log" / "worker_pool.out")


# ------------------------------------------------------------------------------------------ Spark


def spark_up(cores: int = 2, pool_args: tuple = ()) -> None:
    if any(alive(p) for p in _pids("spark").values()):
        print(f"spark: already up (spark://localhost:{SPARK_MASTER})")
        return
    home = spark_home()
    state = _state("spark")
    env = dict(os.environ, SPARK_HOME=str(home), SPARK_LOG_DIR=str(state / "log"), SPARK_WORKER_DIR=str(state / "work"),
               SPARK_LOCAL_IP="127.0.0.1", SPARK_LOCAL_DIRS=str(state / "tmp"),
               JAVA_HOME=str(Path(_need_java()).resolve().parent.parent))  # spark-class runs $JAVA_HOME/bin/java
    spark_class = str(home / "bin" / "spark-class")
    master = _start("spark", "master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", "localhost",
                                        "--port", str(SPARK_MASTER), "--webui-port", str(SPARK_UI)], env=env)
    _wait("Spark master", lambda: _http_json(f"http://localhost:{SPARK_UI}/json/"), pids=[master],
          log=state / "log" / "master.out")
    worker = _start("spark", "worker", [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "localhost",
                                        "--cores", str(cores), "--memory", "3g", "--webui-port", str(SPARK_WORKER_UI),
                                        f"spark://localhost:{SPARK_MASTER}"], env=env)
    _wait("Spark worker", lambda: (_http_json(f"http://localhost:{SPARK_UI}/json/") or {}).get("aliveworkers"),
          pids=[master, worker], log=state / "log" / "worker.out")
    worker_pool_up("spark", pool_args)
    job_server_up("spark", cores)
    print(f"spark {SPARK}: master spark://localhost:{SPARK_MASTER} (UI http://localhost:{SPARK_UI}) and one worker "
          f"({cores} cores) up; Beam worker pool on localhost:{WORKER_POOLS['spark']}, job server on "
          f"localhost:{JOB_SERVERS['spark']}")


# Jars that Beam's runners do not load, left out of a bundle (which then fits fewer transfers to a
# machine without network). Flink's lib/: the Table/SQL stack, CEP, formats, the Scala API. Spark's
# jars/: SQL and Hive, MLlib and its maths, the other cluster managers, RocksDB (an optional state
# store), the REPL's compiler; Beam's portable Spark runner runs on spark-core's RDDs.
BUNDLE_SKIPS = {
    "flink": ("flink-table-", "flink-cep-", "flink-csv-", "flink-json-", "flink-connector-files-", "flink-scala_"),
    "spark": ("rocksdbjni", "hive-", "spark-hive", "breeze", "scala-compiler", "spark-repl", "mesos", "spark-mesos",
              "spire", "spark-mllib", "spark-graphx", "kubernetes-", "spark-kubernetes", "spark-yarn", "hadoop-yarn",
              "derby", "datanucleus", "jdo-api", "orc-", "parquet-", "arrow-", "cats-kernel", "algebra", "tink",
              "libthrift", "libfb303", "JLargeArrays", "JTransforms", "arpack", "blas", "lapack", "shapeless",
              "py4j", "spark-sql", "spark-catalyst", "janino", "commons-compiler", "antlr"),
}


def bundle(name: str, out: Path) -> None:
    """A tar of what `{name}-up` needs under a cache root (ASR_DISTILL_CLUSTER_CACHE), for a machine that
    has Python and no network: the job server and the cluster's jars less BUNDLE_SKIPS. Spark's job
    server is a launcher jar and its lib/; a lib jar that Spark's jars/ holds too travels once (a link)."""
    jar = build_job_server(name)
    skip = BUNDLE_SKIPS[name]
    if name == "flink":
        home = flink_home()
        jars = [home / "bin" / "bash-java-utils.jar", *sorted((home / "lib").iterdir())]
    else:
        home = spark_home()
        jars = [*sorted((home / "bin").iterdir()), *sorted((home / "jars").iterdir())]
    members = [jar, *(j for j in jars if not j.name.startswith(skip))]
    links = []
    if name == "spark":
        kept = {m.name: m for m in members if m.parent == home / "jars"}
        for j in sorted((jar.parent / "lib").iterdir()):
            same = kept.get(j.name)
            if same is not None and same.read_bytes() == j.read_bytes():
                links.append((j, os.path.relpath(same, j.parent)))
            else:
                members.append(j)
    with tarfile.open(out, "w") as tar:
        for path in members:
            tar.add(path, arcname=str(path.relative_to(CACHE)))
        for path, target in links:
            info = tarfile.TarInfo(str(path.relative_to(CACHE)))
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    print(f"{out}: {len(members)} files and {len(links)} links, {out.stat().st_size / 2**20:.0f} MiB")


def status() -> None:
    for name in ("flink", "spark"):
        pids = _pids(name)
        print(f"{name}: " + (", ".join(f"{r} {p}{'' if alive(p) else ' (gone)'}" for r, p in pids.items()) or "down"))


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="launch/local_cluster.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="status",
                        choices=["job-servers", "fetch", "flink-up", "flink-down", "spark-up", "spark-down", "status",
                                 "bundle"])
    parser.add_argument("--front-end-nice", type=int, default=0,
                        help="flink-up/spark-up: the worker pool's --front_end_nice (GPU nodes: 10)")
    parser.add_argument("--engine-cpus", type=int, default=0,
                        help="flink-up/spark-up: the worker pool's --engine_cpus (GPU nodes: CPUs kept for vLLM)")
    parser.add_argument("--out", type=Path, help="bundle: the tar to write (the cluster's jars)")
    parser.add_argument("--cluster", choices=["flink", "spark"], default="flink", help="bundle: which cluster")
    parser.add_argument("--slots", type=int, default=2, help="flink-up: task slots; spark-up: the worker's cores")
    parser.add_argument("--taskmanager-memory", default="2048m", help="flink-up: taskmanager.memory.process.size")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    pool = (f"--front_end_nice={args.front_end_nice}", f"--engine_cpus={args.engine_cpus}")
    actions = {"job-servers": lambda: [print(build_job_server(r)) for r in ("flink", "spark")],
               "fetch": fetch,
               "flink-up": lambda: flink_up(args.slots, args.taskmanager_memory, pool),
               "flink-down": lambda: down("flink"), "spark-up": lambda: spark_up(args.slots, pool), "spark-down": lambda: down("spark"), "status": status,
               "bundle": lambda: bundle(args.cluster, args.out or Path(f"{args.cluster}-bundle.tar"))}
    command = args.command
    try:
        actions[command]()
    except ClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
