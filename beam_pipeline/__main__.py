import sys

from beam_pipeline.cli import main, setup_logging

if __name__ == "__main__":
    setup_logging()
    # Imported after logging is set up: Beam logs at import time.
    from beam_pipeline.pipeline import run

    sys.exit(main(run))
