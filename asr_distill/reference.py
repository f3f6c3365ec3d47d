"""A file's pseudo-label against the reference transcript its index row carries (subtitles, captions,
a prompt read aloud): word error rate after Whisper's text normaliser.

Distil-Whisper kept only pseudo-labels within a WER threshold of the dataset's own transcript; here
every transcript record with a reference gets `reference_wer`, and `filters.reference_wer_max` flags
or drops the files above it (asr_distill/reassemble.py). The normaliser is Whisper's English one
(numbers, spellings, contractions; the `whisper-normalizer` package) for English or unknown language,
its basic one (case, punctuation, diacritics kept) for any other; WER is jiwer's.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

from asr_distill.records import IndexRow

RULE = "high_reference_wer"


def reference_text(row: IndexRow) -> Optional[str]:
    """The row's reference: its `text` field, else `meta.reference_text`; None when it has none."""
    text = row.reference_text if row.reference_text is not None else row.meta.get("reference_text")
    return text if isinstance(text, str) and text.strip() else None


@lru_cache(maxsize=None)
def _normaliser(english: bool):
    if english:
        from whisper_normalizer.english import EnglishTextNormalizer

        return EnglishTextNormalizer()
    from whisper_normalizer.basic import BasicTextNormalizer

    return BasicTextNormalizer()


def normalise(text: str, language: Optional[str]) -> str:
    english = language is None or language.lower().split("-")[0].split("_")[0] in ("en", "english")
    return " ".join(_normaliser(english)(text).split())


def reference_wer(hypothesis: str, reference: str, language: Optional[str] = None) -> Optional[float]:
    """WER of `hypothesis` against `reference`, both normalised; None when the reference normalises to
    nothing (no words to count errors against)."""
    import jiwer

    ref = normalise(reference, language)
    if not any(ch.isalnum() for ch in ref):  # the normaliser can leave a lone "."
        return None
    hyp = normalise(hypothesis, language)
    if not any(ch.isalnum() for ch in hyp):
        return 1.0  # every reference word deleted
    return float(jiwer.wer(ref, hyp))
