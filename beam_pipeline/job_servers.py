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


def missing_job_server(runner: str, given: Optional[str]) -> Optional[str]:
    """None if the runner can start its job server; else what to do, in one sentence."""
    if runner not in RUNNER_ARTIFACTS:
        return None
    if not shutil.which("java"):
        return (f"{runner} starts Beam's Java job server on this machine and there is no `java` on PATH: "
                "install a JDK 17 (Debian: apt-get install openjdk-17-jdk-headless), or pass "
                "--runner=PortableRunner --job_endpoint=HOST:8099 for a job server that runs elsewhere")
    if given or job_server_jar(runner).exists():
        return None
    return (f"{runner} needs Beam's job server: run `make job-servers` (Maven builds it into "
            f"{job_server_jar(runner).parent}), or pass --{JAR_FLAGS[runner]}=PATH")
