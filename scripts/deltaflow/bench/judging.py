"""Judged evals: a model of the workflow judges other models' responses to a prompt set.

A judged benchmark is a generation benchmark (usually an ``open_ended`` prompt set) with a
``judge:`` in the config. Its responses come from each model's eval job like any benchmark's
(cached by content, resumable); the judge job then asks the judge model about them. The judge's
questions are themselves an eval of the judge model (``judge_eval_spec`` / ``judge_docs``) and
go through benchmark_eval's one path: cached by content (judge weights, the judge prompts, which
hold the responses, decoding, code and package versions), resumable by chunks after a kill.

Kinds:
- ``pairwise`` (AlpacaEval, Arena-Hard): each response against the baseline model's
  response to the same prompt, judged in both orders (the model's answer first, then second)
  against position bias. Verdicts A (first better), B (second better) or C (tie). An item's
  score is the mean over its orders of win 1 / tie 0.5 / loss 0; the win rate is the mean over
  items. Reported beside it: the left-better / right-better / tie rates over all judgments, a
  paired bootstrap CI, the length-controlled win rate (AlpacaEval-LC's logistic regression of
  the preference on a model term and tanh(standardized length difference), predicted with the
  length term at zero; without AlpacaEval's per-instruction difficulty, which needs its 805
  instructions' annotations) and the mean response length of each side. The baseline against
  itself is 0.5 on every item by construction (not judged).
- ``rubric`` (MT-Bench single-answer grading, a 1-10 style score): a 1-10 rating per
  response; the item's score is (rating - 1) / 9 so tables read it on 0-100 like every score,
  the metrics keep the mean rating on 1-10 with its bootstrap CI.

Modes: ``logprob`` reads the verdict from the judge's log-likelihoods of the verdict labels
(every judgment parses; fit for small judges; a rubric may take the most likely rating, or
``rating: expected``, G-Eval's probability-weighted mean over 1-10, which a small judge
anchored on one number still spreads), ``generate`` lets the judge write and parses
``[[A]]`` / ``[[7]]`` (MT-Bench's format) with a regex. A judgment that does not parse counts as
a tie (pairwise) or the scale's midpoint (rubric) so items stay paired; the count is in the
metrics and above ``max_unparsed_share`` the benchmark fails instead of reporting a number.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .spec import BenchmarkSpec

KINDS = ("pairwise", "rubric")
MODES = ("logprob", "generate")
LABELS = ["A", "B", "C"]  # first better, second better, tie (MT-Bench's pairwise labels)
RATINGS = [str(i) for i in range(1, 11)]

PAIRWISE_TEMPLATE = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI "
    "assistants to the user question displayed below. Choose the assistant that follows the user's "
    "instructions and answers the user's question better, considering helpfulness, relevance, accuracy "
    "and level of detail. Do not let the order or the length of the responses influence you. Output your "
    'final verdict strictly in this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is '
    'better, and "[[C]]" for a tie.\n\n'
    "[User Question]\n{{question}}\n\n"
    "[The Start of Assistant A's Answer]\n{{answer_a}}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{{answer_b}}\n[The End of Assistant B's Answer]\n"
)
RUBRIC_TEMPLATE = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI "
    "assistant to the user question displayed below. Consider helpfulness, relevance, accuracy, depth, "
    "creativity and level of detail. Rate the response on a scale of 1 to 10 strictly in this format: "
    '"[[rating]]", for example: "Rating: [[5]]".\n\n'
    "[Question]\n{{question}}\n\n"
    "[The Start of Assistant's Answer]\n{{answer}}\n[The End of Assistant's Answer]\n"
)
VERDICT_PREFIX = {"pairwise": "Verdict: [[", "rubric": "Rating: [["}
PARSE = {"pairwise": r"\[\[([ABC])\]\]", "rubric": r"\[\[(10|[1-9])(?:\.\d+)?\]\]"}

DEFAULTS = {
    "mode": "logprob",
    "baseline": "base",
    "rating": "argmax",
    "max_unparsed_share": 0.1,
    "max_gen_toks": 64,
    "chat_template": False,
    "bootstrap_resamples": 1000,
    "confidence": 0.95,
    "seed": 0,
}


def judge_settings(judge: dict | None) -> dict:
    """A judge's settings with defaults filled: a judged benchmark's (``benchmarks.<name>.judge``)
    or a training reward's (``recipes.<r>.rewards[].judge``, deltaflow.training.judge_reward)."""
    judge = {**DEFAULTS, **(judge or {})}
    judge.setdefault("template", PAIRWISE_TEMPLATE if judge.get("kind") == "pairwise" else RUBRIC_TEMPLATE)
    judge.setdefault("parse", PARSE.get(judge.get("kind"), ""))
    return judge


def settings(spec: BenchmarkSpec) -> dict:
    """The benchmark's judge settings with defaults filled (config ``benchmarks.<name>.judge``)."""
    return judge_settings(spec.judge)


def ref_of(judge: dict) -> dict:
    """Which model judges: ``{"model": <a model of the workflow>}``, ``{"path": <a local Hugging
    Face model folder>}`` (a larger judge than the trained models, e.g. a 7B instruct model
    copied to the cluster) or ``{"hub": <id>, "revision": <commit>}`` (pinned; from the local
    Hugging Face cache where the hub is unreachable)."""
    if judge.get("path"):
        return {"path": str(judge["path"])}
    if judge.get("hub"):
        return {"hub": judge["hub"], "revision": judge.get("revision")}
    return {"model": judge.get("model")}


def label_of(ref: dict) -> str:
    """A judge's name in params, records and logs (``ref``: ``ref_of``'s)."""
    if "path" in ref:
        return f"path:{ref['path']}"
    if "hub" in ref:
        return f"hub:{ref['hub']}@{ref['revision']}"
    return ref["model"]


def judge_ref(spec: BenchmarkSpec) -> dict:
    """The judge of a judged benchmark (``ref_of``)."""
    return ref_of(spec.judge or {})


def judge_label(spec: BenchmarkSpec) -> str:
    """A judged benchmark's judge's name in params, records and logs."""
    return label_of(judge_ref(spec))


def headline_metric(spec: BenchmarkSpec) -> str:
    """A judged benchmark's score: the win rate (pairwise) or the rubric score."""
    return "win_rate" if settings(spec)["kind"] == "pairwise" else "rubric_score"


def check_spec(name: str, spec: BenchmarkSpec, models: list[str]) -> list[str]:
    """Config errors in a benchmark's judge (before any job)."""
    key = f"config key 'benchmarks.{name}.judge"
    judge = spec.judge
    if not judge:
        if spec.output_type == "open_ended":
            return [
                (
                    f"config key 'benchmarks.{name}': '{spec.task or name}' is an open-ended prompt set "
                    "with nothing to match; give it a `judge:` (kind pairwise or rubric, and a model)"
                )
            ]
        return []
    if spec.output_type not in ("open_ended", "generate_until", "instruction"):
        return [
            (f"{key}': only generated responses can be judged; '{spec.task or name}' is {spec.output_type}")
        ]
    return check_judge(key, judge, models, baseline=True)


def check_judge(key: str, judge: dict, models: list[str] | None, *, baseline: bool = False) -> list[str]:
    """Config errors in a judge's settings, ``key`` naming it (``config key '<path>``): its kind,
    mode and rating, exactly one judge model (``models``: the workflow's, None to leave a model
    name unchecked), its prompt template and verdict regex. ``baseline``: a pairwise judged
    benchmark's baseline, a workflow model too."""
    s = judge_settings(judge)
    errors = []
    if s.get("kind") not in KINDS:
        errors.append(f"{key}.kind': {s.get('kind')!r}; use one of {', '.join(KINDS)}")
    if s["rating"] not in ("argmax", "expected"):
        errors.append(f"{key}.rating': {s['rating']!r}; use argmax or expected")
    if s["mode"] not in MODES:
        errors.append(f"{key}.mode': {s['mode']!r}; use one of {', '.join(MODES)}")
    given = [k for k in ("model", "path", "hub") if s.get(k)]
    if len(given) != 1:
        errors.append(
            f"{key}': name exactly one judge: model (a model of this workflow), path (a local "
            f"model folder) or hub + revision; got {', '.join(given) or 'none'}"
        )
    elif given[0] == "hub" and not s.get("revision"):
        errors.append(
            f"{key}.revision': a hub judge needs a pinned revision (a commit sha), so verdicts "
            "are reproducible"
        )
    elif given[0] == "path" and not (Path(s["path"]) / "config.json").exists():
        errors.append(f"{key}.path': '{s['path']}' is not a Hugging Face model folder (no config.json)")
    roles = (("model",) if given == ["model"] else ()) + (
        ("baseline",) if baseline and s.get("kind") == "pairwise" else ()
    )
    for role in roles if models is not None else ():
        if s.get(role) not in models:
            errors.append(
                f"{key}.{role}': {s.get(role)!r} is not a model of this workflow; known: {', '.join(models)}"
            )
    return errors + _check_prompt(key, s)


def _check_prompt(key: str, s: dict) -> list[str]:
    """The judge prompt's template parses (Jinja, lm-eval's environment) and the verdict regex
    has one group."""
    from jinja2 import TemplateSyntaxError
    from lm_eval.utils import env

    errors = []
    try:
        env.parse(s["template"])
    except TemplateSyntaxError as exc:
        errors.append(f"{key}.template': does not parse: {exc}")
    try:
        if re.compile(s["parse"]).groups != 1:
            errors.append(f"{key}.parse': {s['parse']!r} needs exactly one group (the verdict)")
    except re.error as exc:
        errors.append(f"{key}.parse': {s['parse']!r} is not a regex: {exc}")
    return errors


def judge_eval_spec(spec: BenchmarkSpec) -> BenchmarkSpec:
    """The judge's own eval: multiple choice over the verdict labels (logprob) or generation."""
    s = settings(spec)
    prefix = VERDICT_PREFIX[s["kind"]]
    out = {
        "name": f"{spec.name}.judge",
        "task": spec.name,
        "axis": spec.axis,
        "n": None,
        "guards": {"max_empty_share": 1.0, "max_truncated_share": 1.0},  # unparsed verdicts are the guard
        # the verdict prefix: in the prompt, or with a chat template at the start of the reply
        "lm_eval": {"gen_prefix": prefix} if s["chat_template"] else {},
    }
    if s["mode"] == "logprob":
        out.update(
            output_type="multiple_choice",
            metric="acc",
            decoding={"chat_template": s["chat_template"], "num_fewshot": 0},
        )
        out["lm_eval"]["target_delimiter"] = ""
    else:
        out.update(
            output_type="generate_until",
            metric="exact_match",
            decoding={
                "chat_template": s["chat_template"],
                "num_fewshot": 0,
                "max_gen_toks": s["max_gen_toks"],
                "until": ["\n\n\n"],
                "temperature": 0.0,
            },
        )
    return BenchmarkSpec.from_dict(out)


def _prompt(s: dict, **fields) -> str:
    from lm_eval.utils import apply_template

    text = apply_template(s["template"], fields)
    if s["mode"] == "logprob" and not s["chat_template"]:
        text = text.rstrip("\n") + "\n" + VERDICT_PREFIX[s["kind"]]
    return text


def _samples(value) -> list[str]:
    """An item's responses: a list (decoding.samples k), or one response as a string."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _sample_suffix(j: int, k: int) -> str:
    """A judged question's id part naming the sample (none with one sample per prompt)."""
    return "" if k == 1 else f"|s{j}"


def judge_docs(
    spec: BenchmarkSpec, docs: list[dict], responses: dict, baseline: dict | None = None
) -> list[dict]:
    """The judge's questions: per item and per sample one (rubric) or two (pairwise: the model's
    answer first, ``<id>|model-first``, then second, ``<id>|model-second``; against the
    baseline's first response). With k samples per prompt every sample is judged
    (``<id>|s<j>|...``)."""
    s = settings(spec)
    choices = LABELS if s["kind"] == "pairwise" else RATINGS
    out = []
    for d in docs:
        question, samples = d["query"], _samples(responses[d["doc_id"]])
        for j, mine in enumerate(samples):
            tag = f"{d['doc_id']}{_sample_suffix(j, len(samples))}"
            if s["kind"] == "pairwise":
                theirs = _samples(baseline[d["doc_id"]])[0]
                pairs = [("model-first", mine, theirs), ("model-second", theirs, mine)]
                prompts = [
                    (
                        f"{tag}|{order}",
                        _prompt(s, question=question, answer_a=a, answer_b=b, reference=d.get("answer", "")),
                    )
                    for order, a, b in pairs
                ]
            else:
                prompts = [
                    (
                        f"{tag}|rubric",
                        _prompt(s, question=question, answer=mine, reference=d.get("answer", "")),
                    )
                ]
            for doc_id, prompt in prompts:
                jd = {"doc_id": doc_id, "query": prompt, "text": "", "answer": ""}
                if s["mode"] == "logprob":
                    jd.update(choices=choices, gold=0)
                out.append(jd)
    return out


def parse_verdict(spec: BenchmarkSpec, raw: dict) -> tuple[str | None, str]:
    """(the verdict label or rating, the judge's raw output as text)."""
    s = settings(spec)
    if "loglikelihoods" in raw:
        choices = LABELS if s["kind"] == "pairwise" else RATINGS
        lls = raw["loglikelihoods"]
        text = json.dumps({c: round(v, 4) for c, v in zip(choices, lls)})
        if s["kind"] == "rubric" and s["rating"] == "expected":  # G-Eval: the probability-weighted rating
            p = np.exp(np.asarray(lls) - np.max(lls))
            return f"{float(np.dot(p / p.sum(), np.arange(1, 11))):.4f}", text
        return choices[int(np.argmax(lls))], text
    text = raw["responses"][0]
    found = re.findall(
        s["parse"], (VERDICT_PREFIX[s["kind"]] if s["chat_template"] else "") + text
    ) or re.findall(s["parse"], "[[" + text)  # a reply that continues the prompt's "[["
    return (found[-1] if found else None), text


def _pairwise_sample(spec, by_id, tag: str, hashes) -> tuple[float, list[dict]]:
    """One response's pairwise score (both orders: win 1, loss 0, tie or unparsed 0.5) and its
    judgments."""
    judgments, scores = [], []
    for order in ("model-first", "model-second"):
        raw = by_id[f"{tag}|{order}"]
        verdict, text = parse_verdict(spec, raw)
        mine, theirs = ("A", "B") if order == "model-first" else ("B", "A")
        outcome = {mine: "win", theirs: "loss", "C": "tie"}.get(verdict, "unparsed")
        scores.append({"win": 1.0, "loss": 0.0}.get(outcome, 0.5))
        judgments.append(
            {
                "order": order,
                "verdict": verdict,
                "outcome": outcome,
                "judge_output": text,
                "judge_prompt_hash": raw["prompt_hash"],
                **(hashes or {}),
            }
        )
    return float(np.mean(scores)), judgments


def _rubric_sample(spec, by_id, tag: str, hashes) -> tuple[float, list[dict], float]:
    """One response's rubric score ((rating - 1) / 9; unparsed: the scale's midpoint), its
    judgment and rating."""
    raw = by_id[f"{tag}|rubric"]
    verdict, text = parse_verdict(spec, raw)
    rating = float(verdict) if verdict is not None else 5.5
    judgment = {
        "verdict": verdict,
        "outcome": "rated" if verdict is not None else "unparsed",
        "judge_output": text,
        "judge_prompt_hash": raw["prompt_hash"],
        **(hashes or {}),
    }
    return (rating - 1) / 9, [judgment], rating


def judge_records(
    spec: BenchmarkSpec,
    docs: list[dict],
    responses: dict,
    raws: list[dict],
    baseline: dict | None = None,
    *,
    self_baseline: bool = False,
    hashes: dict | None = None,
) -> list[dict]:
    """Per-item records (a score in [0, 1] each, as every benchmark's) from the judge's raw
    outputs; for the baseline judged against itself, 0.5 by construction. With k samples per
    prompt the item's score is the mean of its samples' (mean@k), with their spread."""
    s = settings(spec)
    by_id = {r["doc_id"]: r for r in raws}
    records = []
    for d in docs:
        samples = _samples(responses[d["doc_id"]])
        k = len(samples)
        rec = {
            "doc_id": d["doc_id"],
            "prompt": d["query"],
            "response": samples[0],
            "response_chars": len(samples[0]) if k == 1 else float(np.mean([len(x) for x in samples])),
        }
        if k > 1:
            rec["responses"] = samples
        if s["kind"] == "pairwise":
            theirs = _samples(baseline[d["doc_id"]])[0]
            rec["baseline_response"] = theirs
            rec["baseline_chars"] = len(theirs)
            if self_baseline:
                rec.update(
                    score=0.5,
                    verdicts=[],
                    note="the baseline against itself: 0.5 by construction, not judged",
                )
                records.append(rec)
                continue
        scores, judgments, ratings = [], [], []
        for j in range(k):
            tag = f"{d['doc_id']}{_sample_suffix(j, k)}"
            if s["kind"] == "pairwise":
                score, made = _pairwise_sample(spec, by_id, tag, hashes)
            else:
                score, made, rating = _rubric_sample(spec, by_id, tag, hashes)
                ratings.append(rating)
            scores.append(score)
            judgments += [{**v, "sample": j} if k > 1 else v for v in made]
        if ratings:
            rec["rating"] = float(np.mean(ratings))
        rec.update(score=float(np.mean(scores)), verdicts=judgments)
        if k > 1:
            rec.update(sample_scores=scores, spread=float(np.std(scores)))
        records.append(rec)
    return records


def responses_of(path: Path) -> dict[str, list[str]]:
    """{doc_id: its responses (k with decoding.samples k)} from an eval job's responses file."""
    from ..io import read_jsonl

    return {r["doc_id"]: list(r["responses"]) for r in read_jsonl(path)}
