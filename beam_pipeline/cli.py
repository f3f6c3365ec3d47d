"""What every `python -m beam_pipeline[.command]` shares: quiet logging, usage errors as one line."""

from __future__ import annotations

import logging
import sys
from typing import Callable

# Beam warnings that say nothing about the user's job.
_NOISE = ("requested in with_outputs() but not declared in type hints", "apitools not found",
          "Resource module is not available")


def _not_noise(record: logging.LogRecord) -> bool:
    return not any(n in record.getMessage() for n in _NOISE)


def setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_noise)


def main(run: Callable[[list], object], argv=None) -> int:
    """Calls run(argv); a UsageError or ConfigError becomes `error: ...` on stderr and exit status 2."""
    from asr_distill.config import ConfigError
    from beam_pipeline.pipeline import UsageError

    try:
        run(sys.argv[1:] if argv is None else argv)
    except (UsageError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
