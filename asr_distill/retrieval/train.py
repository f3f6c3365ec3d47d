"""Train the term retriever: `python -m asr_distill.retrieval.train --config launch/config/retriever.yaml
[--resume]`, the same under `torchrun --nproc-per-node=N` (DDP: gloo on CPU, NCCL on GPUs).

Before anything, the splits are checked (split.leaks): a validation or test chunk's term that no
training chunk has as its term must not be heard in training anyway (inside a training chunk, or
said in its text), and no held-out speaker may be a training one; either is a config error, named.
First the untrained model is evaluated (metrics.jsonl's epoch 0). Every epoch: the training chunks once (each process its share, shuffled by epoch), a step skipped on
every process when any has a loss that is not finite or a batch it could not read (counted); then
rank 0 evaluates the **validation** chunks against the whole glossary (evaluate.py), and their
Recall@10 drives ReduceLROnPlateau and early stopping (`patience`) and picks the best epoch. At the end
the best weights are evaluated once on the **test** chunks, which chose nothing: `test.json`.
Checkpoints (trainable weights only: LoRA, heads, logit scale; with the optimizer, scheduler, epoch,
step and RNG state) go to output_dir: `last.pt` every epoch, `best.pt` on a better validation
Recall@10, `epoch-N.pt` every `checkpoint_every` epochs, `final.pt` at the end (the best weights).
`--resume` continues from `last.pt` after any stop, a SIGKILL included, under the config that made it: a
last.pt made under another seed, model, loss, batch or schedule is refused (exit 2, the settings that differ
named); how long it trains, where its files are and how it is scored may change (RESUMABLE).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from asr_distill.config import ConfigError
from asr_distill.glossary import Glossary, GlossaryError
from asr_distill.retrieval import data as rdata
from asr_distill.retrieval.config import RetrieverConfig, load_retriever_config
from asr_distill.retrieval.evaluate import breakdown, embed_chunks, evaluate, glossary_embeddings, summary_line
from asr_distill.retrieval.loss import mined_terms, retriever_loss
from asr_distill.retrieval.model import build
from asr_distill.retrieval.split import leaks

log = logging.getLogger("asr_distill.retrieval")
ENROL_WEIGHTS = (0.25, 0.5, 1.0, 2.0)  # audio-to-audio score weights tried on validation (data.enrol_chunks)


def _setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, device


def _any(flag: bool, world: int, device) -> bool:
    """True on every process when it is true on any."""
    if world == 1:
        return flag
    t = torch.tensor([int(flag)], device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return bool(t.item())


def _broadcast(value: float, world: int, device) -> float:
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
    dist.broadcast(t, 0)
    return float(t.item())


def _save(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint whole


def readings(cfg, glossary: Glossary) -> Optional[list[str]]:
    """What the characters' encoder reads for each glossary term (None: its spelling)."""
    if not cfg.char_layers or cfg.char_input == "spelling":
        return None
    from asr_distill.pronounce import PronounceError, pronunciations

    try:
        return pronunciations(glossary.terms, glossary.pronunciations)
    except PronounceError as err:
        raise ConfigError(f"model.char_input is phonemes: {err}") from None


# The settings a run may change when it goes on from last.pt: how long it trains, where its files are, how
# many processes read and how it is scored. Any other difference is another run.
RESUMABLE = {"train.epochs", "train.time_limit_s", "train.patience", "train.checkpoint_every", "train.output_dir",
             "train.eval_batch_size", "train.no_term_threshold", "data.num_workers", "model.audio_model",
             "model.text_model", "data.train_chunks", "data.valid_chunks", "data.test_chunks", "data.glossary",
             "data.enrol_chunks"}


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(made: dict, now: RetrieverConfig) -> list[str]:
    """The settings of `now` that differ from those a checkpoint was `made` with, outside RESUMABLE:
    "train.seed 1 -> 0". A setting one of the two versions of the config does not have is no difference."""
    before, after = _flat(made), _flat(now.model_dump(mode="json"))
    return [f"{k} {before[k]!r} -> {after[k]!r}" for k in sorted(set(before) & set(after))
            if k not in RESUMABLE and before[k] != after[k]]


class Trainer:
    def __init__(self, cfg: RetrieverConfig, resume: bool):
        self.cfg = cfg
        self.started = time.time()  # train.time_limit_s counts from here: loading is part of a job's time
        last = Path(cfg.train.output_dir) / "last.pt"
        resumed = torch.load(last, map_location="cpu", weights_only=False) if resume and last.exists() else None
        changes = config_changes(resumed["config"], cfg) if resumed else []
        if changes:  # before anything is loaded or a process group joined: the same on every rank
            raise ConfigError(f"{last} was made under another config ({'; '.join(changes)}): --resume it with "
                              f"that config, or give this one another train.output_dir")
        self.rank, self.world, self.device = _setup_distributed()
        torch.manual_seed(cfg.train.seed)
        random.seed(cfg.train.seed)
        np.random.seed(cfg.train.seed)
        self.out = Path(cfg.train.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.glossary = Glossary.load(cfg.data.glossary)
        self.train_set = rdata.ChunkSet(cfg.data.train_chunks, self.glossary)
        self.valid_set = rdata.ChunkSet(cfg.data.valid_chunks, self.glossary)
        self.test_set = rdata.ChunkSet(cfg.data.test_chunks, self.glossary)
        self.enrol_set = rdata.ChunkSet(cfg.data.enrol_chunks, self.glossary) if cfg.data.enrol_chunks else None
        _check_splits(self.train_set, self.valid_set, self.test_set, self.glossary)
        if self.enrol_set is not None:  # enrolment in a held-out voice would match that voice's chunks by its voice
            held = {c.speaker for part in (self.valid_set, self.test_set) for c in part.chunks} - {None}
            same = sorted({c.speaker for c in self.enrol_set.chunks} & held)
            if same:
                raise ConfigError(f"enrolment chunks ({cfg.data.enrol_chunks}) are said by held-out speakers "
                                  f"{same[:3]}: enrol in a voice of its own")
        if len(self.train_set) < cfg.data.batch_size * self.world:
            raise ConfigError(f"{len(self.train_set)} usable training chunks is less than one global batch "
                              f"({cfg.data.batch_size} x {self.world} processes)")
        self.model, text = build(cfg.model, self.device)
        # the text tower is frozen: its embeddings of every term and transcript, once
        self.model.set_glossary(self.glossary.terms, text.embed(list(self.glossary.terms)), cfg.model.spelling_buckets,
                                cfg.model.char_layers, cfg.model.char_width, readings(cfg.model, self.glossary),
                                cfg.model.char_dropout, cfg.model.term_meaning)
        self.glossary_ids = torch.arange(len(self.glossary.terms), device=self.device)
        texts = sorted({c.text for c in self.train_set.chunks})
        self.text_ids = {t: i for i, t in enumerate(texts)}
        self.text_base = text.embed(texts).to(self.device)
        del text
        a = cfg.data.augment
        self.augmenting = a.warp > 0 or a.freq_masks > 0 or a.time_masks > 0
        self.amp = cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and self.device.type == "cuda")
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=cfg.train.plateau_factor, patience=cfg.train.plateau_patience)
        self.ddp = self.model
        if self.world > 1:
            # buffers (the glossary's text embeddings, the spelling n-grams) are the same on every rank by
            # construction: not broadcast every step (150 MB a step for 100k terms)
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False)
        self.epoch, self.step, self.best, self.bad_epochs, self.skipped_steps = 0, 0, -1.0, 0, 0
        if resumed:
            self._load(last, resumed)

    # -- checkpoints

    def _state(self) -> dict:
        return {"model": self.model.trainable_state(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "step": self.step,
                "best": self.best, "bad_epochs": self.bad_epochs, "skipped_steps": self.skipped_steps,
                "torch_rng": torch.get_rng_state(), "config": self.cfg.model_dump(mode="json")}

    def _load(self, path: Path, state: dict) -> None:
        missing = set(self.model.trainable_state()) - set(state["model"])
        if missing:
            raise ConfigError(f"{path} does not fit this model (missing {sorted(missing)[:3]}...)")
        self.model.load_state_dict(state["model"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step, self.best = state["epoch"], state["step"], state["best"]
        self.bad_epochs, self.skipped_steps = state["bad_epochs"], state["skipped_steps"]
        torch.set_rng_state(state["torch_rng"].cpu())
        if self.rank == 0:
            self._metrics_up_to(state["line"])
            log.info("resumed from %s: epoch %d done, step %d, best Recall@10 %.4f", path, self.epoch,
                     self.step, self.best)

    # -- one epoch

    def _batch_tensors(self, batch) -> tuple:
        chunks = [self.train_set.chunks[i] for i in batch["index"].tolist()]
        term_ids = torch.tensor([-1 if c.term is None else c.term for c in chunks], device=self.device)
        text_ids = torch.tensor([self.text_ids[c.text] for c in chunks], device=self.device)
        width = max(1, max(len(c.terms) for c in chunks))
        inside = torch.tensor([list(c.terms) + [-1] * (width - len(c.terms)) for c in chunks], device=self.device)
        return term_ids, text_ids, inside

    def train_epoch(self) -> dict:
        cfg = self.cfg
        dataset = rdata.ChunkDataset(self.train_set.chunks, cfg.data.max_chunk_s, self.model.audio.n_mels)
        batches = rdata.loader(dataset, cfg.data.batch_size, cfg.data.num_workers, shuffle=True,
                               seed=cfg.train.seed, rank=self.rank, world=self.world, epoch=self.epoch)
        sums: dict = {}
        steps = 0
        for batch in batches:
            short = batch is None or len(batch["index"]) < cfg.data.batch_size
            if _any(short, self.world, self.device):
                self.skipped_steps += 1  # an unreadable chunk somewhere: every process skips the step
                continue
            term_ids, text_ids, inside = self._batch_tensors(batch)
            mel = batch["mel"].to(self.device, non_blocking=True)
            if self.augmenting:
                mel = rdata.augment(mel, batch["frames"], cfg.data.augment)
            autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else nullcontext()
            with autocast:
                mine = partial(mined_terms, cfg.loss, term_ids=term_ids, inside=inside) \
                    if cfg.loss.glossary_gradient == "chosen" else None
                audio, terms, texts, glossary, mined = self.ddp(
                    mel, batch["frames"].to(self.device),
                    term_ids.clamp(min=0), self.text_base[text_ids], self.glossary_ids, mine)
                loss = retriever_loss(cfg.loss, audio, terms, term_ids, texts, text_ids, self.model.scale(), glossary,
                                      inside, mined)
            if _any(not math.isfinite(sum(loss.parts.values())), self.world, self.device):
                self.skipped_steps += 1
                self.optimizer.zero_grad(set_to_none=True)
                continue
            self.optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            self.optimizer.step()
            self.step += 1
            steps += 1
            for k, v in loss.parts.items():
                sums[k] = sums.get(k, 0.0) + v
        return {f"loss_{k}": round(v / max(steps, 1), 5) for k, v in sums.items()} | {"steps": steps}

    def _embed(self, chunk_set: "rdata.ChunkSet", with_chunks: bool = False) -> tuple:
        """The chunks' audio embeddings (n, d) and their term ids (-1: no term), in matching order (and
        the chunks, with `with_chunks`)."""
        cfg = self.cfg
        dataset = rdata.ChunkDataset(chunk_set.chunks, cfg.data.max_chunk_s, self.model.audio.n_mels)
        batches = torch.utils.data.DataLoader(dataset, batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers,
                                              collate_fn=rdata.collate)
        with torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else nullcontext():
            audio, order = embed_chunks(self.model, batches, self.device)
        chunks = [chunk_set.chunks[i] for i in order.tolist()]
        term_ids = torch.tensor([-1 if c.term is None else c.term for c in chunks], device=self.device)
        return (audio.float(), term_ids, chunks) if with_chunks else (audio.float(), term_ids)

    def _glossary(self) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else nullcontext():
            return glossary_embeddings(self.model).float()

    def evaluate(self, chunk_set: "rdata.ChunkSet | None" = None, operating: Optional[float] = None) -> dict:
        """Recall and rejection of `chunk_set` (the validation chunks unless given) against the glossary;
        rejection at `operating` too, when given (evaluate.evaluate)."""
        chunk_set = self.valid_set if chunk_set is None else chunk_set  # (an empty set is falsy)
        return self._scores(self._embed(chunk_set), operating)

    def _scores(self, embedded: tuple[torch.Tensor, torch.Tensor], operating: Optional[float] = None,
                glossary: Optional[torch.Tensor] = None, hint: Optional[float] = None) -> dict:
        """evaluate.evaluate on chunks already embedded (_embed), against the glossary's embeddings
        unless others are given."""
        return evaluate(*embedded, self._glossary() if glossary is None else glossary, self.train_set.term_ids(),
                        self.cfg.train.no_term_threshold, self.cfg.train.eval_batch_size, operating, hint)

    def enrolled(self, test: tuple[torch.Tensor, torch.Tensor]) -> dict:
        """The test with each term's synthetic audio as a second key: a chunk's score for a term is its
        text score plus w x its cosine to the term's enrolment audio (their mean, for several), w chosen
        by validation Recall@10 among ENROL_WEIGHTS; terms without enrolment audio keep the text score.
        Recall only (the fused scores are on another scale than the no-term threshold). `test`: the test
        chunks' embeddings and term ids, as test() made them."""
        audio, term_ids = self._embed(self.enrol_set)
        enrol = torch.zeros(len(self.glossary), audio.shape[1], device=audio.device)
        enrol.index_add_(0, term_ids.clamp(min=0), audio * (term_ids >= 0)[:, None])
        enrol = F.normalize(enrol, dim=-1)  # all-zero rows stay zero
        glossary, valid = self._glossary(), self._embed(self.valid_set)
        by_weight = {w: self._scores(valid, glossary=glossary + w * enrol)["recall@10"] for w in ENROL_WEIGHTS}
        weight = max(by_weight, key=by_weight.get)
        test = self._scores(test, glossary=glossary + weight * enrol)
        return {"weight": weight, "chosen_on": "valid", "valid_recall@10_by_weight": by_weight,
                "enrolled_terms": int((enrol.abs().sum(1) > 0).sum()),
                **{k: v for k, v in test.items() if "recall" in k or k.endswith("chunks")}}

    def _epoch_line(self, trained: dict, metrics: dict, seconds: float) -> dict:
        return {"epoch": self.epoch, "step": self.step, **trained, "lr": self.optimizer.param_groups[0]["lr"],
                "skipped_steps": self.skipped_steps, **metrics, "epoch_s": round(seconds, 2),
                "split": "valid", "skipped_records": {"train": dict(self.train_set.skipped),
                                                      "valid": dict(self.valid_set.skipped),
                                                      "test": dict(self.test_set.skipped)}}

    def _log_epoch(self, line: dict) -> None:
        """metrics.jsonl gets an epoch's line after its checkpoint is written, so a line means a checkpoint."""
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        log.info("epoch %d: %s", line["epoch"], summary_line(line))

    def _metrics_up_to(self, line: dict) -> None:
        """On resume: metrics.jsonl holds each epoch up to the checkpoint's once (a kill between the
        checkpoint and its line, or after a line of an epoch the checkpoint does not hold, is mended)."""
        path = self.out / "metrics.jsonl"
        kept = []
        if path.exists():
            kept = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["epoch"] < line["epoch"]]
        tmp = path.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(ln + "\n" for ln in kept) + json.dumps(line) + "\n")
        os.replace(tmp, path)

    def run(self) -> dict:
        cfg, metrics = self.cfg.train, {}
        if self.rank == 0:
            log.info("%d training chunks (%d skipped), %d validation chunks (%d skipped), %d test chunks (%d skipped), "
                     "%d glossary terms, %d process(es)", len(self.train_set), sum(self.train_set.skipped.values()),
                     len(self.valid_set), sum(self.valid_set.skipped.values()), len(self.test_set),
                     sum(self.test_set.skipped.values()), len(self.glossary), self.world)
        if self.epoch == 0 and self.rank == 0:  # the untrained model's line: what training is measured against
            (self.out / "metrics.jsonl").unlink(missing_ok=True)
            self._log_epoch(self._epoch_line({"steps": 0}, self.evaluate(), 0.0))
        longest = 0.0  # the longest epoch of this process, for train.time_limit_s
        while self.epoch < cfg.epochs and self.bad_epochs < cfg.patience and not self._out_of_time(longest):
            t0 = time.time()
            trained = self.train_epoch()
            self.epoch += 1
            metrics = self.evaluate() if self.rank == 0 else {}
            r10 = _broadcast(metrics.get("recall@10") or 0.0 if self.rank == 0 else 0.0, self.world, self.device)
            self.scheduler.step(r10)
            better = r10 > self.best
            self.best, self.bad_epochs = (r10, 0) if better else (self.best, self.bad_epochs + 1)
            if self.rank == 0:
                line = self._epoch_line(trained, metrics, time.time() - t0)
                state = dict(self._state(), line=line)
                if better:
                    _save(self.out / "best.pt", state)
                if self.epoch % cfg.checkpoint_every == 0:
                    _save(self.out / f"epoch-{self.epoch}.pt", state)
                _save(self.out / "last.pt", state)  # last: what --resume reads
                self._log_epoch(line)
            longest = max(longest, time.time() - t0)
            if self.world > 1:
                dist.barrier()
        if self.rank == 0:
            best = torch.load(self.out / "best.pt", map_location="cpu", weights_only=False)
            _save(self.out / "final.pt", {"model": best["model"], "epoch": best["epoch"], "best": self.best,
                                          "config": best["config"], "chunk_s": self._chunk_s()})
            log.info("done after %d epochs: best validation Recall@10 %.4f (final.pt, epoch %d)", self.epoch,
                     self.best, best["epoch"])
            metrics = self.test(best)
        return metrics

    def _out_of_time(self, longest: float) -> bool:
        """Whether train.time_limit_s leaves no room for another epoch as long as the longest so far (rank
        0's clock decides for every process)."""
        limit = self.cfg.train.time_limit_s
        if limit is None or longest == 0.0:
            return False
        late = _broadcast(float(time.time() - self.started + longest > limit), self.world, self.device) > 0
        if late and self.rank == 0:
            log.info("train.time_limit_s %.0f: no time for epoch %d (the longest took %.0f s, %.0f s spent)",
                     limit, self.epoch + 1, longest, time.time() - self.started)
        return late

    def _chunk_s(self) -> float:
        """The training chunks' median length as the model heard them (at most data.max_chunk_s): what
        `find` makes its windows by default, so that they hold about as much speech as a chunk did."""
        lengths = [min(c.length / 2 / rdata.SAMPLE_RATE, self.cfg.data.max_chunk_s) for c in self.train_set]
        return round(float(np.median(lengths)), 3)

    def test(self, best: dict) -> dict:
        """The chosen weights on the test chunks, once: test.json (what was chosen, on what, and the figures;
        no-term rejection at the threshold that kept 95% of the validation term chunks, `_at_operating`;
        hints given and right at validation's hint_threshold, `_at_hint`, which `--retriever` uses)."""
        self.model.load_state_dict(best["model"], strict=False)
        if "hint_threshold" in best["line"]:
            hint = best["line"]["hint_threshold"]
        else:  # a run from before hint_threshold: validation scored again, with the chosen weights
            hint = self._scores(self._embed(self.valid_set))["hint_threshold"]
        t0 = time.time()
        *test, chunks = self._embed(self.test_set, with_chunks=True)
        glossary = self._glossary()
        figures = self._scores(test, best["line"].get("threshold_keeping_95"), glossary, hint=hint)
        figures["hint_threshold"] = hint  # validation's, not test's own
        seconds = time.time() - t0  # every chunk's audio embedded and scored against the whole glossary
        metrics = {"split": "test", "chosen_on": "valid", "epoch": best["epoch"], "valid_recall@10": self.best,
                   **figures, "ms_per_chunk": round(1000 * seconds / max(1, len(self.test_set)), 3)}
        said = self.train_set.term_ids() | self.valid_set.term_ids() | self.test_set.term_ids()
        carriers = [None if c.term is None else c.text.replace(self.glossary.terms[c.term], "{t}") for c in chunks]
        metrics.update(breakdown(*test, glossary, self.train_set.term_ids(), said, self.cfg.train.eval_batch_size,
                                 by_speaker=[c.speaker for c in chunks], by_carrier=carriers))
        if self.enrol_set is not None:
            metrics["enrolled"] = self.enrolled(test)
        tmp = self.out / ".test.json.tmp"
        tmp.write_text(json.dumps(metrics, indent=1) + "\n")
        os.replace(tmp, self.out / "test.json")
        log.info("test (epoch %d's weights): %s", best["epoch"], summary_line(metrics))
        return metrics


def _check_splits(train, valid, test, glossary: Glossary) -> None:
    """A config error when training hears what the validation or test chunks hold out (split.leaks)."""
    for name, part in (("validation", valid), ("test", test)):
        found = leaks(train.chunks, [part.chunks], glossary)
        if found["terms"]:
            term, key = found["terms"][0]
            raise ConfigError(f"{len(found['terms'])} {name} terms never trained as a chunk's term are heard in "
                              f"training anyway (e.g. {term!r} in training chunk {key!r}): they would be scored as "
                              f"never heard; take them out of {train.path}")
        if found["speakers"]:
            speaker, key = found["speakers"][0]
            raise ConfigError(f"{len(found['speakers'])} {name} speakers are training speakers too (e.g. {speaker!r} "
                              f"in training chunk {key!r}): held-out chunks must come from voices never trained on")
    overlap = ({c.term for c in valid.chunks if c.term is not None} & {c.term for c in test.chunks if c.term is not None}
               ) - train.term_ids()
    if overlap:
        log.warning("%d never-trained terms are in both the validation and the test chunks: the choices made on "
                    "validation favour them on test", len(overlap))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr_distill.retrieval.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="retriever YAML (launch/config/retriever.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue from output_dir/last.pt when it exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_retriever_config(args.config)
        trainer = Trainer(cfg, args.resume)
    except (ConfigError, GlossaryError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    trainer.run()
    if dist.is_initialized():  # every rank done (rank 0 scores the test) before any tears the group down
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
