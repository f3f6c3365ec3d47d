"""oss:// through Beam's FileSystems, against a loopback OSS server that checks signatures."""

import json
import logging
import os

import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from asr_distill.oss import OssClient, OssConfigError, load_credentials
from asr_distill.retry import TransientIOError
from beam_pipeline import run
from beam_pipeline.index import run as build_index
from beam_pipeline.pack import run as pack
from beam_pipeline.report import main as report
from beam_pipeline.pipeline import UsageError
from oss_server import FakeOss, Fault
from transforms import oss_filesystem

KEY_ID, SECRET = "LTAI-test-key", "s3cr3t-do-not-log"
RAW = "uncompressed"


@pytest.fixture
def oss(monkeypatch):
    monkeypatch.setenv("OSS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", SECRET)
    with FakeOss(KEY_ID, SECRET, slow_s=2.0) as server:
        monkeypatch.setenv("OSS_ENDPOINT", server.endpoint)
        FileSystems.set_options(PipelineOptions([]))
        yield server
    FileSystems.set_options(PipelineOptions([]))


def _read(path: str) -> bytes:
    with FileSystems.open(path, compression_type=RAW) as f:
        return f.read()


def _write(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type=RAW) as f:
        f.write(data)


def test_objects_round_trip_with_ranged_reads_and_multipart_writes(oss):
    _write("oss://media/calls/voilà a b.bin", bytes(range(256)) * 4)
    with FileSystems.open("oss://media/calls/voilà a b.bin", compression_type=RAW) as f:
        f.seek(1000)
        assert f.read(10) == bytes(range(232, 242))
        assert f.seek(0, 2) == 1024
    big = os.urandom(oss_filesystem.PART_BYTES * 2 + 12345)
    _write("oss://media/big.bin", big)
    assert _read("oss://media/big.bin") == big
    uploads = [m for m, k in oss.requests if k == "big.bin" and m in ("POST", "PUT")]
    assert uploads == ["POST", "PUT", "PUT", "PUT", "POST"]  # initiate, 3 parts, complete
    found = FileSystems.match(["oss://media/calls/*.bin"])[0].metadata_list
    assert [(m.path, m.size_in_bytes) for m in found] == [("oss://media/calls/voilà a b.bin", 1024)]
    assert FileSystems.exists("oss://media/big.bin") and not FileSystems.exists("oss://media/nope.bin")

    FileSystems.rename(["oss://media/big.bin"], ["oss://media/moved/big.bin"])
    assert not FileSystems.exists("oss://media/big.bin") and _read("oss://media/moved/big.bin") == big
    FileSystems.delete(["oss://media/moved"])  # a "directory": everything under the prefix
    assert sorted(oss.buckets["media"]) == ["calls/voilà a b.bin"]
    with pytest.raises(FileNotFoundError):  # as the local file system does
        FileSystems.open("oss://media/nope.bin")


def test_listing_pages_through_many_objects(oss):
    oss.buckets["many"] = {f"k/{i:04d}.wav": (b"x", 0.0) for i in range(2350)}
    found = FileSystems.match(["oss://many/k/*.wav"])[0].metadata_list
    assert len(found) == 2350 and found[-1].path == "oss://many/k/2349.wav"


def test_a_wrong_secret_is_refused_and_never_shown(oss, monkeypatch):
    _write("oss://media/a.bin", b"data")
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", "not-the-secret")
    client = OssClient(oss.endpoint)
    with pytest.raises(PermissionError) as err:
        client.head("media", "a.bin")
    assert "refused" in str(err.value) and "not-the-secret" not in str(err.value)
    with pytest.raises(PermissionError, match="SignatureDoesNotMatch"):  # a GET has a body with the code
        client.get_range("media", "a.bin", 0, 2)


def test_server_errors_and_timeouts_are_retried(oss):
    _write("oss://media/a.bin", b"0123456789")
    oss.faults += [Fault("GET", "a.bin", "500", times=2), Fault("HEAD", "a.bin", "500", times=1)]
    assert _read("oss://media/a.bin") == b"0123456789"
    assert [m for m, k in oss.requests if k == "a.bin"][-5:] == ["HEAD", "HEAD", "GET", "GET", "GET"]

    slow = OssClient(oss.endpoint, timeout_s=0.5)
    oss.faults.append(Fault("GET", "a.bin", "slow", times=1))
    assert slow.get_range("media", "a.bin", 2, 5) == b"234"

    oss.faults.append(Fault("PUT", "b.bin", "500", times=1))
    _write("oss://media/b.bin", b"written")
    assert _read("oss://media/b.bin") == b"written"

    oss.faults.append(Fault("GET", "a.bin", "500", times=99))
    with pytest.raises(TransientIOError, match="OSS answered 500 InternalError"):
        OssClient(oss.endpoint).get_range("media", "a.bin", 0, 3)


def test_credentials_come_from_the_environment_or_a_file(tmp_path, monkeypatch):
    monkeypatch.delenv("OSS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("OSS_ACCESS_KEY_SECRET", raising=False)
    monkeypatch.delenv("OSS_CREDENTIALS_FILE", raising=False)
    with pytest.raises(OssConfigError, match="OSS_ACCESS_KEY_ID"):
        load_credentials()
    as_json = tmp_path / "c.json"
    as_json.write_text(json.dumps({"access_key_id": "id1", "access_key_secret": "sec1"}))
    assert load_credentials(str(as_json)) == ("id1", "sec1")
    as_ini = tmp_path / "c.ini"
    as_ini.write_text("access_key_id = id2\naccess_key_secret = sec2\n")
    monkeypatch.setenv("OSS_CREDENTIALS_FILE", str(as_ini))
    assert load_credentials() == ("id2", "sec2")


def test_pipeline_from_an_oss_index_to_oss_outputs(oss, tmp_path, short_speech_wav, silence_file, caplog):
    wav, _ = short_speech_wav
    _write("oss://corpus/audio/short one.wav", wav.read_bytes())
    _write("oss://corpus/audio/quiet.wav", silence_file.read_bytes())
    rows = [{"key": "short", "uri": "audio/short one.wav"},  # relative to the index
            {"key": "quiet", "uri": "oss://corpus/audio/quiet.wav"},
            {"key": "gone", "uri": "audio/gone.wav"}]
    _write("oss://corpus/index.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    caplog.set_level(logging.DEBUG)
    record = run(["--input_index=oss://corpus/index.jsonl", "--output=oss://labels/run-1"],
                 test_pipeline=BeamTestPipeline())
    assert record["reconciled"] and record["counts"]["transcripts"] == 2
    out = oss.buckets["labels"]
    names = sorted(out)
    assert "run-1/run.json" in names and not any("_work" in n for n in names)
    transcripts = [json.loads(line) for n in names if n.startswith("run-1/transcripts-")
                   for line in out[n][0].decode().splitlines()]
    assert {t["key"]: t["status"] for t in transcripts} == {"short": "ok", "quiet": "no_speech"}
    assert "weather today is sunny" in next(t for t in transcripts if t["key"] == "short")["text"].lower()
    [failure] = [json.loads(line) for n in names if n.startswith("run-1/failures-")
                 for line in out[n][0].decode().splitlines()]
    assert (failure["key"], failure["stage"], failure["uri"]) == ("gone", "read", "oss://corpus/audio/gone.wav")
    assert report(["oss://labels/run-1"]) == 0  # the run report reads and writes oss:// too
    page = oss.buckets["labels"]["run-1/report.html"][0].decode()
    assert "oss://labels/run-1" in page and page.count("data:image/png;base64,") == 7 and "OpenError" in page
    everything = b"".join(data for data, _ in out.values())
    assert SECRET.encode() not in everything and KEY_ID.encode() not in everything
    assert SECRET not in caplog.text
    assert KEY_ID not in caplog.text


def test_oss_without_an_endpoint_is_a_usage_error(monkeypatch, tmp_path):
    monkeypatch.delenv("OSS_ENDPOINT", raising=False)
    monkeypatch.setenv("OSS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", SECRET)
    with pytest.raises(UsageError, match="no OSS endpoint"):
        run(["--input_index=oss://corpus/index.jsonl", f"--output={tmp_path / 'o'}"])


def test_index_pack_and_pipeline_all_on_oss(oss, short_speech_wav, broken_files):
    wav = short_speech_wav[0].read_bytes()
    _write("oss://corpus/raw/día uno/a b.wav", wav)
    _write("oss://corpus/raw/two.wav", wav)
    _write("oss://corpus/raw/readme.md", b"# not media")
    _write("oss://corpus/raw/junk.mp3", broken_files["garbage"].read_bytes()[:4096])  # sniffs as MP3
    _write("oss://corpus/raw/notes.wav", broken_files["text"].read_bytes())
    summary = build_index(["oss://corpus/raw", "--output", "oss://corpus/index.parquet"])
    assert (summary["media_files"], summary["not_media"], summary["rejected"]) == (3, 1, 1)
    with FileSystems.open("oss://corpus/index.failures.jsonl", compression_type=RAW) as f:
        assert json.loads(f.read())["key"] == "notes"
    with FileSystems.open("oss://corpus/index.parquet", compression_type=RAW) as f:
        rows = {r["key"]: r for r in pq.read_table(f).to_pylist()}
    assert rows["día uno/a b"] == {"key": "día uno/a b", "uri": "oss://corpus/raw/día uno/a b.wav",
                                   "size_bytes": len(wav)}

    record = pack(["--input_index=oss://corpus/index.parquet", "--output=oss://packed/p1"])
    assert record["reconciled"] and record["counts"]["packed"] == 2  # junk.mp3 fails to decode
    names = sorted(oss.buckets["packed"])
    assert [n.split("-")[0] for n in names if not n.endswith("json")] == ["p1/failures", "p1/index", "p1/shard"]
    out = run(["--input_index=oss://packed/p1/index-*.jsonl", "--output=oss://labels/from-shards"],
              test_pipeline=BeamTestPipeline())
    texts = [json.loads(line)["text"] for n, (data, _) in oss.buckets["labels"].items()
             if "transcripts-" in n for line in data.decode().splitlines()]
    assert out["reconciled"] and len(texts) == 2
    assert all("weather today is sunny" in t.lower() for t in texts)
    # The shard was read by ranged GETs of exactly each item, not whole.
    shard_gets = [k for m, k in oss.requests if m == "GET" and k.startswith("p1/shard-")]
    assert len(shard_gets) == 2


def test_one_level_listing_pages_through_files_and_folders(oss):
    objects = {f"top/d{i:04d}/x.wav": (b"x", 0.0) for i in range(1200)}
    objects.update({f"top/f{i}.wav": (b"yy", 0.0) for i in range(3)})
    objects["top/d0001/deeper/y.wav"] = (b"z", 0.0)
    oss.buckets["tree"] = objects
    fs = FileSystems.get_filesystem("oss://tree/top")
    files, folders = fs.list_children("oss://tree/top")
    assert [(m.path, m.size_in_bytes) for m in files] == [(f"oss://tree/top/f{i}.wav", 2) for i in range(3)]
    assert folders == [f"oss://tree/top/d{i:04d}/" for i in range(1200)]  # each once, across two pages
