"""Quality signals for pseudo-labels, shared by backends: is this output worth training on?"""

from __future__ import annotations

import zlib
from typing import Optional, Sequence

# Whisper's own threshold: text that gzip shrinks more than this is usually a repetition loop.
MAX_COMPRESSION_RATIO = 2.4


def compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def longest_repeat(tokens: Sequence[int], max_n: int = 8) -> int:
    """How many times in a row the most repeated n-gram (n <= max_n) occurs at the end of the output."""
    best = 1
    for n in range(1, min(max_n, len(tokens) // 2) + 1):
        tail = list(tokens[-n:])
        count, i = 1, len(tokens) - 2 * n
        while i >= 0 and list(tokens[i:i + n]) == tail:
            count += 1
            i -= n
        best = max(best, count)
    return best


def quality_signals(text: str, token_ids: Sequence[int], cumulative_logprob: Optional[float],
                    finish_reason: Optional[str]) -> dict:
    n = len(token_ids)
    ratio = compression_ratio(text)
    repeats = longest_repeat(token_ids)
    flags = []
    if not text.strip():
        flags.append("empty")
    if ratio > MAX_COMPRESSION_RATIO or repeats >= 4:
        flags.append("repetition")
    if finish_reason == "length":
        flags.append("truncated")
    return {
        "avg_logprob": round(cumulative_logprob / n, 4) if cumulative_logprob is not None and n else None,
        "num_tokens": n,
        "finish_reason": finish_reason,
        "compression_ratio": round(ratio, 4),
        "max_repeats": repeats,
        "flags": flags,
    }
