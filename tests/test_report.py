"""What users see: quality filters, run report (looked at in headless Chromium), config template,
progress line, Pushgateway export."""

import base64
import json
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import matplotlib.image
import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from asr_distill.config import Config, load_config
from beam_pipeline import run
from beam_pipeline.create_config import main as create_config
from beam_pipeline.report import main as report
from conftest import read_jsonl, write_index

DROP_FAST_SPEECH = {"filters": {"action": "drop", "max_chars_per_s": 5.0}}  # espeak speaks ~13 chars/s


def _config(tmp_path, data, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def dropped_run(tmp_path_factory, short_speech_wav, long_forms, silence_file, broken_files):
    tmp = tmp_path_factory.mktemp("filtered")
    rows = [{"key": "short", "uri": str(short_speech_wav[0])}, {"key": "talk", "uri": str(long_forms["talk_mp3"].path)},
            {"key": "quiet", "uri": str(silence_file)}, {"key": "junk", "uri": str(broken_files["text"])}]
    index = write_index(tmp / "index.jsonl", rows)
    out = tmp / "out"
    record = run([f"--input_index={index}", f"--output={out}", f"--config={_config(tmp, DROP_FAST_SPEECH)}",
                  "--quiet"])
    return out, record


def test_dropped_segments_go_to_filtered_jsonl_and_are_counted(dropped_run):
    out, record = dropped_run
    transcripts = {t["key"]: t for t in read_jsonl(out, "transcripts")}
    filtered = read_jsonl(out, "filtered")
    by_key = {}
    for line in filtered:
        assert line["quality_flags"] == ["too_many_chars_per_s"] and line["text"].strip()
        by_key.setdefault(line["key"], []).append(line["index"])
    assert set(by_key) == {"short", "talk"}
    for key, indexes in by_key.items():
        assert sorted(indexes) == transcripts[key]["filtered_segments"]
        assert transcripts[key]["segments"] == [] and transcripts[key]["text"] == ""
    q = record["quality"]
    assert q == {"action": "drop", "segments_flagged": 0, "segments_dropped": len(filtered),
                 "files_with_reference": 0, "files_flagged": 0, "files_dropped": 0,  # no row has a reference
                 "by_reason": {"dropped:too_many_chars_per_s": len(filtered)}}
    assert record["metrics"]["quality"]["segments_dropped"] == len(filtered)
    assert record["reconciled"] and record["counts"]["transcripts"] == 3


def test_flagging_keeps_segments_with_their_reasons(tmp_path, short_speech_wav):
    index = write_index(tmp_path / "i.jsonl", [{"key": "short", "uri": str(short_speech_wav[0])}])
    cfg = _config(tmp_path, {"filters": {"max_chars_per_s": 5.0, "min_avg_logprob": -0.01}})
    record = run([f"--input_index={index}", f"--output={tmp_path / 'o'}", f"--config={cfg}", "--quiet"])
    [t] = read_jsonl(tmp_path / "o", "transcripts")
    assert t["segments"] and all(set(s["quality_flags"]) == {"too_many_chars_per_s", "low_logprob"}
                                 for s in t["segments"])
    assert "weather today is sunny" in t["text"].lower() and not list((tmp_path / "o").glob("filtered-*"))
    assert record["quality"]["segments_flagged"] == len(t["segments"])


def test_resume_carries_filtered_lines_once(tmp_path, short_speech_wav, long_forms):
    cfg = _config(tmp_path, DROP_FAST_SPEECH)
    first = [{"key": "short", "uri": str(short_speech_wav[0])}]
    out = tmp_path / "o"
    run([f"--input_index={write_index(tmp_path / 'a.jsonl', first)}", f"--output={out}", f"--config={cfg}", "--quiet"])
    before = sorted(json.dumps(x, sort_keys=True) for x in read_jsonl(out, "filtered"))
    grown = first + [{"key": "talk", "uri": str(long_forms["talk_flac"].path)}]
    record = run([f"--input_index={write_index(tmp_path / 'b.jsonl', grown)}", f"--output={out}", f"--config={cfg}",
                  "--resume", "--quiet"])
    after = read_jsonl(out, "filtered")
    assert sorted(json.dumps(x, sort_keys=True) for x in after if x["key"] == "short") == before
    assert {x["key"] for x in after} == {"short", "talk"}
    assert record["resume"]["filtered_carried"] == len(before)


def _screenshot(html_path, png_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium on PATH (`make test` installs it with apt-get)")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1280,2400", f"--screenshot={png_path}", html_path.as_uri()],
                   check=True, capture_output=True, timeout=120)
    return matplotlib.image.imread(str(png_path))


def test_report_is_one_self_contained_page_that_a_browser_renders(dropped_run, tmp_path):
    out, record = dropped_run
    assert report([str(out)]) == 0
    page = (out / "report.html").read_text()
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)
    assert len(images) == 7 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from anywhere
    for expected in ("file durations (n=3)", "segment durations", "speech ratio per file",
                     "mean token log-probability", "compression ratio per segment", "decode", "DecodeError",
                     "junk: not a readable media file", "too_many_chars_per_s", "max_chars_per_s: 5.0",
                     f"dropped to filtered-*.jsonl: {record['quality']['segments_dropped']}"):
        assert expected in page, expected
    shot = _screenshot(out / "report.html", tmp_path / "report.png")
    assert shot.shape[0] == 2400 and shot.shape[1] == 1280
    ink = (shot[..., :3] < 0.5).any(axis=2)  # dark pixels: text, bars, axes
    assert 0.01 < ink.mean() < 0.5
    rows_with_ink = np.flatnonzero(ink.any(axis=1))
    assert rows_with_ink[-1] - rows_with_ink[0] > 1500  # the page fills the window, plots included


def test_report_refuses_a_directory_without_a_run(tmp_path, capsys):
    assert report([str(tmp_path)]) == 2 and "no run.json" in capsys.readouterr().err


def test_config_template_has_every_option_with_its_default(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    assert create_config([str(path)]) == 0
    text = path.read_text()
    assert load_config(path) == Config()

    def leaves(model, prefix=""):
        for name, value in model:
            yield from leaves(value, f"{prefix}{name}.") if hasattr(value, "model_fields") else [prefix + name]
    for leaf in leaves(Config()):
        assert re.search(rf"^\s*{leaf.rsplit('.', 1)[-1]}:", text, re.M), leaf
    assert "# Rule 'low_logprob'" in text and "One of: flag, drop." in text
    assert create_config([str(path)]) == 2 and "exists" in capsys.readouterr().err


def test_progress_line_and_quiet(tmp_path, short_speech_wav, silence_file, capsys):
    index = write_index(tmp_path / "i.jsonl", [{"key": "a", "uri": str(short_speech_wav[0])},
                                               {"key": "q", "uri": str(silence_file)},
                                               {"key": "gone", "uri": str(tmp_path / "gone.wav")}])
    run([f"--input_index={index}", f"--output={tmp_path / 'o1'}"])
    err = capsys.readouterr().err.strip().splitlines()
    last = [line for line in err if line.startswith("files ")][-1]
    assert re.match(r"files 2/3 · 0\.00 h audio · segments 1/1 · \d+ audio-s/s · failures 1 · done 2 · \d+s$", last)
    run([f"--input_index={index}", f"--output={tmp_path / 'o2'}", "--quiet"])
    assert not [line for line in capsys.readouterr().err.splitlines() if line.startswith("files ")]


class _Gateway(BaseHTTPRequestHandler):
    received: list = []

    def do_PUT(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        _Gateway.received.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_metrics_are_pushed_to_a_pushgateway(tmp_path, short_speech_wav, silence_file):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    index = write_index(tmp_path / "i.jsonl", [{"key": "a", "uri": str(short_speech_wav[0])},
                                               {"key": "q", "uri": str(silence_file)}])
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        record = run([f"--input_index={index}", f"--output={tmp_path / 'o'}", "--quiet",
                      f"--config={_config(tmp_path, {'metrics': {'pushgateway_url': url, 'job_name': 'labels'}})}"])
    finally:
        server.shutdown()
    assert record["metrics_push"] == {"url": url, "pushed": True}
    [(path, body)] = _Gateway.received
    assert path.startswith("/metrics/job/labels/output@base64/")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body) for s in family.samples}
    assert samples[("asr_distill_counter", (("name", "files"), ("namespace", "decode")))] == 2
    assert samples[("asr_distill_counter", (("name", "segments"), ("namespace", "segment")))] == \
        record["counts"]["segments"]
    assert samples[("asr_distill_rows", (("outcome", "transcript"),))] == 2
    assert samples[("asr_distill_audio_seconds", ())] == record["audio_s"]
    assert samples[("asr_distill_reconciled", ())] == 1
    assert json.loads((tmp_path / "o" / "run.json").read_text())["metrics_push"]["pushed"] is True


def test_a_pushgateway_that_is_down_does_not_fail_the_job(tmp_path, silence_file):
    index = write_index(tmp_path / "i.jsonl", [{"key": "q", "uri": str(silence_file)}])
    cfg = _config(tmp_path, {"metrics": {"pushgateway_url": "http://127.0.0.1:9", "push_timeout_s": 2}})
    record = run([f"--input_index={index}", f"--output={tmp_path / 'o'}", f"--config={cfg}", "--quiet"])
    assert record["reconciled"] and record["metrics_push"]["pushed"] is False
    assert record["metrics_push"]["error"] in ("URLError", "ConnectionRefusedError", "TimeoutError")


def test_report_cli_runs_as_a_module(dropped_run):
    out, _ = dropped_run
    cli = subprocess.run([sys.executable, "-m", "beam_pipeline.report", str(out)], capture_output=True, text=True)
    assert cli.returncode == 0 and "report.html" in cli.stdout and "WARNING" not in cli.stderr, cli.stderr


def test_progress_line_gives_an_eta_for_the_phase_running():
    from beam_pipeline.progress import progress_line

    front = progress_line({"rows": 100, "admitted": 100, "decoded": 20, "failed_files": 5,
                           "audio_ms": 3_600_000, "segments": 40}, elapsed_s=50.0)
    assert front == ("files 20/100 · 1.00 h audio · segments 40 · 72 audio-s/s · failures 5 · done 0 · "
                     "ETA 2m30s (front end) · 50s")  # 25 of 100 files settled in 50 s: 75 more take 150 s
    asr = progress_line({"admitted": 100, "decoded": 95, "failed_files": 5, "audio_ms": 7_200_000,
                         "segments": 400, "transcribed": 100, "_inference_start_s": 100.0}, elapsed_s=150.0)
    assert asr.endswith("segments 100/400 · 48 audio-s/s · failures 5 · done 0 · ETA 2m30s · 2m30s")
