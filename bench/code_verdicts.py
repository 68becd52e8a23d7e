"""The code verdicts on the benchmarks' own reference solutions: every HumanEval canonical
solution and every MBPP reference program must pass the sandbox's rule (the harness reports the
tests ran to the end; every assert compares plain built-in values), so the rule that fails the
early-exit and always-equal hacks (tests/test_code_verdicts.py) fails no honest answer.

    .venv/bin/python bench/code_verdicts.py [--limit N] [--workers 2]

Prints, per benchmark, the references that passed, the statuses of the rest with their
reasons, and the mean seconds per sample.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from deltaflow.bench import registry
from deltaflow.bench.items import prepare_items
from deltaflow.bench.scoring.metrics import code_parts
from deltaflow.sandbox import Limits, run_tests


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0, help="first N items of each benchmark (0: all)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    for name in ("humaneval", "mbpp"):
        spec = registry.benchmark_spec(name)
        docs = prepare_items(spec)[: args.limit or None]
        lim = Limits(**spec.code.get("limits", {}))
        t0 = time.monotonic()
        with ThreadPoolExecutor(args.workers) as pool:
            outs = list(
                pool.map(
                    lambda d, spec=spec, lim=lim: run_tests(*code_parts(spec, d, d["answer"]), lim), docs
                )
            )
        wall = time.monotonic() - t0
        statuses = Counter(o.status for o in outs)
        print(
            f"{name}: {statuses['passed']}/{len(docs)} reference solutions pass; statuses {dict(statuses)}; "
            f"{sum(o.seconds for o in outs) / len(outs):.3f} s per sample, {wall:.1f} s wall on {args.workers} workers"
        )
        for d, o in zip(docs, outs):
            if not o.passed:
                print(f"  {d['doc_id']}: {o.status}: {o.reason}")


if __name__ == "__main__":
    main()
