"""Release gates and Pareto selection over the models in the delta table.

The rule: the target axes must go up, every guarded axis must stay within a
tolerance, and the model to ship is chosen by
``score = target_gain - lambda * max(0, worst_guarded_regression)`` — best, not last.

- target_gain: the mean of the target axes' deltas (points); with no target axes, the
  macro-average delta.
- worst_guarded_regression: the largest drop (points, positive = worse) over the guarded
  axes; 0 with none.
All numbers come from the axis rows of the delta table (mean of the axis' benchmark deltas,
with the paired-bootstrap CI).
"""

from __future__ import annotations

import pandas as pd

from .errors import DeltaflowError
from .stats import items_needed
from .suites import NOT_RUN
from .tables import EVALUATED, gate_key


def axis_rows(df: pd.DataFrame, model: str) -> dict[str, dict]:
    rows = df[(df.model == model) & (df.source == EVALUATED) & (df.level.isin(["axis", "macro"]))]
    if "note" in rows:  # an axis the model ran none of (its suites) has no numbers
        rows = rows[~rows.note.fillna("").astype(str).str.startswith(NOT_RUN)]
    if rows.empty:
        raise DeltaflowError(f"no axis rows for model '{model}' in the delta table")
    return {
        r.benchmark if r.level == "axis" else "macro_avg": {
            "delta_pts": float(r.delta_pts),
            "ci_low": float(r.ci_low),
            "ci_high": float(r.ci_high),
            **({"n": int(r.n)} if "n" in rows else {}),
            **({"mde_pts": float(r.mde_pts)} if "mde_pts" in rows and pd.notna(r.mde_pts) else {}),
            **({"note": r.note} if "note" in rows and isinstance(r.note, str) and r.note else {}),
            **(
                {"p_adjusted": float(r.p_adjusted)} if "p_adjusted" in rows and pd.notna(r.p_adjusted) else {}
            ),
        }
        for r in rows.itertuples()
    }


def not_run_checks(axes: dict[str, dict], gates: dict) -> list[dict]:
    """The gates on axes the model did not run on every benchmark of (its suites): not passed,
    and the model is not chosen (a gate it never ran is no evidence either way)."""
    out = []
    for kind in ("target", "guarded"):
        for axis in sorted(gates.get(kind, {})):
            note = axes[axis].get("note", "") if axis in axes else "not run on any benchmark of the axis"
            if axis not in axes or note.startswith("partial"):
                out.append(
                    {
                        "axis": axis,
                        "kind": kind,
                        "passed": False,
                        "not_run": True,
                        "underpowered": False,
                        "reason": f"{kind} axis {axis}: not run ({note})",
                    }
                )
    return out


def power_check(a: dict, kind: str, threshold: float) -> dict:
    """Whether the axis's data can decide its gate: a guarded gate's tolerance smaller than the
    CI half-width, or a target gate's required gain (> 0) smaller than the minimum detectable
    effect, with the CI straddling the threshold, is undecided at this n (pass or fail is
    noise): underpowered, with the items it would need. A CI wholly on one side of the
    threshold decides the gate however wide it is."""
    half = (a["ci_high"] - a["ci_low"]) / 2
    if kind == "guarded":
        have, want, what = half, -threshold, "CI half-width"
    else:
        have, want, what = a.get("mde_pts", half), threshold, "MDE" if "mde_pts" in a else "CI half-width"
    if want <= 0:  # a 0-point target or tolerance: any nonzero noise exceeds it; not assessed
        return {"underpowered": False, "power_note": f"{what} {have:.2f} pts (threshold 0: not assessed)"}
    under = have > want and a["ci_low"] < threshold < a["ci_high"]
    n = a.get("n")
    need = items_needed(n, have, want) if under and n else None
    note = f"{what} {have:.2f} pts {'>' if under else '<='} {want:.2f} pts" + (
        f": underpowered, ~{need} items would decide it (now {n})" if under and need else ""
    )
    return {"underpowered": under, "n_needed": need, "power_note": note}


def _adjusted_check(a: dict, alpha: float) -> dict:
    """A target's ``adjusted: true``: the axis's p adjusted across the table (tables.adjust)."""
    if "p_adjusted" not in a:
        raise DeltaflowError(
            "a target gate has adjusted: true, but the delta table has no adjusted p (tables.adjust)"
        )
    p, sig = a["p_adjusted"], a["p_adjusted"] < alpha
    return {"p_adjusted": p, "alpha": alpha, "significant": sig,
            "why": f"; adjusted p {p:.3g} {'<' if sig else '>='} {alpha:.3g}"}  # fmt: skip


def gate_verdict(axes: dict[str, dict], gates: dict, alpha: float = 0.05) -> dict:
    """Each configured check with its numbers, whether it passed, and why (in words). A target
    with ``adjusted: true`` also needs the axis row's adjusted p below ``alpha``."""
    checks = not_run_checks(axes, gates)  # the other gates are still checked and shown
    gone = {c["axis"] for c in checks}
    for axis, rule in sorted((a, r) for a, r in gates.get("target", {}).items() if a not in gone):
        a, bound, need = axes[gate_key(axis, rule)], rule.get("bound", "point"), rule.get("min_gain_pts", 0.0)
        value = a["delta_pts"] if bound == "point" else a["ci_low"]
        ok = value >= need
        what = "Δ" if bound == "point" else "CI lower bound"
        significance = _adjusted_check(a, alpha) if rule.get("adjusted") else {}
        checks.append(
            {
                "axis": axis,
                "kind": "target",
                **({"metric": rule["metric"]} if rule.get("metric") else {}),
                "bound": bound,
                "value_pts": value,
                "threshold_pts": need,
                "passed": ok and significance.get("significant", True),
                **power_check(a, "target", need),
                **significance,
                "reason": f"target axis {gate_key(axis, rule)}: {what} {value:+.2f} pts "
                f"{'>=' if ok else '<'} required gain {need:+.2f}" + significance.get("why", ""),
            }
        )
    for axis, rule in sorted((a, r) for a, r in gates.get("guarded", {}).items() if a not in gone):
        a, bound, tol = axes[gate_key(axis, rule)], rule.get("bound", "point"), rule.get("tolerance_pts", 0.5)
        value = a["delta_pts"] if bound == "point" else a["ci_low"]
        ok = value >= -tol
        what = "Δ" if bound == "point" else "CI lower bound"
        checks.append(
            {
                "axis": axis,
                "kind": "guarded",
                **({"metric": rule["metric"]} if rule.get("metric") else {}),
                "bound": bound,
                "value_pts": value,
                "threshold_pts": -tol,
                "passed": ok,
                **power_check(a, "guarded", -tol),
                "reason": f"guarded axis {gate_key(axis, rule)}: {what} {value:+.2f} pts "
                f"{'within' if ok else 'beyond'} tolerance -{tol:.2f}",
            }
        )
    underpowered = [c["axis"] for c in checks if c["underpowered"]]
    block = gates.get("underpowered", "warn") == "block"
    return {
        "passes": all(c["passed"] for c in checks) and not (block and underpowered),
        "decided": not underpowered,
        "underpowered": underpowered,
        **({"not_run": sorted(gone)} if gone else {}),
        "checks": checks,
    }


def selection_score(axes: dict[str, dict], gates: dict, lam: float) -> dict:
    """The score over the gated axes the model ran (one with a gate not run is never chosen)."""
    targets = [k for k in (gate_key(a, r) for a, r in sorted(gates.get("target", {}).items())) if k in axes]
    guarded = [k for k in (gate_key(a, r) for a, r in sorted(gates.get("guarded", {}).items())) if k in axes]
    gain = (
        sum(axes[a]["delta_pts"] for a in targets) / len(targets)
        if targets
        else axes["macro_avg"]["delta_pts"]
    )
    regression = max([0.0] + [-axes[a]["delta_pts"] for a in guarded])
    return {
        "target_gain_pts": round(gain, 4),
        "worst_guarded_regression_pts": round(regression, 4),
        "score": round(gain - lam * regression, 4),
    }


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names whose (gain, regression) no other point beats: gain >= and regression <=, one strictly."""
    front = []
    for name, (g, r) in points.items():
        dominated = any(
            g2 >= g and r2 <= r and (g2 > g or r2 < r) for other, (g2, r2) in points.items() if other != name
        )
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: (-points[n][0], points[n][1], n))


def select(
    df: pd.DataFrame,
    gates: dict,
    candidates: list[str],
    excluded: dict[str, str] | None = None,
    alpha: float = 0.05,
) -> tuple[dict, dict]:
    """(verdicts per model, selection) for the candidate models (every model but the base).

    ``excluded`` maps models that may never be chosen (a GGUF that failed its parity check) to
    the reason; they keep their verdicts and scores but are left out of the choice.
    """
    excluded = excluded or {}
    if not [m for m in candidates if m not in excluded]:
        raise DeltaflowError("no candidate models to select from (configure at least one run)")
    lam = gates.get("lambda", 1.0)
    verdicts, rows = {}, []
    for model in candidates:
        axes = axis_rows(df, model)
        verdicts[model] = gate_verdict(axes, gates, alpha)
        if verdicts[model].get("not_run"):  # its suites left a gated axis out: never the choice
            excluded = {**excluded, model: f"gated axes not run: {', '.join(verdicts[model]['not_run'])}"}
        rows.append(
            {
                "model": model,
                **selection_score(axes, gates, lam),
                "passes_gates": verdicts[model]["passes"],
                "decided": verdicts[model]["decided"],
                "excluded": excluded.get(model, ""),
            }
        )
    front = pareto_front(
        {r["model"]: (r["target_gain_pts"], r["worst_guarded_regression_pts"]) for r in rows}
    )
    for r in rows:
        r["on_frontier"] = r["model"] in front
    eligible = [r for r in rows if not r["excluded"]]
    if not eligible:
        raise DeltaflowError(
            "no candidate model can be chosen: "
            + "; ".join(f"{m}: {why}" for m, why in sorted(excluded.items()))
            + " (a model must run every benchmark of the gated axes: check the benchmarks' suites)"
        )
    passing = [r for r in eligible if r["passes_gates"]]
    # an underpowered pass is no evidence: models whose every gate is decided by their data come first
    decided = [r for r in passing if r["decided"]]
    pool = decided or passing or eligible
    best = min(pool, key=lambda r: (-r["score"], -r["target_gain_pts"], r["model"]))
    if decided:
        reason = f"highest score among the {len(decided)} of {len(rows)} models that pass every gate with data that decide it"
    elif passing:
        reason = (
            f"highest score among the {len(passing)} of {len(rows)} models that pass every gate; "
            "every pass is underpowered (the gates' tolerances are below what the items can resolve)"
        )
    else:
        reason = f"no model passes every gate; highest score of all {len(eligible)} eligible models"
    if excluded:
        reason += f" ({len(excluded)} excluded: {', '.join(sorted(excluded))})"
    selection = {
        "lambda": lam,
        "target_axes": sorted(gates.get("target", {})),
        "guarded_axes": sorted(gates.get("guarded", {})),
        "formula": "score = target_gain - lambda * max(0, worst_guarded_regression)",
        "excluded": excluded,
        "chosen": best["model"],
        "chosen_passes_gates": best["passes_gates"],
        "chosen_underpowered": verdicts[best["model"]]["underpowered"],
        "reason": reason,
        "frontier": front,
        "candidates": sorted(rows, key=lambda r: (-r["score"], r["model"])),
    }
    return verdicts, selection


def failed_reasons(verdict: dict) -> list[str]:
    failed = [c["reason"] for c in verdict["checks"] if not c["passed"]]
    if not verdict["passes"] and not failed:  # gates.underpowered: block
        failed = [
            f"{c['reason']}: gates.underpowered is block" for c in verdict["checks"] if c["underpowered"]
        ]
    return failed


def underpowered_notes(verdict: dict) -> list[str]:
    """The checks whose data cannot decide them, in words (release check, model card)."""
    return [
        f"{c['kind']} axis {c['axis']}: {c['power_note']}" for c in verdict["checks"] if c["underpowered"]
    ]
