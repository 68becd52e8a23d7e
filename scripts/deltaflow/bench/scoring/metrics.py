"""Score saved model outputs: the part of an eval that needs no model.

The eval stage stores raw outputs (choice log-likelihoods, or the k generated responses per
item); everything here turns them into per-item scores and benchmark metrics. So a parser fix
re-scores saved responses without loading a model (``deltaflow rescore``, or the evaluate job,
which finds its outputs cached), and greedy and sampled runs share one code path.

Answer extraction and exact match call lm-eval's own filter and metric (RegexFilter,
exact_match_hf_evaluate), so a greedy score equals what lm-eval computes; the eval stage checks
that on every fresh run. Code benchmarks run each response against the item's tests in the
sandbox (deltaflow.sandbox); instruction-following responses go through IFBench's checkers
(deltaflow.bench.scoring.ifeval).

Sampling metrics for k samples with c correct (Chen et al. 2021, the HumanEval paper):
- mean@k: c / k, the average sample correctness;
- pass@j: 1 - C(k-c, j) / C(k, j), the unbiased estimate that at least one of j samples is
  correct (pass@k with k samples is "any correct");
- maj@k: the most common extracted answer (ties: the earliest) is correct.
"""

from __future__ import annotations

import re
from collections import Counter
from math import comb

import numpy as np

from ...errors import DeltaflowError
from ..spec import BenchmarkSpec


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (needs k <= n)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority(answers: list[str]) -> str:
    """The most common answer; ties go to the one seen first."""
    counts = Counter(answers)
    best = max(counts.values())
    return next(a for a in answers if counts[a] == best)


def samples_of(spec: BenchmarkSpec) -> int:
    return int(spec.decoding.get("samples", 1))


MATCH_METRICS = {"exact": "exact_match", "numeric": "numeric_match", "contains": "contains_match"}


def match_kind(spec: BenchmarkSpec) -> str:
    """How a generation benchmark compares an extracted answer with its target: ``exact``
    (lm-eval's exact_match after ``ignore``), ``numeric`` (both read as numbers, equal within
    ``numeric_tolerance``) or ``contains`` (the target appears in the answer, case-insensitive)."""
    return spec.match


def primary_metric(spec: BenchmarkSpec) -> str:
    """The benchmark's headline metric: the config's ``benchmarks.<name>.metric`` (``headline``,
    any metric its records carry, e.g. pass@8), else its ``metric``; for k > 1 a bare
    exact_match means mean@k (the average sample correctness), reported beside pass@k (e.g.
    Mean@8 and Pass@8)."""
    if spec.headline:
        return spec.headline
    metric = spec.metric
    if samples_of(spec) > 1 and metric in (*MATCH_METRICS.values(), "pass", "prompt_level_strict_acc"):
        return f"mean@{samples_of(spec)}"
    return metric


def extract(spec: BenchmarkSpec, responses: list[str]) -> list[str]:
    """lm-eval's filter pipeline for this benchmark (regex + take_first, or whitespace strip)
    applied to each response."""
    from lm_eval.filters.extraction import RegexFilter, WhitespaceFilter

    if spec.extract:
        f = RegexFilter(regex_pattern=spec.extract["regex"], group_select=spec.extract.get("group_select", 0))
    else:
        f = WhitespaceFilter()
    return list(f.apply([responses], [{}])[0])


def exact_match(spec: BenchmarkSpec, predictions: list[str], target: str) -> list[float]:
    from lm_eval.api.metrics import exact_match_hf_evaluate

    return [
        float(
            exact_match_hf_evaluate(
                predictions=[p],
                references=[target],
                regexes_to_ignore=spec.ignore or None,
                ignore_case=True,
                ignore_punctuation=False,
            )["exact_match"]
        )
        for p in predictions
    ]


def _strip_ignored(spec: BenchmarkSpec, text: str) -> str:
    for pattern in spec.ignore or []:
        text = re.sub(pattern, "", text)
    return text.strip()


def as_number(text: str) -> float | None:
    """A number from an answer string (after ``ignore``): "1,234", "$5", "-3.50", "7." read as
    numbers; anything else is None."""
    try:
        return float(text.replace(",", "").rstrip("."))
    except ValueError:
        return None


def matches(spec: BenchmarkSpec, predictions: list[str], target: str) -> list[float]:
    """Per-prediction correctness under the benchmark's match kind (see ``match_kind``)."""
    kind = match_kind(spec)
    if kind == "exact":
        return exact_match(spec, predictions, target)
    if kind == "numeric":
        gold = as_number(_strip_ignored(spec, target))
        if gold is None:
            raise DeltaflowError(
                f"benchmark '{spec.name}': target {target!r} is not a number, "
                "but the benchmark's match is numeric"
            )
        tol = float(spec.numeric_tolerance)
        out = []
        for p in predictions:
            value = as_number(_strip_ignored(spec, p))
            out.append(float(value is not None and abs(value - gold) <= tol + 1e-9 * max(1.0, abs(gold))))
        return out
    if kind == "contains":
        gold = _strip_ignored(spec, target).lower()
        return [float(bool(gold) and gold in _strip_ignored(spec, p).lower()) for p in predictions]
    raise DeltaflowError(f"benchmark '{spec.name}': unknown match {kind!r}; use exact, numeric or contains")


def code_parts(spec: BenchmarkSpec, doc: dict, completion: str) -> tuple[str, str]:
    """The program (the model's code) and the tests that pass when it is right, run apart by the
    sandbox (deltaflow.sandbox.run_tests): the program cannot swallow or reorder the tests."""
    style = spec.code["style"]
    if style == "humaneval":  # the completion continues the function signature + docstring
        return f"{doc['code_prompt']}{completion}\n", f"{doc['tests']}\n\ncheck({doc['entry_point']})\n"
    if style == "mbpp":  # the completion is a whole program
        return f"{completion}\n", f"{doc['tests']}\n"
    raise DeltaflowError(f"benchmark '{spec.name}': unknown code style {style!r}; use humaneval or mbpp")


def score_mcq(doc: dict, lls: list[float]) -> dict:
    """lm-eval's acc and acc_norm (log-likelihood per character of the choice) for one item."""
    lls = np.asarray(lls, dtype=float)
    lengths = np.array([float(len(c)) for c in doc["choices"]])
    pred, pred_norm = int(np.argmax(lls)), int(np.argmax(lls / lengths))
    return {
        "prediction": pred,
        "acc": float(pred == doc["gold"]),
        "acc_norm": float(pred_norm == doc["gold"]),
    }


def score_generations(spec: BenchmarkSpec, doc: dict, responses: list[str]) -> dict:
    """Per-sample correctness and the k-sample metrics for one item."""
    k = len(responses)
    out: dict = {"responses": responses}
    if spec.output_type == "code":
        from ...sandbox import HACKS, Limits, run_tests

        lim = Limits(**spec.code.get("limits", {}))
        results = [run_tests(*code_parts(spec, doc, r), lim) for r in responses]
        correct = [float(r.passed) for r in results]
        out["execution"] = [
            {"status": r.status, "seconds": round(r.seconds, 3), **({"reason": r.reason} if r.reason else {})}
            for r in results
        ]
        # samples that gamed the tests (ended the run early, or compared an always-equal value)
        out["hacked"] = sum(r.status in HACKS for r in results)
    elif spec.output_type == "instruction":
        from .ifeval import score_item

        result = score_item(doc, responses)
        correct = result.pop("correct")
        out.update(result)
    else:
        extracted = extract(spec, responses)
        correct = matches(spec, extracted, str(doc["answer"]))
        out["extracted"] = extracted
        maj = majority(extracted)
        out[f"maj@{k}"] = matches(spec, [maj], str(doc["answer"]))[0]
    c = int(sum(correct))
    out["correct"] = correct
    out[f"mean@{k}"] = c / k
    for j in sorted({1, k}):
        out[f"pass@{j}"] = pass_at_k(k, c, j)
    if spec.output_type in ("generate_until", "code"):
        out[MATCH_METRICS[match_kind(spec)] if spec.output_type != "code" else "pass"] = correct[0]
    return out


def score_output(spec: BenchmarkSpec, doc: dict, raw: dict) -> dict:
    """One item's record from its raw output (see raw_outputs.raw_output)."""
    rec = {k: raw[k] for k in ("doc_id", "prompt", "prompt_hash", "decoding_hash")}
    rec["target"] = doc["gold"] if "gold" in doc else doc.get("answer")
    if spec.output_type == "multiple_choice":
        rec.update({"choices": doc["choices"], "loglikelihoods": raw["loglikelihoods"]})
        rec.update(score_mcq(doc, raw["loglikelihoods"]))
    elif spec.loader == "lm_eval":  # lm-eval's own task: lm-eval's filters and metrics
        rec.update(responses=raw["responses"], response=raw["responses"][0])
    else:
        rec.update(score_generations(spec, doc, raw["responses"]))
        rec["response"] = raw["responses"][0]
    if spec.loader == "lm_eval":
        rec.update(raw["lm_eval"])
    metric = primary_metric(spec)
    if metric not in rec:
        raise DeltaflowError(
            f"benchmark '{spec.name}': metric '{spec.metric}' is not computed "
            f"for output_type {spec.output_type}; available: "
            f"{', '.join(k for k in rec if k[:4] in ('acc', 'exac', 'mean', 'pass', 'maj@', 'prom', 'inst'))}"
        )
    rec["score"] = float(rec[metric])
    return rec


def aggregate(spec: BenchmarkSpec, records: list[dict]) -> dict:
    """Benchmark-level metrics: the mean of every per-item metric, the primary one as score."""
    from .ifeval import METRICS, micro_averages

    keys = [
        k
        for k in records[0]
        if k in ("acc", "acc_norm", *MATCH_METRICS.values(), "pass", *METRICS)
        or k.split("@")[0] in ("mean", "pass", "maj")
        or k in spec.metric_keys
    ]
    values = {k: sum(float(r[k]) for r in records) / len(records) for k in keys}
    if spec.output_type == "instruction":
        values.update(micro_averages(records))  # IFEval's instruction-level numbers
    out = {
        "score": sum(r["score"] for r in records) / len(records),
        "metric": primary_metric(spec),
        "all_metrics": values,
        "samples": samples_of(spec),
    }
    if spec.output_type == "code":
        out["code_verdicts"] = code_verdicts(records)
    return out


def code_verdicts(records: list[dict]) -> dict:
    """How a code benchmark's samples ended (sandbox statuses: passed, failed, timeout, early_exit,
    suspect) and ``hacked``: the samples that ended the run before their tests finished or
    compared a value that equals anything (deltaflow.sandbox)."""
    counts = Counter(e["status"] for r in records for e in r.get("execution", []))
    return {**dict(sorted(counts.items())), "hacked": sum(int(r.get("hacked", 0)) for r in records)}


def score_all(spec: BenchmarkSpec, docs: list[dict], raws: list[dict]) -> tuple[list[dict], dict]:
    by_id = {d["doc_id"]: d for d in docs}
    missing = [r["doc_id"] for r in raws if r["doc_id"] not in by_id]
    if missing or len(raws) != len(docs):
        raise DeltaflowError(
            f"benchmark '{spec.name}': {len(raws)} saved outputs for {len(docs)} docs "
            f"(unknown ids: {missing[:5]}); the outputs belong to another item set — "
            "rerun the eval"
        )
    records = [score_output(spec, by_id[r["doc_id"]], r) for r in raws]
    return records, aggregate(spec, records)
