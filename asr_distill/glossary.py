"""A glossary: the terms a retriever returns, and the alternative forms that mean one of them.

Accepted JSON: a plain list of terms, or `{"terms": [...], "alt2main": {"alt form": "main form"},
"pronunciations": {"term": "phonemes"}}` (the seeds' `glossary_filtered.json` / `alt2main.json` pair in
one object; pronunciations, optional, in eSpeak NG's ASCII phonemes: asr_distill/pronounce.py computes
those not given). Terms are matched and
compared in a normalised form (Unicode NFKC, case-folded, punctuation dropped, spaces collapsed), so
"Wi-Fi", "wi fi" and "WI FI" are one term; the main form keeps its spelling for output.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path


class GlossaryError(ValueError):
    """A glossary file that cannot be used; the message says what is wrong and where."""


_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """The form terms are compared in: NFKC, case-folded, punctuation to spaces, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


@dataclass(frozen=True)
class Glossary:
    terms: tuple[str, ...]  # main forms, in file order, each once
    alt2main: dict = field(default_factory=dict)  # normalised alternative form -> main form
    pronunciations: dict = field(default_factory=dict)  # main form -> its phonemes, where the file gives them

    def __post_init__(self):
        object.__setattr__(self, "_ids", {normalise(t): i for i, t in enumerate(self.terms)})

    def __len__(self) -> int:
        return len(self.terms)

    def main_form(self, term: str) -> str | None:
        """The glossary's main form of `term` (itself, or what an alternative form maps to), or None."""
        key = normalise(term)
        if key in self._ids:
            return self.terms[self._ids[key]]
        return self.alt2main.get(key)

    def index(self, term: str) -> int | None:
        main = self.main_form(term)
        return None if main is None else self._ids[normalise(main)]

    @classmethod
    def from_json(cls, data, source: str = "glossary") -> "Glossary":
        alt2main: dict = {}
        sounds: dict = {}
        if isinstance(data, dict):
            unknown = set(data) - {"terms", "alt2main", "pronunciations"}
            if unknown or "terms" not in data:
                raise GlossaryError(f"{source}: an object needs 'terms' (and optionally 'alt2main', "
                                    f"'pronunciations'), got keys {sorted(data)}")
            alt2main = data.get("alt2main") or {}
            sounds = data.get("pronunciations") or {}
            if not isinstance(sounds, dict) or not all(isinstance(v, str) and v.strip() for v in sounds.values()):
                raise GlossaryError(f"{source}: 'pronunciations' must map terms to non-empty phoneme strings")
            if not isinstance(alt2main, dict):
                raise GlossaryError(f"{source}: 'alt2main' must map alternative forms to main forms")
            data = data["terms"]
        if not isinstance(data, list):
            raise GlossaryError(f"{source}: expected a list of terms or an object with 'terms'")
        terms, seen = [], set()
        for i, term in enumerate(data):
            if not isinstance(term, str) or not normalise(term):
                raise GlossaryError(f"{source}: term {i} is {term!r}, not a non-empty string")
            if normalise(term) not in seen:
                seen.add(normalise(term))
                terms.append(term.strip())
        if not terms:
            raise GlossaryError(f"{source}: no terms")
        by_key = {normalise(t): t for t in terms}
        mapped = {}
        for alt, main in alt2main.items():
            if not isinstance(alt, str) or not isinstance(main, str) or normalise(main) not in by_key:
                raise GlossaryError(f"{source}: alt2main maps {alt!r} to {main!r}, which is not a glossary term")
            mapped[normalise(alt)] = by_key[normalise(main)]
        unknown_terms = [t for t in sounds if normalise(t) not in by_key]
        if unknown_terms:
            raise GlossaryError(f"{source}: pronunciations given for {unknown_terms[:3]}, not glossary terms")
        return cls(tuple(terms), mapped, {by_key[normalise(t)]: v.strip() for t, v in sounds.items()})

    @classmethod
    def load(cls, path: str | Path) -> "Glossary":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as err:
            raise GlossaryError(f"cannot read glossary {path}: {err.strerror}") from None
        except json.JSONDecodeError as err:
            raise GlossaryError(f"glossary {path} is not JSON: {err}") from None
        return cls.from_json(data, str(path))
