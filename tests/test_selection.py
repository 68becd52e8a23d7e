"""Gates and Pareto selection on small delta-table fixtures."""

import copy

import pandas as pd
import pytest

from deltaflow.errors import DeltaflowError
from deltaflow.selection import failed_reasons, gate_verdict, pareto_front, select, underpowered_notes


def table(models: dict) -> pd.DataFrame:
    """models: name -> {axis: (delta, ci_low, ci_high)}; adds the macro row as the mean."""
    rows = []
    for model, axes in models.items():
        for axis, (d, lo, hi) in axes.items():
            rows.append(
                {
                    "model": model,
                    "source": "evaluated",
                    "level": "axis",
                    "benchmark": axis,
                    "delta_pts": d,
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
        ds = [v[0] for v in axes.values()]
        rows.append(
            {
                "model": model,
                "source": "evaluated",
                "level": "macro",
                "benchmark": "macro_avg",
                "delta_pts": sum(ds) / len(ds),
                "ci_low": -1.0,
                "ci_high": 1.0,
            }
        )
    return pd.DataFrame(rows)


GATES = {
    "target": {"style": {"min_gain_pts": 1.0}},
    "guarded": {"math": {"tolerance_pts": 0.5}, "code": {"tolerance_pts": 0.5, "bound": "ci_low"}},
    "lambda": 2.0,
}


def test_gate_passes_and_fails_with_reasons():
    axes = {
        "style": {"delta_pts": 3.0, "ci_low": 1.0, "ci_high": 5.0},
        "math": {"delta_pts": -0.4, "ci_low": -2.0, "ci_high": 1.0},
        "code": {"delta_pts": 0.0, "ci_low": -0.3, "ci_high": 0.3},
    }
    v = gate_verdict(axes, GATES)
    assert v["passes"] and [c["axis"] for c in v["checks"]] == ["style", "code", "math"]
    # non-inferiority on code: a point delta of 0 is not enough when the CI reaches -0.8
    axes["code"]["ci_low"] = -0.8
    v = gate_verdict(axes, GATES)
    assert not v["passes"]
    assert failed_reasons(v) == ["guarded axis code: CI lower bound -0.80 pts beyond tolerance -0.50"]
    axes["style"]["delta_pts"] = 0.5
    assert "target axis style: Δ +0.50 pts < required gain +1.00" in failed_reasons(gate_verdict(axes, GATES))
    # superiority on the target: the CI lower bound must reach the gain
    strict_target = {"target": {"style": {"min_gain_pts": 0.0, "bound": "ci_low"}}}
    assert (
        gate_verdict({"style": {"delta_pts": 2.0, "ci_low": -0.1, "ci_high": 4}}, strict_target)["passes"]
        is False
    )


def test_pareto_selection_picks_best_score_among_passing_not_last():
    df = table(
        {
            "run@step100": {"style": (4.0, 2.0, 6.0), "math": (-2.0, -3, -1), "code": (0.0, -0.2, 0.2)},
            "run@step50": {"style": (3.0, 1.0, 5.0), "math": (-0.3, -1, 0.4), "code": (0.1, -0.1, 0.3)},
            "run@step20": {"style": (1.5, 0.1, 3.0), "math": (0.0, -1, 1), "code": (0.0, -0.4, 0.4)},
            "run@step10": {"style": (0.5, -1, 2.0), "math": (-0.6, -2, 1), "code": (0.0, -0.4, 0.4)},
        }
    )
    verdicts, sel = select(df, GATES, ["run@step10", "run@step20", "run@step50", "run@step100"])
    scores = {c["model"]: c["score"] for c in sel["candidates"]}
    # score = mean target gain - 2 * max(0, worst guarded regression)
    assert scores == {"run@step100": 0.0, "run@step50": 2.4, "run@step20": 1.5, "run@step10": -0.7}
    assert not verdicts["run@step100"]["passes"] and verdicts["run@step50"]["passes"]
    assert sel["chosen"] == "run@step50" and sel["chosen_passes_gates"]
    # frontier: step100 (most gain), step50, step20 (no regression); step10 is dominated
    assert sel["frontier"] == ["run@step100", "run@step50", "run@step20"]
    assert [c["on_frontier"] for c in sel["candidates"] if c["model"] == "run@step10"] == [False]


def test_when_nothing_passes_the_best_score_is_chosen_and_flagged():
    df = table(
        {
            "a": {"style": (0.2, 0, 1), "math": (-3.0, -4, -2), "code": (0, -1, 1)},
            "b": {"style": (0.1, 0, 1), "math": (-1.0, -2, 0), "code": (0, -1, 1)},
        }
    )
    _, sel = select(df, GATES, ["a", "b"])
    assert sel["chosen"] == "b" and sel["chosen_passes_gates"] is False
    assert sel["reason"].startswith("no model passes every gate")


def test_no_gates_selects_on_macro_delta():
    df = table({"a": {"x": (1.0, 0, 2)}, "b": {"x": (2.0, 1, 3)}})
    verdicts, sel = select(df, {}, ["a", "b"])
    assert sel["chosen"] == "b" and verdicts["b"] == {
        "passes": True,
        "decided": True,
        "underpowered": [],
        "checks": [],
    }


def test_pareto_front_ties_and_errors():
    assert pareto_front({"a": (1.0, 0.0), "b": (1.0, 0.0), "c": (0.5, 0.0)}) == ["a", "b"]
    with pytest.raises(DeltaflowError, match="no candidate models"):
        select(table({"a": {"x": (1, 0, 2)}}), {}, [])
    with pytest.raises(DeltaflowError, match="no axis rows for model 'zz'"):
        select(table({"a": {"x": (1, 0, 2)}}), {}, ["zz"])


def test_a_gate_its_data_cannot_decide_is_underpowered():
    """The demo's case: GSM8K n=25 guards math with a 2-point tolerance, but one item is 4
    points and the CI is [-12, +12]: the pass is noise, ~900 items would decide it."""
    axes = {
        "target": {"delta_pts": 38.5, "ci_low": 31.0, "ci_high": 46.0, "n": 200, "mde_pts": 9.5},
        "math": {"delta_pts": 0.0, "ci_low": -12.0, "ci_high": 12.0, "n": 25, "mde_pts": 17.0},
    }
    gates = {"target": {"target": {"min_gain_pts": 5}}, "guarded": {"math": {"tolerance_pts": 2}}}
    v = gate_verdict(axes, gates)
    math = next(c for c in v["checks"] if c["axis"] == "math")
    assert v["passes"] and not v["decided"] and v["underpowered"] == ["math"]
    assert math["underpowered"] and math["n_needed"] == 900
    assert (
        math["power_note"]
        == "CI half-width 12.00 pts > 2.00 pts: underpowered, ~900 items would decide it (now 25)"
    )
    # MDE 9.5 > the 5-point gain required, but the CI [31, 46] decides it however wide
    assert not next(c for c in v["checks"] if c["axis"] == "target")["underpowered"]
    small = gate_verdict(
        {**axes, "target": {**axes["target"], "delta_pts": 6.0, "ci_low": -1.0, "ci_high": 13.0}}, gates
    )
    target = next(c for c in small["checks"] if c["axis"] == "target")
    assert target["underpowered"] and target["n_needed"] == 722  # 200 x (9.5 / 5)^2
    assert underpowered_notes(small)[1].startswith("guarded axis math: CI half-width 12.00")
    blocked = gate_verdict(axes, {**gates, "underpowered": "block"})
    assert not blocked["passes"] and len(failed_reasons(blocked)) == 1
    assert failed_reasons(blocked)[0].endswith("gates.underpowered is block")
    wide = {**axes, "math": {**axes["math"], "ci_low": -1.0, "ci_high": 1.0}}
    assert gate_verdict(wide, {"guarded": {"math": {"tolerance_pts": 2}}})["decided"]


def test_selection_prefers_a_pass_the_data_decide():
    df = table(
        {
            "lucky": {"target": (9.0, 1.0, 17.0), "math": (0.0, -12.0, 12.0)},
            "solid": {"target": (6.0, 4.0, 8.0), "math": (0.0, -1.0, 1.0)},
        }
    )
    gates = {"target": {"target": {"min_gain_pts": 1}}, "guarded": {"math": {"tolerance_pts": 2}}}
    verdicts, sel = select(df, gates, ["lucky", "solid"])
    assert verdicts["lucky"]["passes"] and verdicts["lucky"]["underpowered"] == ["math"]
    assert sel["chosen"] == "solid" and "with data that decide it" in sel["reason"]
    assert not sel["chosen_underpowered"]


def test_a_target_with_adjusted_needs_its_adjusted_p_below_alpha():
    """gates.target.<axis>.adjusted: the gain must also be significant after the table's
    multiple-comparison adjustment (the axis row's p_adjusted < 1 - tables.confidence)."""
    gates = {"target": {"style": {"min_gain_pts": 1.0, "adjusted": True}}}
    axes = {"style": {"delta_pts": 3.0, "ci_low": 1.0, "ci_high": 5.0, "p_adjusted": 0.03}}
    v = gate_verdict(axes, gates, alpha=0.05)
    assert v["passes"] and v["checks"][0]["significant"] and v["checks"][0]["p_adjusted"] == 0.03
    axes["style"]["p_adjusted"] = 0.2  # the same gain, not significant across the table
    v = gate_verdict(axes, gates, alpha=0.05)
    assert not v["passes"]
    assert failed_reasons(v) == [
        "target axis style: Δ +3.00 pts >= required gain +1.00; adjusted p 0.2 >= 0.05"
    ]
    assert gate_verdict(axes, {"target": {"style": {"min_gain_pts": 1.0}}})[
        "passes"
    ]  # not asked: not checked
    df = table({"run": {"style": (3.0, 1.0, 5.0)}}).assign(p_adjusted=[0.01, 0.01])
    verdicts, _ = select(df, gates, ["run"], alpha=0.05)
    assert verdicts["run"]["passes"]
    verdicts, _ = select(df, gates, ["run"], alpha=0.001)
    assert not verdicts["run"]["passes"]


def test_adjusted_gates_need_an_adjusted_table(tiny_cfg):
    from conftest import config_errors

    from deltaflow.config import validate_config

    tiny_cfg["gates"]["target"]["target"]["adjusted"] = True
    validate_config(copy.deepcopy(tiny_cfg))  # holm by default
    tiny_cfg["tables"]["adjust"] = "none"
    assert "config key 'gates.target.target.adjusted': the delta table adjusts no p-values" in config_errors(
        tiny_cfg
    )
