"""The retriever's loss, correct across processes.

Each process embeds its own chunks; the candidates (terms, texts) and audio of every process are
gathered **with gradients** (`torch.distributed.nn.functional.all_gather`), so every chunk is
contrasted against the whole global batch, and each process computes the rows of the loss it owns
(open_clip's local loss). Candidates are deduplicated by id across the global batch (two chunks of one
term share one positive; the other chunk is not that term's negative). Each process returns
`world x` its share of the global loss, so that DDP's gradient averaging gives exactly the gradient
of the loss on the concatenated batch (tests/test_retrieval.py checks that with two gloo processes).

    loss = text_weight x InfoNCE(audio, its text) + term_weight x InfoNCE(audio, its term)
         + hard_negative_weight x CE(audio: its term against the k glossary terms the model ranks highest)
         + no_term_weight x mean relu(max cosine of a no-term chunk to the batch's terms - margin)
           (or to the whole glossary's terms: `no_term_against: glossary`)

InfoNCE is symmetric: audio -> candidates (one positive each), and candidate -> audio (any chunk of
that candidate is the right answer: the log of their summed probability).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Every process's `x`, concatenated in rank order; gradients flow back to each owner."""
    rank, world = _world()
    if world == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def gather_ids(x: torch.Tensor) -> torch.Tensor:
    rank, world = _world()
    if world == 1:
        return x
    out = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(out, x)
    return torch.cat(out)


@dataclass
class LossParts:
    total: torch.Tensor  # what this process backpropagates (world x its share)
    parts: dict  # the global value of each weighted part (detached), the same on every process


def info_nce(audio: torch.Tensor, cand: torch.Tensor, ids: torch.Tensor, valid: torch.Tensor,
             scale: torch.Tensor) -> torch.Tensor:
    """This process's share of the symmetric InfoNCE of the global batch (summing the shares over
    processes gives the loss of the concatenated batch). audio, cand: (b, d) local, normalised; ids:
    (b,) the candidate id of each chunk; valid: (b,) chunks that have a candidate."""
    rank, world = _world()
    all_audio, all_cand = gather_with_grad(audio), gather_with_grad(cand)
    all_ids, all_valid = gather_ids(ids), gather_ids(valid.to(torch.int64)).bool()
    b = audio.shape[0]
    mine = torch.zeros_like(all_valid)
    mine[rank * b:(rank + 1) * b] = True
    # the first chunk of each distinct id holds the id's candidate embedding
    keyed = torch.where(all_valid, all_ids, torch.full_like(all_ids, -1))
    uniq, inverse = torch.unique(keyed, return_inverse=True)
    first = torch.full((len(uniq),), len(keyed), dtype=torch.long, device=keyed.device)
    first.scatter_reduce_(0, inverse, torch.arange(len(keyed), device=keyed.device), reduce="amin")
    keep = uniq >= 0
    cand_rows, uniq_inverse = first[keep], inverse - int((~keep).sum())  # -1 (no candidate) sorts first
    candidates = all_cand[cand_rows]  # (u, d)
    n_valid, n_cand = int(all_valid.sum()), len(cand_rows)
    if n_valid == 0:
        return audio.sum() * 0.0
    # audio -> candidates, for this process's chunks
    rows = valid
    logits = scale * audio[rows] @ candidates.T
    a2c = F.cross_entropy(logits, uniq_inverse[mine][rows], reduction="sum") / n_valid
    # candidates -> audio, for the candidates whose first chunk is this process's
    owned = mine[cand_rows]
    logits = scale * candidates[owned] @ all_audio[all_valid].T  # (u_mine, n_valid)
    positive = uniq_inverse[all_valid][None, :] == torch.nonzero(owned).flatten()[:, None]
    # the probability of picking any of the candidate's chunks (no floor of log(#chunks) for a term
    # said in several chunks of the batch)
    c2a = (logits.logsumexp(1) - logits.masked_fill(~positive, float("-inf")).logsumexp(1)).sum() / n_cand
    return (a2c + c2a) / 2


def _hard_negatives(a: torch.Tensor, own: torch.Tensor, said: Optional[torch.Tensor], mined: torch.Tensor,
                    k: int) -> torch.Tensor:
    """(n, k) glossary ids: for each chunk the k terms `mined` scores highest for it, never its own term
    nor another term said in it (`said`, (n, t) padded with -1). No gradient."""
    with torch.no_grad():
        scores = a @ mined.T
        scores[torch.arange(len(a)), own] = float("-inf")
        if said is not None and said.numel():
            spoken = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, said.clamp(min=0), said >= 0)
            scores.masked_fill_(spoken, float("-inf"))
        return scores.topk(min(k, mined.shape[0] - 1), dim=1).indices


def hard_negative_loss(audio: torch.Tensor, term_ids: torch.Tensor, valid: torch.Tensor, glossary_emb: torch.Tensor,
                       scale: torch.Tensor, k: int, inside: Optional[torch.Tensor] = None,
                       mined: Optional[torch.Tensor] = None) -> torch.Tensor:
    """This process's share: each chunk's term against the k glossary terms the model ranks highest
    for it (its own term and every other term said in it left out: `inside`, (b, t) glossary ids
    padded with -1), the negatives chosen without gradient (from `mined` when given: the glossary
    embedded without gradient, see `mined_terms`), scored with it."""
    n_valid = int(gather_ids(valid.to(torch.int64)).sum())
    if n_valid == 0 or k == 0 or not bool(valid.any()):
        return audio.sum() * 0.0
    a = audio[valid]
    own = term_ids[valid]
    said = inside[valid] if inside is not None else None
    negatives = _hard_negatives(a, own, said, glossary_emb if mined is None else mined, k)
    cand = torch.cat([own[:, None], negatives], dim=1)
    logits = scale * torch.einsum("nd,nkd->nk", a, glossary_emb[cand])
    target = torch.zeros(len(a), dtype=torch.long, device=a.device)
    return F.cross_entropy(logits, target, reduction="sum") / n_valid


def no_term_loss(audio: torch.Tensor, no_term: torch.Tensor, term_emb: torch.Tensor, margin: float,
                 mined: Optional[torch.Tensor] = None) -> torch.Tensor:
    """This process's share: no-term chunks pushed below `margin` cosine to every candidate term (the
    nearest one chosen from `mined` when given, scored with `term_emb`)."""
    n = int(gather_ids(no_term.to(torch.int64)).sum())
    if n == 0 or term_emb.shape[0] == 0 or not bool(no_term.any()):
        # still through term_emb: it was gathered with gradients, and a process whose backward skipped
        # the gather's own would leave the others waiting in theirs forever
        return (audio.sum() + term_emb.sum()) * 0.0
    a = audio[no_term]
    if mined is None:
        best = (a @ term_emb.T).max(dim=1).values
    else:
        with torch.no_grad():
            nearest = (a @ mined.T).argmax(dim=1)
        best = (a * term_emb[nearest]).sum(dim=1)
    return F.relu(best - margin).sum() / n


def mined_terms(cfg, audio: torch.Tensor, mined: torch.Tensor, term_ids: torch.Tensor,
                inside: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The glossary ids whose embeddings the glossary parts of `retriever_loss` (a LossConfig `cfg`) will
    score with gradient on this batch, chosen from `mined`, the glossary embedded without gradient: each
    term chunk's own term and hard negatives, each no-term chunk's nearest term. Only these need
    embedding with gradient (Retriever.forward with `mine`); every other row of the glossary gets
    none anyway. audio is detached."""
    has_term = term_ids >= 0
    chosen = [term_ids[has_term]]
    if cfg.hard_negative_weight and cfg.hard_negatives and bool(has_term.any()):
        said = inside[has_term] if inside is not None else None
        chosen.append(_hard_negatives(audio[has_term], term_ids[has_term], said, mined, cfg.hard_negatives).flatten())
    if cfg.no_term_weight and cfg.no_term_against == "glossary" and bool((~has_term).any()):
        chosen.append((audio[~has_term] @ mined.T).argmax(dim=1))
    return torch.unique(torch.cat(chosen))


def retriever_loss(cfg, audio: torch.Tensor, term_emb: torch.Tensor, term_ids: torch.Tensor,
                   text_emb: torch.Tensor, text_ids: torch.Tensor, scale: torch.Tensor,
                   glossary_emb: Optional[torch.Tensor] = None, inside: Optional[torch.Tensor] = None,
                   mined: Optional[torch.Tensor] = None) -> LossParts:
    """The weighted loss of a LossConfig on one batch: audio (b, d), term_emb/text_emb (b, d) the
    embedded term and text of each chunk (term_ids -1 for a no-term chunk), text_ids (b,); inside
    (b, t): the glossary ids of every term said in each chunk (-1 padded), never its hard negatives;
    mined: the glossary embedded without gradient, from which hard negatives and no-term chunks' nearest
    terms are chosen (glossary_emb then carries gradient only in the rows `mined_terms` chose)."""
    _, world = _world()
    has_term = term_ids >= 0
    parts = {
        "text": cfg.text_weight * info_nce(audio, text_emb, text_ids, torch.ones_like(has_term), scale),
        "term": cfg.term_weight * info_nce(audio, term_emb, term_ids, has_term, scale),
    }
    if cfg.hard_negative_weight and cfg.hard_negatives and glossary_emb is not None:
        parts["hard_negative"] = cfg.hard_negative_weight * hard_negative_loss(
            audio, term_ids.clamp(min=0), has_term, glossary_emb, scale, cfg.hard_negatives, inside, mined)
    if cfg.no_term_weight:
        nearest_from = None
        if cfg.no_term_against == "glossary" and glossary_emb is not None:
            against, nearest_from = glossary_emb, mined  # the same on every process: no gather
        else:
            against = gather_with_grad(term_emb)[gather_ids(has_term.to(torch.int64)).bool()]
        parts["no_term"] = cfg.no_term_weight * no_term_loss(audio, ~has_term, against, cfg.no_term_margin,
                                                             nearest_from)
    share = sum(parts.values())
    values = torch.stack([p.detach() for p in parts.values()])
    if world > 1:
        dist.all_reduce(values)
    return LossParts(world * share, dict(zip(parts, values.tolist())))
