"""python -m beam_pipeline.pack: decode once into int16 shards; the pipeline reads them without decoding."""

import json
import subprocess
import sys

import numpy as np
import pytest

from asr_distill.media import decode_to_mono16k
from asr_distill.shards import ByteRange, parse_byte_range, read_pcm_mmap, to_pcm16
from beam_pipeline import run
from beam_pipeline.pack import run as pack
from beam_pipeline.pipeline import UsageError
from conftest import read_jsonl, write_index


def _packed_rows(out):
    return read_jsonl(out, "index")


def _local_range(out, row) -> ByteRange:
    rng = parse_byte_range(row["uri"])
    return ByteRange(str(out / rng.path), rng.offset, rng.length)


@pytest.fixture(scope="module")
def packed(tmp_path_factory, long_forms, short_speech_wav, broken_files):
    tmp = tmp_path_factory.mktemp("pack")
    rows = [{"key": k, "uri": str(f.path), "language": "en", "meta": {"speaker": k}} for k, f in long_forms.items()]
    rows += [{"key": "short", "uri": str(short_speech_wav[0])}, {"key": "garbage", "uri": str(broken_files["garbage"])}]
    index = write_index(tmp / "index.jsonl", rows)
    out = tmp / "packed"
    record = pack([f"--input_index={index}", f"--output={out}", "--shard_mb=1"])
    return index, out, record


def test_pack_round_trip_is_bit_exact_with_decoding(packed, long_forms, short_speech_wav):
    _index, out, record = packed
    sources = {k: f.path for k, f in long_forms.items()} | {"short": short_speech_wav[0]}
    rows = {r["key"]: r for r in _packed_rows(out)}
    assert sorted(rows) == sorted(sources)
    for key, path in sources.items():
        samples = read_pcm_mmap(_local_range(out, rows[key]))
        assert np.array_equal(samples, to_pcm16(decode_to_mono16k(str(path)))), key
        assert rows[key]["num_samples"] == len(samples) and rows[key]["meta"]["source_uri"] == str(path)
    assert rows["talk_mp3"]["meta"]["speaker"] == "talk_mp3" and rows["talk_mp3"]["language"] == "en"
    # ~40 s items at 32 kB/s against 1 MiB shards: several shards, each named by an index file.
    shards = sorted(p.name for p in out.glob("shard-*.dat"))
    assert len(shards) == record["counts"]["shards"] >= 3
    assert {r["shard"] for r in rows.values()} == set(shards)
    assert sum(p.stat().st_size for p in out.glob("shard-*.dat")) == sum(r["length"] for r in rows.values())
    [failure] = read_jsonl(out, "failures")
    assert (failure["key"], failure["stage"]) == ("garbage", "decode")
    assert record["reconciled"] and record["counts"]["packed"] == 4 and record["counts"]["failures"] == 1
    assert json.loads((out / "pack.json").read_text())["counts"]["packed"] == 4
    assert not (out / "_work").exists()


def test_the_pipeline_reads_packed_items_without_decoding(packed, tmp_path):
    index, out, _ = packed
    from_files, from_shards = tmp_path / "files", tmp_path / "shards"
    run([f"--input_index={index}", f"--output={from_files}", "--stop_after=segment"])
    record = run([f"--input_index={out}/index-*.jsonl", f"--output={from_shards}", "--stop_after=segment"])
    assert record["counts"]["index_rows"] == 4 and record["counts"]["failures"] == 0

    def segments(d):
        return sorted((s["key"], s["index"], s["start_s"], s["end_s"]) for s in read_jsonl(d, "segments"))
    a, b = segments(from_files), segments(from_shards)
    assert [s[:2] for s in a] == [s[:2] for s in b]  # same files, same number of segments
    assert max(abs(x[2] - y[2]) + abs(x[3] - y[3]) for x, y in zip(a, b)) <= 0.064  # int16 rounding only


def test_pack_resumes_and_adds_only_new_rows(tmp_path, long_forms, short_speech_wav, silence_file):
    first = [{"key": "short", "uri": str(short_speech_wav[0])}, {"key": "quiet", "uri": str(silence_file)}]
    out = tmp_path / "packed"
    pack([f"--input_index={write_index(tmp_path / 'a.jsonl', first)}", f"--output={out}"])
    more = first + [{"key": "mp3", "uri": str(long_forms["talk_mp3"].path)}, {"key": "gone", "uri": "nope.wav"}]
    bigger = write_index(tmp_path / "b.jsonl", more)
    with pytest.raises(UsageError, match="already holds a pack"):
        pack([f"--input_index={bigger}", f"--output={out}"])
    (out / "shard-00000000deadbeef.dat").write_bytes(b"\0" * 100)  # a shard whose worker died before indexing
    record = pack([f"--input_index={bigger}", f"--output={out}", "--resume"])
    c = record["counts"]
    assert (c["rows_skipped"], c["packed"], c["failures"], c["unindexed_shards_deleted"]) == (2, 1, 1, 1)
    keys = [r["key"] for r in _packed_rows(out)]
    assert sorted(keys) == ["mp3", "quiet", "short"]  # each once
    assert [f["key"] for f in read_jsonl(out, "failures")] == ["gone"]
    assert not (out / "shard-00000000deadbeef.dat").exists()


def test_packed_reads_are_read_only_maps_shared_across_processes(packed):
    _index, out, _ = packed
    row = next(r for r in _packed_rows(out) if r["key"] == "short")
    rng = _local_range(out, row)
    samples = read_pcm_mmap(rng)
    assert isinstance(samples.base, np.memmap) or isinstance(samples, np.memmap)
    assert not samples.flags.writeable
    code = ("import sys, numpy as np; from asr_distill.shards import ByteRange, read_pcm_mmap; "
            f"s = read_pcm_mmap(ByteRange({rng.path!r}, {rng.offset}, {rng.length})); "
            "print(int(np.abs(s.astype(np.int64)).sum()), len(s))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = {p.communicate()[0].strip() for p in procs}
    assert outs == {f"{int(np.abs(samples.astype(np.int64)).sum())} {len(samples)}"}


def test_a_packed_range_past_its_shard_fails_at_decode(packed, tmp_path):
    _index, out, _ = packed
    row = next(r for r in _packed_rows(out) if r["key"] == "short")
    rng = parse_byte_range(row["uri"])
    bad = [{"key": "cut", "uri": str(out / ByteRange(rng.path, rng.offset, 4 * 2**20).uri())},
           {"key": "odd", "uri": str(out / ByteRange(rng.path, rng.offset, 1001).uri())}]
    record = run([f"--input_index={write_index(tmp_path / 'bad.jsonl', bad)}", f"--output={tmp_path / 'o'}",
                  "--stop_after=segment"])
    failures = {f["key"]: f for f in read_jsonl(tmp_path / "o", "failures")}
    assert {k: f["stage"] for k, f in failures.items()} == {"cut": "decode", "odd": "decode"}
    assert "runs past the end" in failures["cut"]["message"] and "int16" in failures["odd"]["message"]
    assert record["reconciled"]


def test_pack_cli_runs_as_a_module_and_explains_bad_calls(tmp_path, short_speech_wav):
    index = write_index(tmp_path / "i.jsonl", [{"key": "a", "uri": str(short_speech_wav[0])}])
    ok = subprocess.run([sys.executable, "-m", "beam_pipeline.pack", f"--input_index={index}",
                         f"--output={tmp_path / 'p'}"], capture_output=True, text=True)
    assert ok.returncode == 0 and "packed 1 of 1 rows" in ok.stdout and "WARNING" not in ok.stderr, ok.stderr
    again = subprocess.run([sys.executable, "-m", "beam_pipeline.pack", f"--input_index={index}",
                            f"--output={tmp_path / 'p'}"], capture_output=True, text=True)
    assert again.returncode == 2 and "already holds a pack" in again.stderr
