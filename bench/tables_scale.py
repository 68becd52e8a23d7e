"""How long the delta tables take as the grid grows (synthetic per-item records, real code).

    .venv/bin/python bench/tables_scale.py

Prints seconds per table for M models x B benchmarks x N items with 1000 paired-bootstrap
resamples each, and the cost per (model x benchmark) cell, so the ratio between grids
shows whether the cost is linear in cells x items.
"""

import time

import numpy as np

from deltaflow.tables import EvalResult, TableSettings, comparison_table, delta_table, to_markdown

AXES = ["target", "knowledge", "math", "reasoning"]


def grid(models: int, benchmarks: int, items: int, seed: int = 0) -> list[EvalResult]:
    rng = np.random.default_rng(seed)
    out = []
    for m in ["base"] + [f"run{i}" for i in range(models - 1)]:
        for b in range(benchmarks):
            scores = (rng.random(items) < 0.5).astype(float)
            recs = [{"doc_id": f"b{b}-{i}", "score": float(s)} for i, s in enumerate(scores)]
            out.append(
                EvalResult(
                    m,
                    f"bench{b}",
                    {"axis": AXES[b % 4], "metric": "acc", "decoding_hash": "h", "decoding": {}},
                    recs,
                )
            )
    return out


def main() -> None:
    rows = []
    for models, benchmarks, items in [(3, 3, 200), (10, 10, 1000), (20, 20, 2000)]:
        results = grid(models, benchmarks, items)
        settings = TableSettings(axes={f"bench{b}": AXES[b % 4] for b in range(benchmarks)})
        t0 = time.perf_counter()
        df = delta_table(results, settings=settings)
        cdf = comparison_table(results, [("run0", "run1")] if models > 2 else [], settings)
        to_markdown(df, settings, title="bench", comparisons=cdf)
        dt = time.perf_counter() - t0
        cells = models * benchmarks
        rows.append((models, benchmarks, items, dt, dt / cells, dt / (cells * items)))
        print(
            f"{models:>3} models x {benchmarks:>3} benchmarks x {items:>5} items: {dt:7.2f} s "
            f"({1000 * dt / cells:.1f} ms per model x benchmark)",
            flush=True,
        )
    base = rows[0][5]
    for m, b, n, _dt, _per_cell, per_item in rows[1:]:
        print(f"cost per (cell x item) at {m}x{b}x{n}: {per_item / base:.2f}x the 3x3x200 grid's")


if __name__ == "__main__":
    main()
