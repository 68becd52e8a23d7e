"""``report.md`` for a mixture: what a reviewer (or a model card) needs about the training data."""

from __future__ import annotations

from collections import Counter

from .mixture import MixtureManifest, reason_kind


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render_report(m: MixtureManifest, *, hits: list[dict], removed: list[dict],
                  dataset_rejects: dict[str, dict], inputs: dict[str, str]) -> str:
    out = [f"# Mixture `{m.mixture}`", "",
           f"{m.kind.upper()} mixture, seed {m.seed}: **{m.rows} rows, {m.tokens} tokens** "
           f"(shares and bounds on the {m.share_basis} basis).", "", "## Components", ""]
    out.append(_table(
        ["component", "profile", "dataset/split", "weight", "source rows", "unique rows kept",
         "rows", "tokens", "row share", "token share", "target share"],
        [[c.name, c.profile, f"{c.dataset}/{c.split}", ", ".join(f"{k} {v}" for k, v in c.weight.items()),
          c.available_rows, c.unique_rows, c.rows, c.tokens, _pct(c.row_share), _pct(c.token_share),
          _pct(c.target_share) if c.target_share is not None else ""] for c in m.components]))
    out += ["", "## Profiles", ""]
    out.append(_table(["profile", "components", "rows", "tokens", "row share", "token share"],
                      [[p, ", ".join(v["components"]), v["rows"], v["tokens"], _pct(v["row_share"]),
                        _pct(v["token_share"])] for p, v in sorted(m.profiles.items())]))
    if m.bounds:
        out += ["", "## Bounds", ""]
        out.append(_table(["bound", "limit", "realized", "ok"],
                          [[k, _pct(v["bound"]), _pct(v["realized"]), "yes" if v["ok"] else "NO"]
                           for k, v in sorted(m.bounds.items())]))
    out += ["", "## Rows removed", ""]
    per = Counter((r["component"], reason_kind(r["reason"])) for r in removed)
    if per:
        out.append(_table(["component", "reason", "rows"], [[c, r, n] for (c, r), n in sorted(per.items())]))
        out.append("")
        out.append("Each removed row is in `rejected.jsonl` beside this report, with its full reason.")
    else:
        out.append("None: no row was filtered, capped, duplicated or contaminated.")
    caps = [(c.name, cls, n) for c in m.components for cls, n in sorted(c.capped.items())]
    if caps:
        out += ["", "Class caps (rows removed per class):", "",
                _table(["component", "class", "rows removed"], [list(x) for x in caps])]
    if any(dataset_rejects.values()):
        out += ["", "Rejected when the datasets were normalized (see `results/data/<dataset>/rejected.jsonl`):", ""]
        out.append(_table(["dataset", "reason", "rows"],
                          [[d, reason, n] for d, reasons in sorted(dataset_rejects.items())
                           for reason, n in sorted(reasons.items())]))
    out += ["", "## Inputs", "", _table(["input", "sha256"], [[k, v] for k, v in sorted(inputs.items())])]
    # contamination last: the report ends with the overlap count per benchmark
    d = m.decontamination
    out += ["", "## Contamination", ""]
    if d.get("policy", "off") == "off" or not d.get("benchmarks"):
        out.append("Not checked (policy off, or no benchmarks to check against).")
    else:
        out.append(f"Every training row (all turns{', chosen and rejected' if m.kind == 'preference' else ''}) "
                   f"was checked against {d['eval_items']} eval items of {len(d['benchmarks'])} benchmarks: "
                   f"normalized exact match plus {d['ngram']}-gram overlap (items shorter than "
                   f"{2 * d['ngram']} tokens use n = half their length, at least {d['min_tokens']}). "
                   f"Policy: {d['policy']}.")
        if hits:
            out += ["", _table(["train row", "benchmark", "doc id", "match", "n", "overlap"],
                               [[h["row"], h["benchmark"], h["doc_id"], h["match"], h["ngram"], h["overlap"]]
                                for h in hits[:200]])]
            if len(hits) > 200:
                out.append(f"\n({len(hits) - 200} more hits in the manifest's `hits` list.)")
        out += ["", _table(["benchmark", "overlapping items"],
                           [[b, n] for b, n in sorted(d["overlap_per_benchmark"].items())])]
        out += ["", "**0 overlap**" if not hits else
                f"**{d['hits']} overlap{'s' if d['hits'] != 1 else ''}; {d['rows_removed']} training "
                f"row{'s' if d['rows_removed'] != 1 else ''} removed**"]
    return "\n".join(out) + "\n"
