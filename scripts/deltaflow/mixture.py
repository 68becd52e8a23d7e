"""Training mixtures (SFT or preference pairs) built from normalized dataset splits.

A mixture is a list of components. Each takes a dataset split through filters (max length in
tokens, label check against the benchmark's parser, per-class caps or class balancing), then
the whole mixture is deduplicated (exact and normalized text) and decontaminated against the
evaluated benchmarks' items, and only then weighted: by multiplier (2.5 = every row twice plus
a seeded half), by fraction of the source, by row count, or by a target share of the final mix
(rows or tokens). The realized mix — rows, tokens, share per component and per profile — is
computed and checked against the configured bounds, never guessed.

Same spec + seed + input rows -> byte-identical output. Nothing is dropped silently: every
row removed (filtered, duplicate, contaminated) is returned with its reason.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from .bench.lmeval import is_lm_eval_task
from .datasets import dataset_splits, row_format
from .decontam import ContaminationIndex, normalize_text
from .errors import ConfigError, DataError
from .origins import check_rows, origin_summary

WEIGHT_KEYS = ("multiplier", "fraction", "rows", "share")
# Reasons that mean a bad row (counted against max_reject_fraction); caps, duplicates and
# contamination are deliberate removals and are reported separately.
BAD_ROW = ("over-length", "label")


@dataclass
class ComponentReport:
    name: str
    dataset: str
    split: str
    profile: str
    weight: dict
    available_rows: int
    benchmark_profile: str | None = None
    rejected: dict = field(default_factory=dict)  # reason -> rows
    capped: dict = field(default_factory=dict)  # class -> rows removed by the cap
    duplicates: dict = field(default_factory=dict)  # exact / normalized -> rows
    contaminated: int = 0
    unique_rows: int = 0  # rows left after filters, dedup, decontamination
    target_share: float | None = None
    rows: int = 0
    tokens: int = 0
    row_share: float = 0.0
    token_share: float = 0.0
    # who wrote the rows (deltaflow.origins tags) and, for model-written rows, which models
    origin: dict = field(default_factory=dict)


@dataclass
class MixtureManifest:
    mixture: str
    kind: str
    seed: int
    share_basis: str
    rows: int
    tokens: int
    components: list[ComponentReport] = field(default_factory=list)
    profiles: dict = field(default_factory=dict)
    bounds: dict = field(default_factory=dict)
    decontamination: dict = field(default_factory=dict)
    policy: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MixtureResult:
    rows: list[dict]
    manifest: MixtureManifest
    removed: list[dict]  # every row taken out, with "reason" and "component"
    hits: list[dict]  # contamination hits (row, benchmark, doc_id, match, overlap)


def reason_kind(reason: str) -> str:
    """The category of a removal reason ("over-length: 9 tokens > ..." -> "over-length")."""
    return reason.split(":")[0].split(" (")[0]


def row_texts(row: dict) -> list[str]:
    """The strings of a row that are trained on or prompted with."""
    texts = [m["content"] for m in row.get("messages") or []]
    for key in ("chosen", "rejected", "text"):
        if isinstance(row.get(key), str):
            texts.append(row[key])
    return texts


def _seeded_sample(rows: list, k: int, rng: random.Random) -> list:
    """k items without replacement, kept in source order (stable, readable diffs)."""
    idx = sorted(rng.sample(range(len(rows)), k))
    return [rows[i] for i in idx]


def _take_rows(rows: list, k: int, rng: random.Random) -> list:
    """k rows: whole copies of the pool, then a seeded sample for the remainder."""
    return rows * (k // len(rows)) + _seeded_sample(rows, k % len(rows), rng)


def realize_component(rows: list[dict], comp: dict, rng: random.Random, where: str) -> list[dict]:
    """Apply one fixed weight (multiplier, fraction or rows) to a component's rows."""
    n = len(rows)
    if "multiplier" in comp:
        mult = comp["multiplier"]
        if mult <= 0:
            raise ConfigError(f"{where}.multiplier: must be > 0, got {mult}")
        whole, frac = math.floor(mult), mult - math.floor(mult)
        out = rows * whole
        extra = round(frac * n)
        if extra:
            out += _seeded_sample(rows, extra, rng)
        return out
    if "fraction" in comp:
        k = round(comp["fraction"] * n)
        if k == 0:
            raise ConfigError(
                f"{where}.fraction: {comp['fraction']} of {n} rows rounds to 0 rows; "
                "raise the fraction or use `rows:`"
            )
        return _seeded_sample(rows, k, rng)
    if "rows" in comp:
        return _take_rows(rows, comp["rows"], rng)
    raise ConfigError(f"{where}: give exactly one of {', '.join(WEIGHT_KEYS)}")


def _take_tokens(rows: list[dict], tokens: list[int], target: float, rng: random.Random) -> list[dict]:
    """Rows (seeded order, cycling through the pool) until their tokens are closest to target."""
    out, total = [], 0
    order = list(range(len(rows)))
    while True:
        rng.shuffle(order)
        for i in order:
            if total + tokens[i] / 2 > target:
                return out
            out.append(rows[i])
            total += tokens[i]


# --- filters -----------------------------------------------------------------------------


def _label_of(row: dict, field_name: str):
    label = row.get(field_name)
    if label is None and row.get("messages") and row["messages"][-1]["role"] == "assistant":
        label = row["messages"][-1]["content"].strip()
    return label


def _check_label(row: dict, comp: dict, parser: Callable[[str], str | None] | None) -> str | None:
    """Why the row's answer would not score under the benchmark's parser (None when fine)."""
    answer = row["messages"][-1]["content"] if row.get("messages") else ""
    label_set = comp.get("label_set") or row.get("label_set")
    if parser is not None:
        parsed = parser(answer)
        if parsed is None:
            return f"label: the benchmark's parser extracts nothing from answer {answer!r}"
        if row.get("label") is not None and parsed.strip() != str(row["label"]).strip():
            return (
                f"label: the parser reads {parsed!r} from {answer!r}, but the row's label is {row['label']!r}"
            )
        answer = parsed
    if label_set and answer.strip() not in [str(x) for x in label_set]:
        return f"label: answer {answer.strip()!r} is not in the label set {list(label_set)}"
    return None


def _filter_component(
    pool: list[dict],
    tokens: list[int],
    comp: dict,
    rep: ComponentReport,
    parser,
    rng: random.Random,
    where: str,
) -> tuple[list[int], list[dict]]:
    """Indices of pool rows that pass the component's filters; removed rows with reasons."""
    keep, removed = [], []
    label_errors = []
    for i, row in enumerate(pool):
        reason = None
        if comp.get("max_tokens") and tokens[i] > comp["max_tokens"]:
            reason = f"over-length: {tokens[i]} tokens > max_tokens {comp['max_tokens']}"
        elif parser is not None or comp.get("label_set") or row.get("label_set"):
            reason = _check_label(row, comp, parser)
            if reason:
                label_errors.append((row, reason))
        if reason:
            removed.append({**row, "reason": reason})
            rep.rejected[reason_kind(reason)] = rep.rejected.get(reason_kind(reason), 0) + 1
        else:
            keep.append(i)
    if label_errors and comp["on_label_mismatch"] == "error":
        row, reason = label_errors[0]
        raise DataError(
            f"{where}: {len(label_errors)} of {len(pool)} rows of dataset '{comp['dataset']}' have "
            f"answers the benchmark would not score; first: row {row['id']}: {reason}. Fix the "
            "answers to the exact label strings, or set on_label_mismatch: reject to drop them"
        )
    cap = comp.get("cap_per_class")
    if cap or comp.get("balance_classes"):
        field_name = comp["label_field"]
        by_class: dict[str, list[int]] = defaultdict(list)
        for i in keep:
            by_class[str(_label_of(pool[i], field_name))].append(i)
        limit = min(len(v) for v in by_class.values()) if comp.get("balance_classes") else cap
        if cap:
            limit = min(limit, cap)
        keep = []
        for cls in sorted(by_class):
            idx = by_class[cls]
            chosen = set(_seeded_sample(idx, min(limit, len(idx)), rng))
            if len(idx) > limit:
                rep.capped[cls] = len(idx) - limit
                removed.extend(
                    {**pool[i], "reason": f"class cap: class {cls!r} over {limit} rows"}
                    for i in idx
                    if i not in chosen
                )
            keep.extend(i for i in idx if i in chosen)
        keep.sort()
    return keep, removed


def _dedup_key(row: dict, mode: str) -> str:
    texts = row_texts(row)
    if mode == "exact":
        return json.dumps(texts, ensure_ascii=False)
    return " \x1f ".join(normalize_text(t) for t in texts)


# --- the mixture -------------------------------------------------------------------------


def _component_pool(
    name: str, i: int, comp: dict, kind: str, rows_by_dataset: dict[str, list[dict]]
) -> tuple[list[dict], ComponentReport]:
    """A component's rows (its dataset's split) and its report, checked for the mixture kind."""
    where = f"mixtures.{name}.components[{i}]"
    split = comp["split"]
    comp_name = comp.get("name", comp["dataset"])
    pool = [r for r in rows_by_dataset[comp["dataset"]] if r["split"] == split]
    if not pool:
        raise ConfigError(f"{where}: dataset '{comp['dataset']}' split '{split}' has no rows")
    if kind == "preference" and not all(
        isinstance(r.get("chosen"), str) and isinstance(r.get("rejected"), str) for r in pool
    ):
        raise ConfigError(
            f"{where}: mixture kind 'preference' needs chosen/rejected pairs, but "
            f"dataset '{comp['dataset']}' has rows without them (use a preference "
            "format such as sharegpt_preference)"
        )
    rep = ComponentReport(
        name=comp_name,
        dataset=comp["dataset"],
        split=split,
        profile=comp.get("profile", comp_name),
        benchmark_profile=comp.get("benchmark_profile"),
        weight={k: comp[k] for k in WEIGHT_KEYS if k in comp},
        available_rows=len(pool),
    )
    return pool, rep


def _filter_rows(
    name: str,
    i: int,
    comp: dict,
    spec: dict,
    pool: list[dict],
    rep: ComponentReport,
    count_tokens,
    parsers,
    removed: list[dict],
) -> tuple[list[int], list[int]]:
    """Indices of the component's rows that pass its filters (length, labels, class caps) and
    every row's token count; the rest go to ``removed`` with the reason. Fails when more than
    ``max_reject_fraction`` of the rows are bad."""
    where = f"mixtures.{name}.components[{i}]"
    rng = random.Random(f"{spec['seed']}:{i}:{rep.name}:filter")
    tokens = [count_tokens(r) for r in pool]
    parser = None
    if comp.get("labels_from"):
        parser = (parsers or {}).get(comp["labels_from"])
        if parser is None:
            raise ConfigError(f"{where}.labels_from: no parser for benchmark '{comp['labels_from']}'")
    keep, out = _filter_component(pool, tokens, comp, rep, parser, rng, where)
    for r in out:
        r["component"] = rep.name
    removed.extend(out)
    bad = sum(v for k, v in rep.rejected.items() if k in BAD_ROW)
    limit = spec["max_reject_fraction"]
    if bad / len(pool) > limit:
        raise DataError(
            f"{where}: {bad} of {len(pool)} rows of dataset '{comp['dataset']}' were "
            f"rejected ({rep.rejected}), more than max_reject_fraction {limit}; "
            f"first: {next(r['reason'] for r in out if reason_kind(r['reason']) in BAD_ROW)}"
        )
    return keep, tokens


def _dedup(
    pool: list[dict],
    keep: list[int],
    tokens: list[int],
    rep: ComponentReport,
    modes: tuple,
    seen: dict[str, dict[str, str]],
    removed: list[dict],
) -> tuple[list[dict], list[int]]:
    """The kept rows not already in the mixture (first occurrence, in component order, wins)."""
    kept, kept_tokens = [], []
    for j in keep:
        row = pool[j]
        dup_of = next(
            (
                (mode, seen[mode][_dedup_key(row, mode)])
                for mode in modes
                if _dedup_key(row, mode) in seen[mode]
            ),
            None,
        )
        if dup_of:
            rep.duplicates[dup_of[0]] = rep.duplicates.get(dup_of[0], 0) + 1
            removed.append(
                {**row, "component": rep.name, "reason": f"duplicate ({dup_of[0]}) of row {dup_of[1]}"}
            )
            continue
        for mode in modes:
            seen[mode].setdefault(_dedup_key(row, mode), row["id"])
        kept.append(row)
        kept_tokens.append(tokens[j])
    return kept, kept_tokens


def _weigh(
    name: str,
    spec: dict,
    pools: list[list[dict]],
    pool_tokens: list[list[int]],
    reports: list[ComponentReport],
    tok_of: dict,
) -> list[list[dict]]:
    """Each component's rows in the mix: fixed weights first (multiplier, fraction, rows), then
    the share targets fill the rest."""
    chosen: list[list[dict]] = [[] for _ in reports]
    share_idx = []
    for i, (comp, pool, rep) in enumerate(zip(spec["components"], pools, reports)):
        where = f"mixtures.{name}.components[{i}]"
        if not pool:
            raise DataError(
                f"{where}: no rows of dataset '{comp['dataset']}' are left after filters, "
                f"dedup and decontamination (removed: {rep.rejected or ''} {rep.capped or ''} "
                f"{rep.duplicates or ''} contaminated {rep.contaminated})"
            )
        if "share" in comp:
            share_idx.append(i)
            rep.target_share = comp["share"]
            continue
        chosen[i] = realize_component(pool, comp, random.Random(f"{spec['seed']}:{i}:{rep.name}"), where)
    if share_idx:
        _fill_shares(name, spec, spec["share_basis"], share_idx, pools, pool_tokens, chosen, reports, tok_of)
    return chosen


def _tag(
    name: str, spec: dict, reports: list[ComponentReport], chosen: list[list[dict]], tok_of: dict
) -> list[dict]:
    """The mix's rows tagged with their mixture, profile and component, shuffled (seeded) and
    numbered; the reports count rows and tokens."""
    tagged = []
    for rep, rows in zip(reports, chosen):
        for row in rows:
            out = dict(row)
            out["mixture"] = name
            out["mixture_profile"] = rep.profile
            out["mixture_component"] = rep.name
            if rep.benchmark_profile:
                out["mixture_benchmark_profile"] = rep.benchmark_profile
            rep.rows += 1
            rep.tokens += tok_of[id(row)]
            tagged.append(out)
    if spec["shuffle"]:
        random.Random(spec["seed"]).shuffle(tagged)
    for i, row in enumerate(tagged):
        row["mixture_row"] = i
    return tagged


def build_mixture(
    name: str,
    spec: dict,
    rows_by_dataset: dict[str, list[dict]],
    count_tokens: Callable[[dict], int],
    *,
    index: ContaminationIndex | None = None,
    parsers: dict[str, Callable[[str], str | None]] | None = None,
) -> MixtureResult:
    """Build mixture ``name`` from ``spec`` (a validated config entry: config.schema_defaults
    fills one outside a workflow run).

    ``rows_by_dataset`` maps dataset name to its normalized rows (all splits); ``index`` holds
    the eval items to decontaminate against; ``parsers`` maps benchmark name to its answer
    parser (for ``labels_from``). Steps: each component's pool, filtered and deduplicated
    across the mixture; decontamination; weights; tags and order; the manifest and its bounds.
    """
    reports: list[ComponentReport] = []
    pools: list[list[dict]] = []
    pool_tokens: list[list[int]] = []
    removed: list[dict] = []
    seen: dict[str, dict[str, str]] = {"exact": {}, "normalized": {}}
    modes = {"normalized": ("exact", "normalized"), "exact": ("exact",), "off": ()}[spec["dedup"]]
    for i, comp in enumerate(spec["components"]):
        pool, rep = _component_pool(name, i, comp, spec["kind"], rows_by_dataset)
        check_rows(name, spec.get("policy"), rep.name, pool)  # the config check's second line
        rep.origin = origin_summary(pool)
        keep, tokens = _filter_rows(name, i, comp, spec, pool, rep, count_tokens, parsers, removed)
        kept, kept_tokens = _dedup(pool, keep, tokens, rep, modes, seen, removed)
        reports.append(rep)
        pools.append(kept)
        pool_tokens.append(kept_tokens)

    hits = _decontaminate(name, spec, index, pools, pool_tokens, reports, removed)
    for rep, pool in zip(reports, pools):
        rep.unique_rows = len(pool)
    tok_of = {id(r): t for pool, toks in zip(pools, pool_tokens) for r, t in zip(pool, toks)}
    chosen = _weigh(name, spec, pools, pool_tokens, reports, tok_of)
    tagged = _tag(name, spec, reports, chosen, tok_of)
    manifest = _summarize(name, spec, spec["kind"], spec["seed"], spec["share_basis"], reports, len(tagged))
    manifest.decontamination = _decontam_summary(spec, index, hits)
    manifest.policy = spec.get("policy")
    _check_bounds(name, spec, manifest)
    return MixtureResult(rows=tagged, manifest=manifest, removed=removed, hits=hits)


def _decontaminate(name, spec, index, pools, pool_tokens, reports, removed) -> list[dict]:
    policy = spec["decontamination"]["policy"]
    if index is None or policy == "off":
        return []
    hits = []
    for ci, (pool, toks, rep) in enumerate(zip(pools, pool_tokens, reports)):
        keep_rows, keep_toks = [], []
        for row, t in zip(pool, toks):
            row_hits = index.check(row["id"], row_texts(row))
            if row_hits:
                hits.extend(h.to_dict() for h in row_hits)
                rep.contaminated += 1
                first = row_hits[0]
                removed.append(
                    {
                        **row,
                        "component": rep.name,
                        "reason": f"contamination: {first.match} overlap with {first.benchmark} "
                        f"doc {first.doc_id}",
                    }
                )
            else:
                keep_rows.append(row)
                keep_toks.append(t)
        pools[ci], pool_tokens[ci] = keep_rows, keep_toks
    if hits and policy == "fail":
        per = Counter(h["benchmark"] for h in hits)
        ex = hits[0]
        raise DataError(
            f"mixtures.{name}: {len(hits)} contamination hits ({dict(per)}); first: training row "
            f"{ex['row']} overlaps {ex['benchmark']} doc {ex['doc_id']} ({ex['match']}, overlap "
            f"{ex['overlap']}). Remove those rows or set decontamination.policy: drop"
        )
    return hits


def _decontam_summary(spec, index, hits) -> dict:
    benchmarks = sorted({i.benchmark for i in index.items}) if index else []
    per = Counter(h["benchmark"] for h in hits)
    return {
        "policy": spec["decontamination"]["policy"] if index else "off",
        "ngram": index.ngram if index else None,
        "min_tokens": index.min_tokens if index else None,
        "benchmarks": benchmarks,
        "eval_items": len(index.items) if index else 0,
        "hits": len(hits),
        "rows_removed": len({h["row"] for h in hits}),
        "overlap_per_benchmark": {b: per.get(b, 0) for b in benchmarks},
    }


def _fill_shares(name, spec, basis, share_idx, pools, pool_tokens, chosen, reports, tok_of):
    shares = {i: spec["components"][i]["share"] for i in share_idx}
    total_share = sum(shares.values())
    fixed = [i for i in range(len(reports)) if i not in shares]
    size = (lambda rows: len(rows)) if basis == "rows" else (lambda rows: sum(tok_of[id(r)] for r in rows))
    if fixed:
        if total_share >= 1:
            raise ConfigError(
                f"mixtures.{name}: share targets sum to {total_share:g}; with fixed-weight "
                "components they must sum to less than 1"
            )
        total = sum(size(chosen[i]) for i in fixed) / (1 - total_share)
    else:
        key = "total_rows" if basis == "rows" else "total_tokens"
        if key not in spec:
            raise ConfigError(
                f"mixtures.{name}: every component has a share, so the mix size must be "
                f"given: set {key} (share_basis is {basis})"
            )
        if abs(total_share - 1) > 1e-6:
            raise ConfigError(
                f"mixtures.{name}: share targets sum to {total_share:g}; with no "
                "fixed-weight components they must sum to 1"
            )
        total = spec[key]
    seed = spec["seed"]
    for i in share_idx:
        rng = random.Random(f"{seed}:{i}:{reports[i].name}")
        target = shares[i] * total
        if basis == "rows":
            k = round(target)
            if k == 0:
                raise ConfigError(
                    f"mixtures.{name}.components[{i}].share: {shares[i]} of {total:.0f} rows rounds to 0 rows"
                )
            chosen[i] = _take_rows(pools[i], k, rng)
        else:
            chosen[i] = _take_tokens(pools[i], pool_tokens[i], target, rng)


def _summarize(name, spec, kind, seed, basis, reports, total_rows) -> MixtureManifest:
    total_tokens = sum(r.tokens for r in reports)
    for r in reports:
        r.row_share = round(r.rows / total_rows, 6) if total_rows else 0.0
        r.token_share = round(r.tokens / total_tokens, 6) if total_tokens else 0.0
    profiles: dict[str, dict] = {}
    for r in reports:
        p = profiles.setdefault(r.profile, {"rows": 0, "tokens": 0, "components": []})
        p["rows"] += r.rows
        p["tokens"] += r.tokens
        p["components"].append(r.name)
    for p in profiles.values():
        p["row_share"] = round(p["rows"] / total_rows, 6) if total_rows else 0.0
        p["token_share"] = round(p["tokens"] / total_tokens, 6) if total_tokens else 0.0
    return MixtureManifest(
        mixture=name,
        kind=kind,
        seed=seed,
        share_basis=basis,
        rows=total_rows,
        tokens=total_tokens,
        components=reports,
        profiles=profiles,
    )


def realized_shares(manifest: MixtureManifest) -> dict[str, float]:
    """Share of the mix per component name and per profile name, on the mixture's share basis."""
    key = "row_share" if manifest.share_basis == "rows" else "token_share"
    out = {r.name: getattr(r, key) for r in manifest.components}
    out.update({p: v[key] for p, v in manifest.profiles.items()})
    return out


def _check_bounds(name, spec, manifest: MixtureManifest) -> None:
    shares = realized_shares(manifest)
    results, failures = {}, []
    for kind, op in (("min_share", lambda s, b: s >= b - 1e-9), ("max_share", lambda s, b: s <= b + 1e-9)):
        for target, bound in (spec.get(kind) or {}).items():
            if target not in shares:
                raise ConfigError(
                    f"mixtures.{name}.{kind}.{target}: no component or profile named "
                    f"'{target}' (known: {sorted(shares)})"
                )
            ok = op(shares[target], bound)
            results[f"{kind}.{target}"] = {"bound": bound, "realized": shares[target], "ok": ok}
            if not ok:
                failures.append(f"{target} share {shares[target]:.4f} violates {kind} {bound}")
    manifest.bounds = results
    if failures:
        realized = ", ".join(f"{k} {v:.4f}" for k, v in sorted(shares.items()))
        raise DataError(
            f"mixtures.{name}: {'; '.join(failures)} ({manifest.share_basis} basis). "
            f"Realized shares: {realized}. Change the component weights or the bounds."
        )


def check_config(config: dict, *, check_files: bool):
    """Config errors in ``mixtures:`` (before any job): each component names a known dataset
    (or generation) and one of its splits, under a distinct name, and every key that refers to
    another section fits it (``_check_mixture``). ``check_files``: unused (a mixture names no
    file)."""
    datasets = config["datasets"]
    gens = config.get("generations") or {}
    for mname, mix in config["mixtures"].items():
        for i, comp in enumerate(mix["components"]):
            key = f"mixtures.{mname}.components[{i}]"
            ds = comp["dataset"]
            if ds not in datasets and ds not in gens:
                yield (
                    f"config key '{key}.dataset': unknown dataset '{ds}'; "
                    f"known: {', '.join(sorted([*datasets, *gens]))}"
                )
                continue
            splits = dataset_splits(datasets[ds] if ds in datasets else gens[ds])
            if comp["split"] not in splits:
                yield (f"config key '{key}.split': dataset '{ds}' has splits {splits}, not '{comp['split']}'")
        names = [c.get("name", c["dataset"]) for c in mix["components"]]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            yield (
                f"config key 'mixtures.{mname}.components': component names {dupes} repeat; "
                "give each component a distinct `name:`"
            )
        yield from _check_mixture(config, mname, mix, names)


PREFERENCE_FORMATS = ("sharegpt_preference", "messages", "preference")  # row_format()'s


def _check_mixture(config: dict, mname: str, mix: dict, names: list[str]):
    """Mixture keys that refer to other sections, checked before any job runs."""
    key = f"mixtures.{mname}"
    benchmarks = config["benchmarks"]
    for i, comp in enumerate(mix["components"]):
        gen = (config.get("generations") or {}).get(comp["dataset"])
        if gen is not None and (mix["kind"] == "preference") != (gen["mode"] == "pairs"):
            yield (
                f"config key '{key}.components[{i}].dataset': generation '{comp['dataset']}' writes "
                f"{'preference pairs' if gen['mode'] == 'pairs' else 'SFT rows'} (mode {gen['mode']}) and the "
                f"mixture is kind {mix['kind']}"
            )
        ds = config["datasets"].get(comp["dataset"], {})
        fmt = row_format(ds)
        if mix.get("kind") == "preference" and ds.get("type") == "generated":
            yield (
                f"config key '{key}.components[{i}].dataset': a preference mixture needs "
                f"chosen/rejected pairs; '{comp['dataset']}' is a generated SFT task"
            )
        elif mix.get("kind") == "preference" and fmt and fmt not in PREFERENCE_FORMATS:
            yield (
                f"config key '{key}.components[{i}].dataset': a preference mixture needs a "
                f"preference format ({', '.join(PREFERENCE_FORMATS)}), dataset "
                f"'{comp['dataset']}' is '{fmt}'"
            )
        elif mix["kind"] == "sft" and fmt in ("sharegpt_preference", "preference"):
            yield (
                f"config key '{key}.kind': component '{names[i]}' draws preference pairs "
                f"from '{comp['dataset']}'; set kind: preference (or use an SFT dataset)"
            )
        if comp.get("labels_from") and comp["labels_from"] not in benchmarks:
            yield (
                f"config key '{key}.components[{i}].labels_from': unknown benchmark "
                f"'{comp['labels_from']}'; known: {', '.join(sorted(benchmarks))}"
            )
        elif comp.get("labels_from") and is_lm_eval_task(
            benchmarks[comp["labels_from"]].get("task", comp["labels_from"])
        ):
            yield (
                f"config key '{key}.components[{i}].labels_from': benchmark '{comp['labels_from']}' is lm-eval's "
                f"task '{benchmarks[comp['labels_from']].get('task', comp['labels_from'])}', whose answers are read by "
                "the task's own filters (its filter_list), which deltaflow does not apply to training rows: labels "
                "would be compared as whole strings. Name a packaged or benchmark_dirs benchmark with the same "
                "answers, or drop labels_from"
            )
    chosen = (mix.get("decontamination") or {}).get("benchmarks") or []
    for b in chosen:
        if b not in benchmarks:
            yield (
                f"config key '{key}.decontamination.benchmarks': unknown benchmark '{b}'; "
                f"known: {', '.join(sorted(benchmarks))}"
            )
    groups = set(names) | {c.get("profile", n) for c, n in zip(mix["components"], names)}
    for bound in ("min_share", "max_share"):
        for target in mix.get(bound) or {}:
            if target not in groups:
                yield (
                    f"config key '{key}.{bound}.{target}': no component or profile named "
                    f"'{target}'; known: {', '.join(sorted(groups))}"
                )
    yield from _check_shares(key, mix)


def _check_shares(key: str, mix: dict):
    """Share targets: all components (summing to 1, with the mix size) or some (below 1)."""
    shares = [c["share"] for c in mix["components"] if "share" in c]
    if shares:
        basis = mix["share_basis"]
        total_key = "total_rows" if basis == "rows" else "total_tokens"
        if len(shares) == len(mix["components"]):
            if abs(sum(shares) - 1) > 1e-6:
                yield (
                    f"config key '{key}.components': every component has a share, so the "
                    f"shares must sum to 1 (they sum to {sum(shares):g})"
                )
            if total_key not in mix:
                yield (
                    f"config key '{key}.{total_key}': every component has a share, so give the "
                    f"mix size as {total_key} (share_basis is {basis})"
                )
        elif sum(shares) >= 1:
            yield (
                f"config key '{key}.components': share targets sum to {sum(shares):g}; beside "
                "fixed-weight components they must sum to less than 1"
            )
