"""StartEngines: on a cluster, the vLLM engine server of the node that runs the job's first task starts
then, not when the inference step is set up.

Why: a runner sets up the fused decode → inference step only once the index is read and admitted (a
shuffle), and on Flink that was ~10 s into a job on localhost; the engine then takes 35-60 s to start,
while the GPU waits. This step runs from the job's first task (an Impulse of its own, beside the read),
so the engine loads while the index is read and the first files decode; the inference step then finds it
running (start_engines connects to a running server; one server per engine and node, file-locked).
Other nodes start theirs at the inference step, as before. DirectRunner needs none of this: the
launcher starts the machine's engines before anything else (beam_pipeline/cli.py).
"""

from __future__ import annotations

import logging

import apache_beam as beam

from asr_distill.config import InferenceConfig

log = logging.getLogger(__name__)


class _Start(beam.DoFn):
    def __init__(self, cfg: InferenceConfig):
        self._cfg = cfg

    def process(self, _unused):
        from asr_distill.asr.engine_loop import EngineFailedError
        from asr_distill.asr.engine_server import start_engines

        try:
            start_engines(self._cfg)
        except EngineFailedError as err:  # the inference step meets it again and fails the job with it
            log.warning("the vLLM engine server did not start early: %s", err)
        return []


class StartEngines(beam.PTransform):
    def __init__(self, cfg: InferenceConfig):
        super().__init__()
        self._cfg = cfg

    def expand(self, pbegin):
        return pbegin | "Impulse" >> beam.Impulse() | "Start" >> beam.ParDo(_Start(self._cfg))
