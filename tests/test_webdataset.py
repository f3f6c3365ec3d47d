"""WebDataset tar shards as input: each sample's audio member is read as one byte range of the tar."""

import io
import json
import tarfile

from asr_distill.media import decode_to_mono16k
from asr_distill.webdataset import tar_samples
from beam_pipeline import run
from conftest import read_jsonl


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _shard(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            _add(tar, name, data)
    return path


def test_tar_samples_name_their_audio_members_byte_ranges(tmp_path, short_speech_wav):
    wav = short_speech_wav[0].read_bytes()
    shard = _shard(tmp_path / "s.tar", [("clips/a 1.wav", wav), ("clips/a 1.json", b'{"speaker": "x"}'),
                                        ("clips/b.txt", b"no audio here"), ("clips/c.seg.flac", b"fLaC....")])
    with open(shard, "rb") as f:
        samples = list(tar_samples(f, "s.tar"))
    assert [row["key"] for _, row in samples] == ["clips/a 1", "clips/c"]
    offset, first = samples[0]
    assert first["uri"] == f"s.tar#offset={offset}&length={len(wav)}" and first["meta"] == {"speaker": "x"}
    assert shard.read_bytes()[offset:offset + len(wav)] == wav


def test_pipeline_transcribes_a_webdataset_shard(tmp_path, short_speech_wav, long_forms, broken_files):
    wav = short_speech_wav[0].read_bytes()
    flac = long_forms["talk_flac"].path.read_bytes()
    _shard(tmp_path / "part-000.tar", [("short.wav", wav), ("short.json", json.dumps({"lang": "en"}).encode()),
                                       ("talk.flac", flac)])
    _shard(tmp_path / "part-001.tar", [("junk.mp3", broken_files["garbage"].read_bytes()),
                                       ("readme.txt", b"not a sample")])
    (tmp_path / "part-002.tar").write_bytes(b"this is not a tar file at all" * 30)
    out = tmp_path / "out"
    record = run([f"--input_index={tmp_path}/part-*.tar", f"--output={out}"])
    transcripts = {t["key"]: t for t in read_jsonl(out, "transcripts")}
    assert sorted(transcripts) == ["short", "talk"]
    assert transcripts["short"]["meta"] == {"lang": "en"}
    assert "weather today is sunny" in transcripts["short"]["text"].lower()
    assert transcripts["talk"]["duration_s"] == round(len(decode_to_mono16k(str(long_forms["talk_flac"].path)))
                                                      / 16000, 3)
    assert transcripts["talk"]["uri"].startswith(f"{tmp_path}/part-000.tar#offset=")
    failures = {(f["key"], f["stage"], f["error_type"]) for f in read_jsonl(out, "failures")}
    assert failures == {("junk", "decode", "DecodeError"), (None, "index", "TarIndexError")}
    assert record["reconciled"] and record["counts"]["index_rows"] == 4  # a tar that is not one counts as a row
