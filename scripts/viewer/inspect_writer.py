"""Inspect AI eval logs of deltaflow's per-item records, written with inspect_ai's own log
classes (run with the Python of the environment inspect_ai is installed in; it imports nothing
of deltaflow's, whose pins conflict with inspect_ai's):

    <inspect python> inspect_writer.py <spec.json>

spec: {"logs": [{"model", "benchmark", "metric", "score", "records", "out", "created",
"judged"}]}. Each log holds one model x benchmark: every item's prompt as the input, the
model's response (or chosen option) as its output, the target, the item's score under the
benchmark's metric (with a judge's verdict as its explanation), and the rest of the record as
metadata. `inspect view` / `inspect view bundle` open them."""

import json
import sys

from inspect_ai.log import (
    EvalConfig,
    EvalDataset,
    EvalLog,
    EvalMetric,
    EvalResults,
    EvalSample,
    EvalScore,
    EvalSpec,
    EvalStats,
    write_eval_log,
)
from inspect_ai.model import ChatMessageAssistant, ChatMessageUser, ModelOutput
from inspect_ai.scorer import Score

SHOWN = {"prompt", "response", "responses", "target", "choices", "prediction", "doc_id", "score", "verdict"}


def answer(record: dict) -> str:
    """What the model answered: its response, or the option it ranked first."""
    if record.get("response") is not None:
        return str(record["response"])
    if record.get("choices") is not None and record.get("prediction") is not None:
        return str(record["choices"][record["prediction"]])
    return ""


def target(record: dict) -> str:
    """The target as text (a multiple-choice target is the index of its option)."""
    t = record.get("target")
    if isinstance(t, int) and record.get("choices") and 0 <= t < len(record["choices"]):
        return str(record["choices"][t])
    return "" if t is None else str(t)


def sample(record: dict, metric: str, model: str) -> EvalSample:
    text = answer(record)
    explanation = record.get("verdict") or record.get("judge_output")
    return EvalSample(
        id=str(record["doc_id"]),
        epoch=1,
        input=str(record.get("prompt", "")),
        target=target(record),
        choices=[str(c) for c in record["choices"]] if record.get("choices") else None,
        messages=[ChatMessageUser(content=str(record.get("prompt", ""))), ChatMessageAssistant(content=text)],
        output=ModelOutput.from_content(model=model, content=text),
        scores={metric: Score(value=float(record.get("score") or 0.0), answer=text, explanation=explanation)},
        metadata={k: v for k, v in record.items() if k not in SHOWN},
    )


def eval_log(job: dict) -> EvalLog:
    with open(job["records"]) as f:
        records = [json.loads(line) for line in f if line.strip()]
    samples = [sample(r, job["metric"], job["model"]) for r in records]
    n = len(samples)
    return EvalLog(
        version=2,
        status="success",
        eval=EvalSpec(
            created=job["created"],
            task=job["benchmark"],
            dataset=EvalDataset(name=job["benchmark"], samples=n, sample_ids=[s.id for s in samples]),
            model=job["model"],
            config=EvalConfig(),
            metadata={"source": "deltaflow", "judged": job.get("judged", False)},
        ),
        results=EvalResults(
            total_samples=n,
            completed_samples=n,
            scores=[
                EvalScore(
                    name=job["metric"],
                    scorer=job["metric"],
                    metrics={"mean": EvalMetric(name="mean", value=job["score"])},
                )
            ],
        ),
        stats=EvalStats(started_at=job["created"], completed_at=job["created"]),
        samples=samples,
    )


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    for job in spec["logs"]:
        write_eval_log(eval_log(job), job["out"])
        print(f"wrote {job['out']} ({job['model']} x {job['benchmark']})", flush=True)


if __name__ == "__main__":
    main()
