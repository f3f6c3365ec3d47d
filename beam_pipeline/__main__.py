import logging
import sys

# Beam warnings that say nothing about the user's job.
_NOISE = ("requested in with_outputs() but not declared in type hints", "apitools not found",
          "Resource module is not available")


def _not_noise(record: logging.LogRecord) -> bool:
    return not any(n in record.getMessage() for n in _NOISE)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_noise)
    # Imported after logging is set up: Beam logs at import time.
    from asr_distill.config import ConfigError
    from beam_pipeline.pipeline import UsageError, run

    try:
        run(argv)
    except (UsageError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
