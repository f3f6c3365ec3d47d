import pytest

from asr_distill.index import IndexRowError, default_key, parse_index_row, parse_json_line


def test_default_key_is_uri_without_extension():
    assert default_key("/data/calls/a b.mp3") == "data/calls/a b"
    assert default_key("oss://bucket/dir/x.tar.flac") == "bucket/dir/x.tar"
    assert default_key("clip") == "clip"


def test_row_fields_and_relative_uri():
    row = parse_index_row({"uri": "audio/a.mp3", "duration_s": "12.5", "language": "en",
                           "meta": {"speaker": 3}}, "/idx/dir/index.jsonl")
    assert row.uri == "/idx/dir/audio/a.mp3"
    assert row.key == "audio/a"
    assert row.duration_s == 12.5 and row.language == "en" and row.meta == {"speaker": 3}
    assert parse_index_row({"key": "k", "uri": "oss://b/a.mp3"}, "/idx/i.jsonl").uri == "oss://b/a.mp3"


@pytest.mark.parametrize("raw, message", [
    ({"key": "k"}, "no 'uri'"),
    ({"uri": "  "}, "no 'uri'"),
    ({"uri": 5}, "no 'uri'"),
    ({"uri": "a.wav", "size_bytes": "big"}, "size_bytes"),
    ({"uri": "a.wav", "meta": [1]}, "meta"),
])
def test_bad_rows(raw, message):
    with pytest.raises(IndexRowError, match=message):
        parse_index_row(raw)


def test_bad_json_lines():
    with pytest.raises(IndexRowError, match="not valid JSON"):
        parse_json_line('{"uri": ')
    with pytest.raises(IndexRowError, match="not an object"):
        parse_json_line('["a.wav"]')
