"""`python -m beam_pipeline.create_config FILE`: write a commented YAML config with every option's default."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr_distill.config import load_config
from asr_distill.config_template import config_template


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m beam_pipeline.create_config", description=__doc__.split(": ", 1)[1])
    ap.add_argument("file", help="where to write it ('-': standard output)")
    ap.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    args = ap.parse_args(argv)
    text = config_template()
    if args.file == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.file)
    if path.exists() and not args.force:
        print(f"error: {path} exists (pass --force to overwrite it)", file=sys.stderr)
        return 2
    path.write_text(text)
    load_config(path)  # what we write must load
    print(f"wrote {path}: every option with its default; edit it and pass --config={path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
