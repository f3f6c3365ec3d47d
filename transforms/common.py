"""What every stage shares: the two-output shape and the dead-letter mapping."""

from __future__ import annotations

import atexit
import os
import sys
from typing import Callable, NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from asr_distill.cost import take_cpu_s
from asr_distill.records import Failure, IndexRow
from transforms import coders, oss_filesystem  # noqa: F401  (register the audio coder and oss://)

GOOD = "good"
FAILURES = "failures"
_CRASHED = "crashed"


def report_cpu() -> None:
    """This worker process's CPU seconds since its last report, into run.json's cost (asr_distill/cost.py);
    called at the end of the bundles of the stages every worker process runs."""
    Metrics.counter("cost", "cpu_ms").inc(int(round(take_cpu_s() * 1000)))


def _exit_without_teardown() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# An SDK worker process (the runner gave it a control channel) leaves without tearing its modules down
# once its harness is done: DirectRunner closes its worker processes one after another at the end of a
# job, and a process that imported torch (Silero) spends ~0.7 s on that, 11 s for 16 workers (measured:
# a bare Beam worker exits in 0.16 s). Everything it did is with the runner by then. Registered last, run
# first.
if "CONTROL_API_SERVICE_DESCRIPTOR" in os.environ:
    atexit.register(_exit_without_teardown)


class StageOutputs(NamedTuple):
    good: beam.PCollection
    failures: beam.PCollection


def fail(stage: str, row: Optional[IndexRow], err: BaseException, segment_index: Optional[int] = None):
    """A failure record on the failures output, counted under the stage's namespace."""
    Metrics.counter(stage, "failures").inc()
    Metrics.counter(stage, f"failed_{type(err).__name__}").inc()
    return beam.pvalue.TaggedOutput(FAILURES, Failure.of(row, stage, err, segment_index))


def _crash_to_failure(dead_letter, stage: str, row_of: Callable):
    element, (exc_type, exc_repr, _traceback) = dead_letter
    Metrics.counter(stage, "failures").inc()
    Metrics.counter(stage, "unexpected_errors").inc()
    row = row_of(element)
    # Never the traceback: the record says what broke, the worker log has the rest.
    return Failure(key=row.key if row else None, uri=row.uri if row else None, stage=stage,
                   error_type=exc_type.__name__, message=f"unexpected error: {exc_repr}"[:500])


def run_stage(pcoll, label: str, dofn: beam.DoFn, stage: str, row_of: Callable,
              extra_tags: tuple = (), output_type=None) -> beam.pvalue.DoOutputsTuple:
    """ParDo whose expected errors come out on FAILURES and whose unexpected ones become failures too.

    `output_type` types the good output, so that Beam picks its registered coder (transforms/coders.py)."""
    pardo = beam.ParDo(dofn)
    if output_type is not None:
        pardo = pardo.with_output_types(output_type)
    outputs = (pcoll | label >> pardo
               .with_outputs(FAILURES, *extra_tags, main=GOOD)
               .with_exception_handling(main_tag=GOOD, dead_letter_tag=_CRASHED))
    crashed = outputs[_CRASHED] | f"{label}Unexpected" >> beam.Map(_crash_to_failure, stage, row_of)
    failures = (outputs[FAILURES], crashed) | f"{label}Failures" >> beam.Flatten()
    return outputs, failures
