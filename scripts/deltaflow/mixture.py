"""SFT mixtures: components of dataset splits, each weighted by a multiplier,
a fraction or a row count (seed 000's "raw MCQ x 5 + CoT x 2 + small-talk x 8").

The realized mix (rows, tokens, share per component) is computed and written to
the manifest, never guessed. Same spec + seed + input rows -> identical output.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Callable

from .errors import ConfigError


@dataclass
class ComponentReport:
    name: str
    dataset: str
    split: str
    weight: dict
    available_rows: int
    rows: int = 0
    tokens: int = 0
    row_share: float = 0.0
    token_share: float = 0.0


@dataclass
class MixtureManifest:
    mixture: str
    seed: int
    rows: int
    tokens: int
    components: list[ComponentReport] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _seeded_sample(rows: list[dict], k: int, rng: random.Random) -> list[dict]:
    """k rows without replacement, kept in source order (stable, readable diffs)."""
    idx = sorted(rng.sample(range(len(rows)), k))
    return [rows[i] for i in idx]


def realize_component(rows: list[dict], comp: dict, rng: random.Random, where: str) -> list[dict]:
    """Apply one component's weight to its rows."""
    n = len(rows)
    if n == 0:
        raise ConfigError(f"{where}: dataset '{comp['dataset']}' split "
                          f"'{comp.get('split', 'train')}' has no rows")
    if "multiplier" in comp:
        mult = comp["multiplier"]
        if mult <= 0:
            raise ConfigError(f"{where}.multiplier: must be > 0, got {mult}")
        whole, frac = int(math.floor(mult)), mult - math.floor(mult)
        out = rows * whole
        extra = round(frac * n)
        if extra:
            out += _seeded_sample(rows, extra, rng)
    elif "fraction" in comp:
        k = round(comp["fraction"] * n)
        if k == 0:
            raise ConfigError(f"{where}.fraction: {comp['fraction']} of {n} rows rounds to 0 rows; "
                              "raise the fraction or use `rows:`")
        out = _seeded_sample(rows, k, rng)
    elif "rows" in comp:
        k = comp["rows"]
        out = rows * (k // n) + _seeded_sample(rows, k % n, rng)
    else:
        raise ConfigError(f"{where}: give exactly one of multiplier, fraction or rows")
    return out


def build_mixture(name: str, spec: dict, rows_by_dataset: dict[str, list[dict]],
                  count_tokens: Callable[[dict], int]) -> tuple[list[dict], MixtureManifest]:
    """Build mixture ``name`` from ``spec`` (a validated config entry).

    ``rows_by_dataset`` maps dataset name to its normalized rows (all splits).
    Returns the tagged rows (shuffled if the spec says so) and the manifest.
    """
    seed = spec.get("seed", 0)
    reports, tagged = [], []
    for i, comp in enumerate(spec["components"]):
        where = f"mixtures.{name}.components[{i}]"
        split = comp.get("split", "train")
        comp_name = comp.get("name", comp["dataset"])
        pool = [r for r in rows_by_dataset[comp["dataset"]] if r["split"] == split]
        # one RNG per component, derived from the mixture seed and the component's position,
        # so editing one component's weight leaves the other components' samples unchanged.
        rng = random.Random(f"{seed}:{i}:{comp_name}")
        chosen = realize_component(pool, comp, rng, where)
        weight = {k: comp[k] for k in ("multiplier", "fraction", "rows") if k in comp}
        report = ComponentReport(name=comp_name, dataset=comp["dataset"], split=split,
                                 weight=weight, available_rows=len(pool))
        for row in chosen:
            out = dict(row)
            out["mixture"] = name
            out["mixture_component"] = comp_name
            report.rows += 1
            report.tokens += count_tokens(row)
            tagged.append(out)
        reports.append(report)
    if spec.get("shuffle", True):
        random.Random(seed).shuffle(tagged)
    total_rows = len(tagged)
    total_tokens = sum(r.tokens for r in reports)
    for r in reports:
        r.row_share = round(r.rows / total_rows, 6) if total_rows else 0.0
        r.token_share = round(r.tokens / total_tokens, 6) if total_tokens else 0.0
    for i, row in enumerate(tagged):
        row["mixture_row"] = i
    manifest = MixtureManifest(mixture=name, seed=seed, rows=total_rows, tokens=total_tokens,
                               components=reports)
    return tagged, manifest
