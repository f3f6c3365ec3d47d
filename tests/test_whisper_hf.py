"""The embedded CTranslate2 Whisper converted to a Hugging Face Whisper directory (what vLLM serves):
transformers, loading the converted weights, hears the same words as faster-whisper on the same audio."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest

import speechgen
from asr_distill.media import decode_to_mono16k
from asr_distill.models import embedded_whisper_base
from asr_distill.whisper_hf import ConversionError, convert, read_ct2

DEMO = Path(__file__).resolve().parents[1] / "launch" / "demo"


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    return convert(embedded_whisper_base(), tmp_path_factory.mktemp("whisper-hf"))


def test_the_directory_has_what_vllm_and_transformers_load(hf_dir):
    config = json.loads((hf_dir / "config.json").read_text())
    assert config["architectures"] == ["WhisperForConditionalGeneration"]
    assert (config["d_model"], config["encoder_layers"], config["decoder_layers"], config["encoder_attention_heads"],
            config["vocab_size"], config["num_mel_bins"], config["max_target_positions"]) == (
        512, 6, 6, 8, 51865, 80, 448)  # Whisper base
    generation = json.loads((hf_dir / "generation_config.json").read_text())
    assert generation["lang_to_id"]["<|en|>"] == 50259 and generation["no_timestamps_token_id"] == 50363
    assert {p.name for p in hf_dir.iterdir()} == {"config.json", "generation_config.json", "model.safetensors",
                                                  "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"}


def test_transformers_hears_the_same_words_as_faster_whisper(hf_dir):
    import torch
    from faster_whisper import WhisperModel
    from transformers import AutoTokenizer, WhisperFeatureExtractor, WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(hf_dir, dtype=torch.float32).eval()
    features, tokenizer = WhisperFeatureExtractor.from_pretrained(hf_dir), AutoTokenizer.from_pretrained(hf_dir)
    reference = WhisperModel(str(embedded_whisper_base()), device="cpu", compute_type="float32")
    rows = [json.loads(line) for line in (DEMO / "index.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        with open(DEMO / row["uri"], "rb") as f:
            wave = decode_to_mono16k(f)
        assert len(wave) < 30 * 16000  # one window: the same audio in, no chunking on either side
        inputs = features(wave, sampling_rate=16000, return_tensors="pt").input_features
        with torch.inference_mode():
            ids = model.generate(inputs, language="en", task="transcribe", max_new_tokens=200)
        converted = tokenizer.decode(ids[0], skip_special_tokens=True).strip()
        segments, _ = reference.transcribe(wave, language="en", beam_size=1, without_timestamps=True,
                                           condition_on_previous_text=False, vad_filter=False)
        original = " ".join(s.text.strip() for s in segments)
        assert speechgen.word_error_rate(original, converted) <= 0.02, (row["uri"], original, converted)
        assert speechgen.word_error_rate(row["meta"]["reference_text"], converted) <= 0.1, converted


def _ct2_file(path: Path, spec: str, variables: dict) -> Path:
    """A CTranslate2 model.bin written by hand, as its binary layout says."""
    def string(s):
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"
    out = struct.pack("<I", 6) + string(spec) + struct.pack("<II", 3, len(variables))
    for name, value in variables.items():
        dtype = {np.dtype(np.float32): 0, np.dtype(np.int16): 2, np.dtype(np.float16): 4}[value.dtype]
        out += string(name) + struct.pack("<B", value.ndim) + struct.pack("<" + "I" * value.ndim, *value.shape)
        out += struct.pack("<BI", dtype, value.nbytes) + value.tobytes()
    path.write_bytes(out + struct.pack("<I", 0))
    return path


def test_the_reader_follows_the_binary_layout_and_refuses_what_is_not_whisper(tmp_path):
    fused = np.arange(12, dtype=np.float32).reshape(6, 2)
    path = _ct2_file(tmp_path / "model.bin", "TransformerSpec",
                     {"encoder/num_heads": np.array(4, np.int16), "x/linear_0/weight": fused})
    spec, variables, aliases = read_ct2(path)
    assert spec == "TransformerSpec" and aliases == {}
    assert int(variables["encoder/num_heads"]) == 4 and np.array_equal(variables["x/linear_0/weight"], fused)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text('{"added_tokens": []}')
    with pytest.raises(ConversionError, match="not a Whisper model"):
        convert(tmp_path, tmp_path / "hf")
    (tmp_path / "model.bin").write_bytes(struct.pack("<I", 2))
    with pytest.raises(ConversionError, match="binary version 2"):
        read_ct2(tmp_path / "model.bin")
