import pytest

from deltaflow.errors import DeltaflowError
from deltaflow.tables import EvalResult, delta_table, to_markdown


def result(model, bench, scores, axis="knowledge", dhash="d1", ids=None):
    ids = ids or [f"q{i}" for i in range(len(scores))]
    recs = [{"doc_id": i, "score": s} for i, s in zip(ids, scores)]
    return EvalResult(model, bench, {"score": sum(scores) / len(scores), "n": len(scores), "axis": axis,
                                     "metric": "acc", "decoding_hash": dhash, "decoding": {"t": dhash}}, recs)


def test_delta_rows_and_macro():
    df = delta_table([
        result("base", "a", [1, 0, 0, 0]), result("base", "b", [1, 1, 0, 0, 0]),
        result("run", "a", [1, 1, 1, 0]), result("run", "b", [1, 0, 0, 0, 0]),
    ])
    row = df[(df.model == "run") & (df.benchmark == "a")].iloc[0]
    assert (row.base_score, row.score, row.delta_pts, row.n) == (25.0, 75.0, 50.0, 4)
    row = df[(df.model == "run") & (df.benchmark == "b")].iloc[0]
    assert row.delta_pts == -20.0
    macro = df[(df.model == "run") & (df.benchmark == "macro_avg")].iloc[0]
    assert macro.delta_pts == 15.0 and macro.n == 9
    assert list(df.model) == ["base"] * 3 + ["run"] * 3
    md = to_markdown(df)
    assert "| run     | a           |" in md and "+50.00" in md


def test_refuses_different_items():
    with pytest.raises(DeltaflowError, match=r"different items.*only in base: \['q9'\]"):
        delta_table([result("base", "a", [1, 0], ids=["q0", "q9"]), result("run", "a", [1, 0], ids=["q0", "q1"])])


def test_refuses_different_decoding():
    with pytest.raises(DeltaflowError, match="decoded differently"):
        delta_table([result("base", "a", [1, 0]), result("run", "a", [1, 0], dhash="d2")])


def test_missing_result_is_named():
    with pytest.raises(DeltaflowError, match=r"missing eval result for \(run, b\)"):
        delta_table([result("base", "a", [1]), result("base", "b", [1]), result("run", "a", [1])])
