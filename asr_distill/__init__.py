"""Runner-agnostic core of the ASR distillation pipeline (no Beam imports here)."""

__version__ = "0.1.0"
