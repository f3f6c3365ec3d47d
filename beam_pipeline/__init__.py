"""`python -m beam_pipeline`: the ASR distillation pipeline on any Beam runner."""

from beam_pipeline.pipeline import build, run

__all__ = ["build", "run"]
