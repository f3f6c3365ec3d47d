"""Push a finished run's figures to a Prometheus Pushgateway (metrics.pushgateway_url in the config).

Every Beam counter goes out as `asr_distill_counter{namespace, name}`, beside a few headline gauges;
the grouping key is the job name and the output directory (redacted), so runs into different
directories do not overwrite each other. A push that fails is a warning: the job's results stand.
"""

from __future__ import annotations

import logging

from asr_distill.config import MetricsConfig
from asr_distill.redact import redact

log = logging.getLogger(__name__)

HEADLINES = {
    "audio_seconds": ("audio_s", "Audio decoded, seconds"),
    "speech_seconds": ("speech_s", "Speech found by VAD, seconds"),
    "wall_seconds": ("wall_s", "Wall time of the run, seconds"),
}


def push_run(record: dict, cfg: MetricsConfig) -> dict:
    """Pushes; returns what to record in run.json under `metrics_push`."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    counter = Gauge("asr_distill_counter", "Beam counters of the run", ["namespace", "name"], registry=registry)
    for namespace, names in record.get("metrics", {}).items():
        for name, value in names.items():
            counter.labels(namespace, name).set(value)
    for metric, (field, doc) in HEADLINES.items():
        Gauge(f"asr_distill_{metric}", doc, registry=registry).set(record.get(field) or 0)
    counts = record.get("counts", {})
    rows = Gauge("asr_distill_rows", "Index rows by outcome", ["outcome"], registry=registry)
    rows.labels("index").set(counts.get("index_rows", 0))
    rows.labels("transcript").set(counts.get("transcripts", 0))
    rows.labels("failed").set(counts.get("failures", 0))
    Gauge("asr_distill_reconciled", "1 when every index row ended in exactly one place",
          registry=registry).set(1 if record.get("reconciled") else 0)
    url = redact(cfg.pushgateway_url)
    try:
        push_to_gateway(cfg.pushgateway_url, job=cfg.job_name, registry=registry,
                        grouping_key={"output": record.get("output") or ""}, timeout=cfg.push_timeout_s)
    except OSError as err:  # refused, timed out, an HTTP error status (urllib's errors are OSErrors)
        log.warning("could not push metrics to the Pushgateway %s: %s", url, type(err).__name__)
        return {"url": url, "pushed": False, "error": type(err).__name__}
    return {"url": url, "pushed": True}
