"""Term chunks for training: records from a JSONL, audio from packed shards (memory-mapped).

A chunk record: `key`, `uri` (a packed range, `shard-x.dat#offset=O&length=L`, as written by
`python -m beam_pipeline.pack`; a path relative to the JSONL's folder is read beside it), `term` (the
glossary term it holds; null or absent for a no-term chunk), `terms` (every glossary term inside it),
`text` (its transcript); optional `speaker`. Audio is a zero-copy view of the mapped shard until the
log-mel features are made, in the DataLoader's workers; no chunk file is decoded in the training step.

A record that cannot be used (not JSON, no uri, a range outside its shard, a term that is not in the
glossary) is skipped and counted by reason, never a crash: `ChunkSet.skipped`.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from asr_distill.glossary import Glossary
from asr_distill.shards import PcmError, parse_byte_range, pcm16_to_float, read_pcm_mmap

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
HOP = 160  # log-mel frames of 10 ms, as Whisper's feature extractor makes them


@dataclass(frozen=True)
class Chunk:
    key: str
    path: str
    offset: int
    length: int
    term: Optional[int]  # glossary index of the chunk's term; None: a no-term chunk
    terms: tuple[int, ...]
    text: str
    speaker: Optional[str] = None


class ChunkSet:
    """The usable chunks of a JSONL, checked against the glossary and their shards' sizes."""

    def __init__(self, path: str | Path, glossary: Glossary):
        self.path = Path(path)
        self.chunks: list[Chunk] = []
        self.skipped: Counter = Counter()
        sizes: dict[str, int] = {}
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    self._add(line, glossary, sizes)
        if self.skipped:
            log.warning("%s: %d chunk records skipped: %s", self.path, sum(self.skipped.values()),
                        dict(self.skipped))

    def _add(self, line: str, glossary: Glossary, sizes: dict) -> None:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            self.skipped["not_json"] += 1
            return
        if not isinstance(rec, dict) or not isinstance(rec.get("uri"), str):
            self.skipped["no_uri"] += 1
            return
        rng = parse_byte_range(rec["uri"])
        if rng is None or not rng.is_pcm:
            self.skipped["not_a_packed_range"] += 1
            return
        path = rng.path if os.path.isabs(rng.path) else str(self.path.parent / rng.path)
        if path not in sizes:
            sizes[path] = os.path.getsize(path) if os.path.exists(path) else -1
        if rng.length < 2 * HOP * 2 or rng.offset % 2 or rng.length % 2 or rng.offset + rng.length > sizes[path]:
            self.skipped["bad_range"] += 1
            return
        term = rec.get("term")
        term_id = None if term in (None, "") else glossary.index(str(term))
        if term not in (None, "") and term_id is None:
            self.skipped["term_not_in_glossary"] += 1
            return
        terms = {glossary.index(str(t)) for t in rec.get("terms") or []} - {None}
        if term_id is not None:
            terms.add(term_id)
        self.chunks.append(Chunk(str(rec.get("key", "")), path, rng.offset, rng.length, term_id,
                                 tuple(sorted(terms)), str(rec.get("text") or ""), rec.get("speaker")))

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self):
        return iter(self.chunks)

    def term_ids(self) -> set[int]:
        return {c.term for c in self.chunks if c.term is not None}


def chunk_audio(chunk: Chunk, max_s: float) -> np.ndarray:
    """float32 samples of a chunk, at most `max_s` from its middle (the term is there)."""
    from asr_distill.shards import ByteRange

    samples = read_pcm_mmap(ByteRange(chunk.path, chunk.offset, chunk.length))
    keep = int(max_s * SAMPLE_RATE)
    if len(samples) > keep:
        start = (len(samples) - keep) // 2
        samples = samples[start:start + keep]
    return pcm16_to_float(samples)


class LogMel:
    """Whisper's log-mel features of one chunk at its own length (no padding to 30 s)."""

    def __init__(self, n_mels: int = 80):
        from transformers import WhisperFeatureExtractor

        self.extractor = WhisperFeatureExtractor(feature_size=n_mels)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        feats = self.extractor(audio, sampling_rate=SAMPLE_RATE, padding="longest", return_tensors="np")
        return feats["input_features"][0, :, : len(audio) // HOP]  # (n_mels, frames)


class ChunkDataset(torch.utils.data.Dataset):
    def __init__(self, chunks: Sequence[Chunk], max_s: float, n_mels: int = 80):
        self.chunks = list(chunks)
        self.max_s = max_s
        self.n_mels = n_mels
        self._mel: Optional[LogMel] = None

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int):
        if self._mel is None:  # made in the worker process that uses it
            self._mel = LogMel(self.n_mels)
        chunk = self.chunks[i]
        try:
            mel = self._mel(chunk_audio(chunk, self.max_s))
        except (PcmError, OSError, ValueError) as err:  # a shard changed under us: counted by the collate
            log.warning("chunk %s unreadable: %s", chunk.key, err)
            return None
        return i, mel


def collate(items) -> Optional[dict]:
    """Pads a batch's features to its longest chunk (Whisper's conv stride: an even frame count)."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    frames = [mel.shape[1] for _, mel in items]
    longest = max(frames) + max(frames) % 2
    mel = torch.zeros(len(items), items[0][1].shape[0], longest)
    for row, (_, m) in enumerate(items):
        mel[row, :, : m.shape[1]] = torch.from_numpy(m)
    return {"index": torch.tensor([i for i, _ in items]), "mel": mel, "frames": torch.tensor(frames)}


def augment(mel: torch.Tensor, frames: torch.Tensor, cfg) -> torch.Tensor:
    """mel (B, n_mels, T) padded, frames (B,): each chunk's features warped along the mel axis and
    masked (an AugmentConfig), on mel's device; frames past a chunk's own are left as they were."""
    b, n, t = mel.shape
    dev = mel.device
    frames = frames.to(dev)
    own = torch.arange(t, device=dev)[None, :] < frames[:, None]  # (B, T)
    out = mel
    if cfg.warp > 0:
        alpha = 1 + (torch.rand(b, device=dev) * 2 - 1) * cfg.warp
        src = (torch.arange(n, device=dev)[None, :] / alpha[:, None]).clamp(max=n - 1)  # (B, n): bin read
        lo = src.floor().long()
        hi = (lo + 1).clamp(max=n - 1)
        w = (src - lo)[:, :, None].to(mel.dtype)
        out = out.gather(1, lo[:, :, None].expand(b, n, t)) * (1 - w) + out.gather(1, hi[:, :, None].expand(b, n, t)) * w
    fill = ((out * own[:, None, :]).sum((1, 2)) / (own.sum(1) * n).clamp(min=1))[:, None, None]
    bins = torch.arange(n, device=dev)[None, :]
    for _ in range(cfg.freq_masks):
        width = (torch.rand(b, device=dev) * cfg.freq_width * n).long()
        start = (torch.rand(b, device=dev) * (n - width)).long()
        band = (bins >= start[:, None]) & (bins < (start + width)[:, None])  # (B, n)
        out = torch.where(band[:, :, None], fill, out)
    steps = torch.arange(t, device=dev)[None, :]
    for _ in range(cfg.time_masks):
        width = (torch.rand(b, device=dev) * cfg.time_width * frames).long()
        start = (torch.rand(b, device=dev) * (frames - width)).long()
        span = (steps >= start[:, None]) & (steps < (start + width)[:, None])  # (B, T), inside own frames
        out = torch.where(span[:, None, :], fill, out)
    return torch.where(own[:, None, :], out, mel)


def loader(dataset: ChunkDataset, batch_size: int, num_workers: int, shuffle: bool, seed: int = 0,
           rank: int = 0, world: int = 1, epoch: int = 0, drop_last: bool = True) -> torch.utils.data.DataLoader:
    """Each process's share of the chunks (DistributedSampler), shuffled by epoch, batches of equal size."""
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle,
                                                  seed=seed, drop_last=drop_last)
    sampler.set_epoch(epoch)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                                       collate_fn=collate, pin_memory=torch.cuda.is_available(),
                                       drop_last=drop_last, persistent_workers=False)
