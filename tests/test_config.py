import pytest

from asr_distill.config import Config, ConfigError, load_config


def test_defaults_need_no_file():
    cfg = load_config(None)
    assert cfg.segmenting.max_segment_s == 30
    assert cfg.inference.backend == "faster-whisper"
    assert cfg.inference.model is None  # the embedded Whisper base
    assert cfg.vad.backend == "silero-sequence"  # no torch in a CPU job (the GPU configs say silero)


def test_yaml_overrides_and_digest(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("vad:\n  threshold: 0.6\nsegmenting:\n  max_segment_s: 20\n")
    cfg = load_config(path)
    assert cfg.vad.threshold == 0.6 and cfg.segmenting.max_segment_s == 20
    assert cfg.digest() != Config().digest()
    assert load_config(path).digest() == cfg.digest()


@pytest.mark.parametrize("yaml_text, named", [
    ("vad:\n  threshold: 2\n", "vad.threshold"),
    ("segmenting:\n  max_segment_s: 45\n", "segmenting.max_segment_s"),
    ("inference:\n  batch_size: zero\n", "inference.batch_size"),
    ("vad:\n  treshold: 0.5\n", "vad.treshold"),
    ("writer: 3\n", "writer"),
])
def test_errors_name_the_field(tmp_path, yaml_text, named):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert named in str(err.value)


def test_not_yaml_and_missing_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("vad: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")


def test_backend_override_is_validated():
    assert Config().with_backend("faster-whisper").inference.backend == "faster-whisper"
    with pytest.raises(ConfigError, match="inference.backend"):
        Config().with_backend("nonesuch")
