"""Training-vs-benchmark contamination checks: normalized exact match plus n-gram overlap.

The method follows lm-eval's decontamination and open-instruct's reports: text is
normalized (NFKC, lower case, word and symbol tokens, punctuation dropped) and an eval
item counts as seen when a training row shares one of its n-grams (13 by default).

Two refinements so that short items are not invisible:
- an item shorter than ``2 * ngram`` tokens uses n-grams of ``len // 2`` tokens (at least
  ``min_tokens``), so that a single-word edit leaves a whole n-gram intact on one side (for
  items of at least ``2 * min_tokens`` tokens; in shorter ones only edits near an end);
- an item shorter than ``min_tokens`` is only matched exactly (a whole training turn equal
  to it), since a 4-word n-gram would flag unrelated rows.

The index is a hash map keyed by each n-gram's first ``min_tokens`` tokens; scanning a
training row costs one dict lookup per token (see bench/decontam.py for 100k x 20k).
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass

# Word characters, or single symbols that change meaning (math operators); sentence
# punctuation and quotes are dropped.
_TOKEN = re.compile(r"\w+|[+\-*/=<>%^]")


def normalize_tokens(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(unicodedata.normalize("NFKC", text).lower()))


def normalize_text(text: str) -> str:
    return " ".join(normalize_tokens(text))


@dataclass(frozen=True)
class EvalItem:
    benchmark: str
    doc_id: str
    text: str


@dataclass
class Hit:
    row: str
    benchmark: str
    doc_id: str
    match: str  # "exact" or "ngram"
    ngram: int  # n-gram length used for this item (0 for exact)
    overlap: float  # fraction of the item's n-grams found in the row (1.0 for exact)

    def to_dict(self) -> dict:
        return {
            "row": self.row,
            "benchmark": self.benchmark,
            "doc_id": self.doc_id,
            "match": self.match,
            "ngram": self.ngram,
            "overlap": round(self.overlap, 4),
        }


class ContaminationIndex:
    def __init__(self, items: list[EvalItem], *, ngram: int = 13, min_tokens: int = 8):
        if min_tokens < 1 or ngram < min_tokens:
            raise ValueError(f"need 1 <= min_tokens ({min_tokens}) <= ngram ({ngram})")
        self.ngram, self.min_tokens = ngram, min_tokens
        self.items = items
        self.exact: dict[str, list[int]] = defaultdict(list)
        # prefix (first min_tokens tokens) -> [(full n-gram, item index)]
        self.grams: dict[tuple, list[tuple[tuple, int]]] = defaultdict(list)
        self.n_grams: list[int] = []
        self.gram_len: list[int] = []
        for idx, item in enumerate(items):
            toks = normalize_tokens(item.text)
            self.exact[" ".join(toks)].append(idx)
            k = self.item_ngram(len(toks))
            self.gram_len.append(k)
            if k == 0:
                self.n_grams.append(0)
                continue
            seen = {toks[i : i + k] for i in range(len(toks) - k + 1)}
            self.n_grams.append(len(seen))
            for g in seen:
                self.grams[g[:min_tokens]].append((g, idx))

    def item_ngram(self, length: int) -> int:
        """The n-gram length used for an item of ``length`` tokens (0: exact match only)."""
        if length < self.min_tokens:
            return 0
        return max(self.min_tokens, min(self.ngram, length // 2))

    def check(self, row_id: str, texts: list[str]) -> list[Hit]:
        """Hits of one training row, given its texts (each turn, and chosen/rejected)."""
        found: dict[int, set] = defaultdict(set)
        exact: set[int] = set()
        m = self.min_tokens
        for text in texts:
            toks = normalize_tokens(text)
            exact.update(self.exact.get(" ".join(toks), ()))
            for i in range(len(toks) - m + 1):
                cands = self.grams.get(toks[i : i + m])
                if not cands:
                    continue
                for gram, idx in cands:
                    if toks[i : i + len(gram)] == gram:
                        found[idx].add(gram)
        hits = []
        for idx in sorted(exact | set(found)):
            item = self.items[idx]
            if idx in exact:
                hits.append(Hit(row_id, item.benchmark, item.doc_id, "exact", 0, 1.0))
            else:
                hits.append(
                    Hit(
                        row_id,
                        item.benchmark,
                        item.doc_id,
                        "ngram",
                        self.gram_len[idx],
                        len(found[idx]) / self.n_grams[idx],
                    )
                )
        return hits
