"""Remakes docs/report.png: 14 generated talks and 3 bad rows through the pipeline, the report, and a
headless Chromium screenshot of it (the documented look at the report in a real browser).

Usage: .venv/bin/python docs/make_report_screenshot.py WORK_DIR
"""

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
import speechgen  # noqa: E402


def make_media(media: Path) -> None:
    rng = random.Random(3)
    rows, formats = [], ["mp3", "flac", "ogg", "m4a", "wav"]
    for i in range(14):
        wav = media / f"f{i}.wav"
        speechgen.long_form(wav, rng.sample(speechgen.SENTENCES, rng.randint(1, 9)),
                            [rng.choice([0.4, 0.8, 1.5, 3.0, 6.0]) for _ in range(3)], lead_s=rng.choice([0.3, 2.0, 5.0]))
        ext = formats[i % len(formats)]
        path = wav if ext == "wav" else speechgen.encode(wav, media / f"f{i}.{ext}")
        rows.append({"key": f"talks/{i:02d}", "uri": path.name})
    (media / "notes.mp3").write_text("not audio\n" * 20)
    rows += [{"key": "talks/notes", "uri": "notes.mp3"}, {"key": "talks/missing", "uri": "nope.wav"}, {"uri": 42}]
    (media / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def main(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    (work / "media").mkdir(parents=True)
    make_media(work / "media")
    # Relative paths, so the picture names no directory of this machine.
    py = sys.executable
    subprocess.run([py, "-m", "beam_pipeline", "--input_index=media/index.jsonl", "--output=talks-labels", "--quiet"],
                   cwd=work, check=True)
    subprocess.run([py, "-m", "beam_pipeline.report", "talks-labels"], cwd=work, check=True)
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1280,2750", f"--screenshot={ROOT / 'docs' / 'report.png'}",
                    (work / "talks-labels" / "report.html").as_uri()], check=True, capture_output=True)
    print("wrote docs/report.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
