"""A CTranslate2 Whisper model as a Hugging Face Whisper directory (what vLLM and transformers load).

The embedded model (OpenAI Whisper base, `asr_distill.models`) is a CTranslate2 `model.bin`; vLLM
serves Whisper from a Hugging Face directory. This converts one into the other, from two documented
layouts and nothing else:

- CTranslate2's binary model file (`model.bin`, binary version 6): uint32 version, the spec's name,
  uint32 revision, uint32 number of variables, then per variable its name, rank, dims, dtype id
  (float32, int8, int16, int32, float16, bfloat16) and bytes; then aliases (name -> variable).
  Strings are uint16 length (NUL included), bytes, NUL.
- Whisper's architecture, as CTranslate2's Whisper spec stores it: self-attention projections fused
  as one [q; k; v] matrix (`linear_0`) and the output projection (`linear_1`); cross-attention's
  query (`linear_0`), fused [k; v] (`linear_1`) and output (`linear_2`); layer norms as gamma/beta;
  the output projection tied to the token embeddings. Whisper's key projections have no bias.

  python -m asr_distill.models --hf DIR      # the embedded model, converted into DIR
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
SUPPORTED_BINARY_VERSIONS = (5, 6)


class ConversionError(ValueError):
    pass


def _read(f: BinaryIO, fmt: str):
    size = struct.calcsize("<" + fmt)
    data = f.read(size)
    if len(data) != size:
        raise ConversionError("model.bin ends early")
    return struct.unpack("<" + fmt, data)


def _read_string(f: BinaryIO) -> str:
    (length,) = _read(f, "H")
    return f.read(length)[:-1].decode("utf-8")


def read_ct2(path: Path) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """(spec name, variables by name, aliases) of a CTranslate2 model.bin."""
    variables: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:
        (version,) = _read(f, "I")
        if version not in SUPPORTED_BINARY_VERSIONS:
            raise ConversionError(f"CTranslate2 binary version {version} is not supported "
                                  f"({SUPPORTED_BINARY_VERSIONS})")
        spec = _read_string(f)
        _revision, count = _read(f, "II")
        for _ in range(count):
            name = _read_string(f)
            (rank,) = _read(f, "B")
            shape = _read(f, "I" * rank) if rank else ()
            dtype_id, num_bytes = _read(f, "BI")
            raw = f.read(num_bytes)
            dtype = _DTYPES.get(dtype_id)
            if dtype is None or dtype == "bfloat16":
                raise ConversionError(f"variable {name} has dtype id {dtype_id}, which this converter does not read")
            variables[name] = np.frombuffer(raw, dtype=dtype).reshape(shape)
        (n_aliases,) = _read(f, "I")
        aliases = {}
        for _ in range(n_aliases):
            alias = _read_string(f)
            aliases[alias] = _read_string(f)
    return spec, variables, aliases


def _split(matrix: np.ndarray, parts: int) -> list[np.ndarray]:
    return np.split(matrix, parts, axis=0)


def _layer_count(variables: dict, prefix: str) -> int:
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in variables:
        n += 1
    return n


def _norm(v: dict, src: str, dst: str, out: dict) -> None:
    out[f"{dst}.weight"], out[f"{dst}.bias"] = v[f"{src}/gamma"], v[f"{src}/beta"]


def _linear(v: dict, src: str, dst: str, out: dict) -> None:
    out[f"{dst}.weight"], out[f"{dst}.bias"] = v[f"{src}/weight"], v[f"{src}/bias"]


def _attention(v: dict, src: str, dst: str, out: dict, fused: list[str]) -> None:
    """Fused projections of `src` into HF names; a key projection's (zero) bias is dropped."""
    weight, bias = v[f"{src}/weight"], v[f"{src}/bias"]
    for name, w, b in zip(fused, _split(weight, len(fused)), _split(bias, len(fused))):
        out[f"{dst}.{name}.weight"] = w
        if name != "k_proj":
            out[f"{dst}.{name}.bias"] = b
        elif np.any(b):
            raise ConversionError(f"{src}: Whisper's key projection has no bias, but this one is not zero")


def _ffn(v: dict, src: str, dst: str, out: dict) -> None:
    _linear(v, f"{src}/ffn/linear_0", f"{dst}.fc1", out)
    _linear(v, f"{src}/ffn/linear_1", f"{dst}.fc2", out)
    _norm(v, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm", out)


def hf_state_dict(variables: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict]:
    """Hugging Face WhisperForConditionalGeneration tensors and the dimensions found."""
    v = variables
    out: dict[str, np.ndarray] = {}
    enc, dec = "model.encoder", "model.decoder"
    for conv in ("conv1", "conv2"):
        _linear(v, f"encoder/{conv}", f"{enc}.{conv}", out)
    out[f"{enc}.embed_positions.weight"] = v["encoder/position_encodings/encodings"]
    _norm(v, "encoder/layer_norm", f"{enc}.layer_norm", out)
    n_enc, n_dec = _layer_count(v, "encoder"), _layer_count(v, "decoder")
    for i in range(n_enc):
        src, dst = f"encoder/layer_{i}", f"{enc}.layers.{i}"
        _attention(v, f"{src}/self_attention/linear_0", f"{dst}.self_attn", out, ["q_proj", "k_proj", "v_proj"])
        _linear(v, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj", out)
        _norm(v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", out)
        _ffn(v, src, dst, out)
    out[f"{dec}.embed_tokens.weight"] = v["decoder/embeddings/weight"]
    out[f"{dec}.embed_positions.weight"] = v["decoder/position_encodings/encodings"]
    _norm(v, "decoder/layer_norm", f"{dec}.layer_norm", out)
    for i in range(n_dec):
        src, dst = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        _attention(v, f"{src}/self_attention/linear_0", f"{dst}.self_attn", out, ["q_proj", "k_proj", "v_proj"])
        _linear(v, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj", out)
        _norm(v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", out)
        _linear(v, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj", out)
        _attention(v, f"{src}/attention/linear_1", f"{dst}.encoder_attn", out, ["k_proj", "v_proj"])
        _linear(v, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj", out)
        _norm(v, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm", out)
        _ffn(v, src, dst, out)
    vocab, d_model = v["decoder/embeddings/weight"].shape
    dims = {"vocab_size": int(vocab), "d_model": int(d_model), "encoder_layers": n_enc, "decoder_layers": n_dec,
            "encoder_attention_heads": int(v["encoder/num_heads"]), "decoder_attention_heads": int(v["decoder/num_heads"]),
            "encoder_ffn_dim": int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
            "decoder_ffn_dim": int(v["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
            "num_mel_bins": int(v["encoder/conv1/weight"].shape[1]),
            "max_source_positions": int(v["encoder/position_encodings/encodings"].shape[0]),
            "max_target_positions": int(v["decoder/position_encodings/encodings"].shape[0])}
    return out, dims


def _token_ids(tokenizer: dict) -> dict[str, int]:
    return {t["content"]: t["id"] for t in tokenizer["added_tokens"]}


def hf_configs(dims: dict, ct2_config: dict, tokenizer: dict) -> dict[str, dict]:
    """config.json, generation_config.json, preprocessor_config.json, tokenizer_config.json."""
    ids = _token_ids(tokenizer)
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    by_id = {i: t for t, i in ids.items()}
    lang_to_id = {by_id[i]: i for i in ct2_config.get("lang_ids", [])}
    multilingual = bool(lang_to_id)
    config = {"architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper", **dims,
              "activation_function": "gelu", "scale_embedding": False, "tie_word_embeddings": True,
              "pad_token_id": eot, "bos_token_id": eot, "eos_token_id": eot, "decoder_start_token_id": sot,
              "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0, "use_cache": True,
              "suppress_tokens": ct2_config.get("suppress_ids", []),
              "begin_suppress_tokens": ct2_config.get("suppress_ids_begin", []), "torch_dtype": "float16"}
    generation = {"decoder_start_token_id": sot, "bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot,
                  "max_length": dims["max_target_positions"], "is_multilingual": multilingual,
                  "lang_to_id": lang_to_id, "task_to_id": {"transcribe": ids["<|transcribe|>"],
                                                           "translate": ids["<|translate|>"]},
                  "no_timestamps_token_id": ids["<|notimestamps|>"], "prev_sot_token_id": ids["<|startofprev|>"],
                  "suppress_tokens": ct2_config.get("suppress_ids", []),
                  "begin_suppress_tokens": ct2_config.get("suppress_ids_begin", []),
                  "alignment_heads": ct2_config.get("alignment_heads", []), "max_initial_timestamp_index": 50}
    features = {"feature_extractor_type": "WhisperFeatureExtractor", "feature_size": dims["num_mel_bins"],
                "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30, "n_fft": 400,
                "n_samples": 480000, "nb_max_frames": 3000, "padding_side": "right", "padding_value": 0.0,
                "return_attention_mask": False, "processor_class": "WhisperProcessor"}
    tokenizer_config = {"tokenizer_class": "WhisperTokenizer", "processor_class": "WhisperProcessor",
                        "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                        "unk_token": "<|endoftext|>", "model_max_length": 1024, "errors": "replace",
                        "add_prefix_space": False, "clean_up_tokenization_spaces": False}
    return {"config.json": config, "generation_config.json": generation,
            "preprocessor_config.json": features, "tokenizer_config.json": tokenizer_config}


def convert(ct2_dir: Path, out_dir: Path) -> Path:
    """A CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json) -> an HF Whisper dir."""
    from safetensors.numpy import save_file

    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    spec, variables, aliases = read_ct2(ct2_dir / "model.bin")
    if spec != "WhisperSpec":
        raise ConversionError(f"{ct2_dir / 'model.bin'} holds a {spec}, not a Whisper model")
    if aliases.get("decoder/projection/weight", "decoder/embeddings/weight") != "decoder/embeddings/weight":
        raise ConversionError("the output projection is not tied to the embeddings; not a Whisper checkpoint")
    tensors, dims = hf_state_dict(variables)
    tokenizer = json.loads((ct2_dir / "tokenizer.json").read_text())
    ct2_config = json.loads((ct2_dir / "config.json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(t) for k, t in tensors.items()}, str(out_dir / "model.safetensors"),
              metadata={"format": "pt"})
    for name, body in hf_configs(dims, ct2_config, tokenizer).items():
        (out_dir / name).write_text(json.dumps(body, indent=1) + "\n")
    (out_dir / "tokenizer.json").write_text((ct2_dir / "tokenizer.json").read_text())
    return out_dir
