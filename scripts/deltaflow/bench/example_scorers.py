"""Scorers shipped as examples of ``benchmarks.<name>.scorer`` (deltaflow.bench.scorer): each
takes an item's doc, responses, record and seconds and returns {metric: number}.

- ``repetition_rate``: the share of repeated word 4-grams in the response (0 = none repeated;
  a degenerate "the the the ..." loop approaches 1), averaged over the item's responses.
- ``latency``: seconds the item's generation took and whitespace words per second.
"""

from __future__ import annotations


def _repeated_4grams(text: str) -> float:
    words = text.split()
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(*, doc, responses, record, seconds) -> dict:
    texts = responses or [str(record.get("response", ""))]
    return {"rep4": sum(map(_repeated_4grams, texts)) / len(texts)}


def latency(*, doc, responses, record, seconds) -> dict:
    if seconds is None:
        raise ValueError(
            f"item {record['doc_id']}: its outputs were generated before deltaflow recorded each item's "
            "time (a cache entry from an older version); remove its entry under results/evals/.cache to regenerate it"
        )
    words = sum(len(r.split()) for r in responses)
    return {"seconds": seconds, "words_per_s": words / seconds if seconds > 0 else 0.0}
