"""Report figures (matplotlib, headless): forest plot of deltas, loss curves, Pareto front."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes or CI
import matplotlib.pyplot as plt
import pandas as pd

from .io import atomic_path
from .tables import EVALUATED

_LEVEL_ORDER = {"benchmark": 0, "axis": 1, "macro": 2}


def _save(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _row_label(r) -> str:
    return (
        r.benchmark
        if r.level == "benchmark"
        else (f"axis: {r.benchmark}" if r.level == "axis" else "macro avg")
    )


def forest_plot(df: pd.DataFrame, path, *, baseline: str = "base", confidence: float = 0.95) -> None:
    """Δ vs base with its CI, one row per benchmark / axis / macro, one colour per model."""
    # rows without a delta (a benchmark outside a model's suites, "not run") have nothing to draw
    rows = df[(df.source == EVALUATED) & (df.model != baseline) & df.delta_pts.notna()].copy()
    rows["_o"] = rows.level.map(_LEVEL_ORDER)
    labels = (
        rows.sort_values(["_o", "axis", "benchmark"]).apply(_row_label, axis=1).drop_duplicates().tolist()
    )
    models = list(dict.fromkeys(rows.model))
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.45 * len(labels) * max(1, len(models) ** 0.5)))
    step = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        sub = rows[rows.model == model]
        for _, r in sub.iterrows():
            y = labels.index(_row_label(r)) + (i - (len(models) - 1) / 2) * step
            ax.errorbar(
                r.delta_pts,
                y,
                xerr=[[r.delta_pts - r.ci_low], [r.ci_high - r.delta_pts]],
                fmt="s" if r.level != "benchmark" else "o",
                color=f"C{i % 10}",
                capsize=3,
                label=model if _ == sub.index[0] else None,
            )
    ax.axvline(0, color="#444", lw=1)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(f"Δ vs {baseline} (points), {round(100 * confidence)}% paired-bootstrap CI")
    ax.grid(axis="x", alpha=0.3)
    if models:
        ax.legend(loc="best", fontsize=8)
    _save(fig, path)


def loss_curves(metrics: dict[str, dict], path) -> list[str]:
    """Training loss per logged step, one line per run; the validation loss (recipes with
    val_rows) dashed in the same colour, and each saved checkpoint arm marked on it. GRPO runs
    (a ``reward_curve`` in their metrics) get a second panel: the reward per step and, dotted,
    the share of groups with mixed rewards (the ones that teach anything). Returns the panels'
    titles."""
    rl = {run: m for run, m in metrics.items() if m.get("reward_curve")}
    fig, axes = plt.subplots(1, 2 if rl else 1, figsize=(12 if rl else 7.5, 4), squeeze=False)
    ax = axes[0][0]
    if rl:
        rax = axes[0][1]
        for i, (run, m) in enumerate(sorted(metrics.items())):
            if run not in rl:
                continue
            curve = [(c["step"], c["reward"]) for c in m["reward_curve"] if c.get("reward") is not None]
            if curve:
                rax.plot(*zip(*curve), marker=".", color=f"C{i % 10}", label=f"{run} reward")
            mixed = [
                (c["step"], c["groups"]["mixed_share"])
                for c in m.get("loss_curve", [])
                if (c.get("groups") or {}).get("mixed_share") is not None
            ]
            if mixed:
                rax.plot(*zip(*mixed), ls=":", color=f"C{i % 10}", label=f"{run} mixed groups")
        rax.set_xlabel("step")
        rax.set_ylabel("reward / share")
        rax.set_title("GRPO: mean reward; dotted: share of groups with mixed rewards", fontsize=9)
        rax.grid(alpha=0.3)
        rax.legend(fontsize=8)
    for i, (run, m) in enumerate(sorted(metrics.items())):
        color = f"C{i % 10}"
        points = [(p["step"], p["loss"]) for p in m.get("loss_curve", []) if p.get("loss") is not None]
        if points:
            steps, losses = zip(*points)
            ax.plot(steps, losses, marker=".", color=color, label=f"{run} train")
        val = [(p["step"], p["eval_loss"]) for p in m.get("eval_curve", [])]
        if val:
            steps, losses = zip(*val)
            ax.plot(steps, losses, ls="--", color=color, label=f"{run} validation")
        arms = [(c["step"], c.get("val_loss") or c.get("loss")) for c in m.get("checkpoints", [])]
        arms = [a for a in arms if a[1] is not None]
        if arms:
            ax.scatter(*zip(*arms), marker="D", color=color, zorder=3, s=25)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("diamonds: saved checkpoint arms", fontsize=9)
    ax.grid(alpha=0.3)
    if metrics:
        ax.legend(fontsize=8)
    titles = [a.get_title() for a in axes[0]]
    _save(fig, path)
    return titles


def pareto_plot(selection: dict, path) -> None:
    """Target gain vs worst guarded regression; the frontier joined, the chosen model starred."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    cands = selection["candidates"]
    for c in cands:
        x, y = c["worst_guarded_regression_pts"], c["target_gain_pts"]
        ax.scatter(
            x,
            y,
            color="C0" if c["passes_gates"] else "C3",
            zorder=3,
            marker="*" if c["model"] == selection["chosen"] else "o",
            s=220 if c["model"] == selection["chosen"] else 40,
        )
        ax.annotate(c["model"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    front = sorted((c for c in cands if c["on_frontier"]), key=lambda c: c["worst_guarded_regression_pts"])
    if len(front) > 1:
        ax.plot(
            [c["worst_guarded_regression_pts"] for c in front],
            [c["target_gain_pts"] for c in front],
            color="#888",
            ls="--",
            zorder=2,
            label="Pareto frontier",
        )
        ax.legend(fontsize=8)
    ax.scatter(0, 0, color="#999", marker="D", zorder=3)
    ax.annotate("base", (0, 0), textcoords="offset points", xytext=(6, 4), fontsize=8, color="#666")
    ax.set_xlabel("worst guarded-axis regression (points, lower is better)")
    ax.set_ylabel("target gain (points)")
    ax.set_title(
        f"chosen: {selection['chosen']} (λ = {selection['lambda']:g}); red = misses a gate", fontsize=9
    )
    ax.grid(alpha=0.3)
    _save(fig, path)
