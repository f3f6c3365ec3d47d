"""`python -m beam_pipeline`: the ASR distillation pipeline on any Beam runner."""

__all__ = ["build", "run"]


def __getattr__(name):
    # Lazy, so that `python -m beam_pipeline` sets up logging before Beam is imported.
    if name in __all__:
        from beam_pipeline import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
