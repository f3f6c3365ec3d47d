"""Launch files checked statically (no cluster, kubectl or registry here), and the CI job's run check."""

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from asr_distill import __version__
from asr_distill.config import load_config
from beam_pipeline import run
from beam_pipeline.check import main as check_main
from conftest import write_index

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
MANIFESTS = sorted((LAUNCH / "flink").glob("*.yaml")) + sorted((LAUNCH / "spark").glob("*.yaml"))


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _pod_specs(doc: dict):
    spec = doc.get("spec", {})
    if doc["kind"] in ("Deployment", "StatefulSet"):
        yield spec["template"]["spec"]
    if doc["kind"] == "FlinkDeployment":
        yield spec["taskManager"]["podTemplate"]["spec"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_manifests_are_well_formed(path):
    claims = {d["metadata"]["name"] for d in _docs(LAUNCH / "flink" / "volumes.yaml")}
    for doc in _docs(path):
        assert {"apiVersion", "kind", "metadata"} <= doc.keys() and doc["metadata"]["name"]
        if doc["kind"] in ("Deployment", "StatefulSet"):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
        for pod in _pod_specs(doc):
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            for c in pod["containers"]:
                assert c["name"]
                if c["name"] != "flink-main-container":  # the operator fills in Flink's own image
                    assert re.fullmatch(r"[\w./-]+:[\w.-]+", c["image"]) and not c["image"].endswith(":latest")
                for mount in c.get("volumeMounts", []):
                    assert mount["name"] in volumes, (c["name"], mount["name"])
            for v in volumes.values():
                if "persistentVolumeClaim" in v:
                    assert v["persistentVolumeClaim"]["claimName"] in claims


def test_worker_pools_run_our_image_where_the_jobs_look_for_them():
    submit = (LAUNCH / "submit.sh").read_text()
    workflow = (LAUNCH / "ci" / "distill-job.yml").read_text()
    for text in [submit, workflow]:
        assert "--environment_type=EXTERNAL --environment_config=localhost:50000" in text
        assert ":8099" in text and ":8098" in text
    # Beam's Flink job server runs a job without --parallelism at 1, whatever the cluster's slots
    assert '--parallelism="${PARALLELISM:-32}"' in submit
    session = _docs(LAUNCH / "flink" / "flink-session.yaml")[0]["spec"]
    flink_conf = session["flinkConfiguration"]
    assert int(flink_conf["parallelism.default"]) == \
        session["taskManager"]["replicas"] * int(flink_conf["taskmanager.numberOfTaskSlots"])
    assert flink_conf["taskmanager.memory.task.off-heap.size"]  # Beam's gRPC direct buffers (RESULTS 2026-12-06)
    # a lost TaskManager restarts the job, as on the local cluster where that was measured (RESULTS 2026-12-06)
    assert flink_conf["restart-strategy.type"] == "fixed-delay"
    assert int(flink_conf["restart-strategy.fixed-delay.attempts"]) >= 1
    sidecars = [c for p in MANIFESTS for d in _docs(p) for pod in _pod_specs(d) for c in pod["containers"]
                if c["name"] == "beam-worker-pool"]
    assert len(sidecars) == 2  # Flink task managers and Spark workers
    for c in sidecars:
        assert c["image"] == f"asr-distill-gpu:{__version__}" and "args" not in c
        assert c["command"] == ["python", "-m", "beam_pipeline.worker_pool", "--service_port=50000",
                                "--front_end_nice=10"]
        assert c["ports"][0]["containerPort"] == 50000
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    # a node's first engine compiles for minutes (Qwen3-Omni on an H200: 266 s to ready, 82 s warm):
    # the caches live on the node, so the next pod there starts warm
    for pod in (pod for p in MANIFESTS for d in _docs(p) for pod in _pod_specs(d)):
        for c in (c for c in pod["containers"] if c["name"] == "beam-worker-pool"):
            env = {e["name"]: e.get("value") for e in c["env"]}
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            for var in ("VLLM_CACHE_ROOT", "TRITON_CACHE_DIR"):
                root = next(m for m in mounts if env[var].startswith(m.rstrip("/") + "/"))
                assert "hostPath" in volumes[mounts[root]], (var, mounts[root])
    servers = {d["metadata"]["name"]: d for p in MANIFESTS for d in _docs(p) if d["kind"] == "Service"}
    for name in ("beam-flink-job-server", "beam-spark-job-server"):
        assert {p["port"] for p in servers[name]["spec"]["ports"]} >= {8099, 8098}


def test_the_spark_job_server_partitions_shuffles_by_the_workers_cores():
    """Beam's Spark runner sizes each shuffle by spark.default.parallelism, read before executors
    register (2 otherwise: a 16-core GPU node's job ran its inference stage on 2 SDK workers)."""
    docs = {d["metadata"]["name"]: d for p in MANIFESTS for d in _docs(p) if d["kind"] in ("Deployment", "StatefulSet")}
    [server] = docs["beam-spark-job-server"]["spec"]["template"]["spec"]["containers"]
    options = {e["name"]: e["value"] for e in server.get("env", [])}["JAVA_TOOL_OPTIONS"].split()
    worker = docs["spark-worker"]
    [container] = [c for c in worker["spec"]["template"]["spec"]["containers"] if c["name"] == "spark-worker"]
    cores = int(container["command"][container["command"].index("--cores") + 1])
    assert f"-Dspark.default.parallelism={worker['spec']['replicas'] * cores}" in options


@pytest.mark.parametrize("name", ["cpu.Dockerfile", "gpu.Dockerfile"])
def test_dockerfiles_copy_what_exists_and_pin_their_bases(name):
    lines = [line.strip() for line in (LAUNCH / "docker" / name).read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    stages = set()
    for line in lines:
        op, _, rest = line.partition(" ")
        if op == "FROM":
            image, *alias = rest.split(" AS ")
            assert ":" in image and not image.endswith(":latest"), image
            stages.update(a.strip() for a in alias)
        if op == "COPY" and not rest.startswith("--from="):
            for src in rest.split()[:-1]:
                assert (ROOT / src).exists(), src
        if op == "COPY" and rest.startswith("--from="):
            assert rest.split()[0].split("=")[1] in stages
    assert lines[-1] == 'ENTRYPOINT ["/opt/apache/beam/boot"]'
    assert any("python -m asr_distill.models" in line for line in lines)  # the embedded model is baked in


def test_ci_workflow_and_the_h200_config():
    wf = yaml.safe_load((LAUNCH / "ci" / "distill-job.yml").read_text())
    trigger = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads a bare `on` as true
    assert {"input_index", "output", "config", "job_server"} <= trigger["workflow_dispatch"]["inputs"].keys()
    steps = wf["jobs"]["distill"]["steps"]
    assert any("python -m beam_pipeline.check" in s.get("run", "") for s in steps)
    assert any("python -m beam_pipeline.report" in s.get("run", "") for s in steps)
    cfg = load_config(LAUNCH / "config" / "h200.yaml")
    assert cfg.inference.backend == "vllm" and cfg.segmenting.pack


def test_the_run_check_passes_a_finished_run_and_fails_a_bad_one(tmp_path, short_speech_wav, capsys):
    wav, _ = short_speech_wav
    index = write_index(tmp_path / "i.jsonl", [{"key": "short", "uri": str(wav)},
                                               {"key": "gone", "uri": str(tmp_path / "gone.wav")}])
    out = tmp_path / "o"
    run([f"--input_index={index}", f"--output={out}"], test_pipeline=BeamTestPipeline())
    assert check_main([str(out)]) == 0
    assert "rows 2, transcripts 1, failed files 1" in capsys.readouterr().out
    assert check_main([str(out), "--max_failure_rate=0.25"]) == 1
    assert "50.0% of the rows failed" in capsys.readouterr().err

    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    record = json.loads((bad / "run.json").read_text())
    (bad / "run.json").write_text(json.dumps({**record, "reconciled": False}))
    (bad / "_work").mkdir()
    assert check_main([str(bad)]) == 1
    err = capsys.readouterr().err
    assert "not reconciled" in err and "interrupted" in err
    assert check_main([str(tmp_path / "never")]) == 1
    assert "did not finish" in capsys.readouterr().err
