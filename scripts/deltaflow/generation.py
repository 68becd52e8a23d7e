"""Model-written training data: ``generations.<name>`` (rules/generate.smk).

A model of the workflow (the base, a run or checkpoint, a merge, a merged or GGUF export) or a
teacher from outside it (a local folder, a pinned hub id) answers a prompt set (a dataset's
split: each row's first user turn), and the answers become a dataset under
``results/data/<name>/`` that mixtures use like any other. The generating goes through the eval
path (bench.run.raw_outputs): the same backends (HF, vLLM, llama.cpp), cached by content,
resumable by chunks after a kill, with the silent-generation guard.

Modes:
- ``answer``: every sample becomes an SFT row (self-replay: the base answers general prompts;
  teacher answers: a larger model does);
- ``best_of_n``: k samples, each checked by a verifier (a registry benchmark's scorer against
  the prompt row's reference answer); ``keep: best`` keeps the first that passes, ``keep:
  passing`` every distinct one that passes (rejection sampling);
- ``pairs``: preference rows (the schema DPO reads): the model's answer chosen over
  ``rejected_model``'s, or, with one model, a passing sample chosen over a failing one.

A prompt that yields no row (no passing sample, all samples alike, an empty answer) is written to
``rejected.jsonl`` with the reason; nothing is dropped silently. Every row's ``origin`` names the
model, the hash of its weights and the generation, and carries the origin tags of
deltaflow.origins (who wrote the targets and the prompts, transitively).
"""

from __future__ import annotations

import json
import re

from .bench.spec import BenchmarkSpec
from .errors import DataError

MODES = ("answer", "best_of_n", "pairs")


def eval_spec(name: str, gen: dict) -> BenchmarkSpec:
    """The generation as an eval spec over its prompts (open-ended: nothing matched by lm-eval)."""
    s = gen["sampling"]
    decoding = {
        "chat_template": s["chat_template"],
        "num_fewshot": 0,
        "max_gen_toks": s["max_tokens"],
        "until": list(s["until"]),
        "temperature": s["temperature"],
        "top_p": s["top_p"],
        "samples": s["samples"],
    }
    if s["temperature"] > 0:
        decoding["seed"] = s["seed"]
    return BenchmarkSpec.from_dict(
        {
            "name": f"gen_{name}",
            "task": name,
            "axis": "generation",
            "n": None,
            "output_type": "open_ended",
            "metric": "judged",
            "decoding": decoding,
            "guards": dict(gen.get("guards") or {}),
            "guard_subject": [f"generation '{name}'", f"(generations.{name}.guards)"],
        }
    )


def prompt_text(row: dict) -> str | None:
    """A row's prompt: its first user turn (None when it has none)."""
    return next(
        (
            m["content"]
            for m in row.get("messages") or []
            if m.get("role") == "user" and isinstance(m.get("content"), str) and m["content"].strip()
        ),
        None,
    )


def reference(row: dict):
    """The answer a verifier checks against: a task row's label, else its first assistant turn."""
    if row.get("label") is not None:
        return row["label"]
    return next((m["content"] for m in row.get("messages") or [] if m.get("role") == "assistant"), None)


# the output types whose scorer can check an answer against its prompt row: a reference answer
# (generate_until), the row's code tests (code) or its instruction checkers (instruction)
VERIFIER_TYPES = ("generate_until", "code", "instruction")
_FENCE = re.compile(r"```[A-Za-z0-9_+-]*\n(.*?)```", re.DOTALL)


# the row field each kind of per-row check reads (deltaflow.datasets.VERIFY_FIELDS)
CHECK_FIELDS = {"code": "tests", "instruction": "instructions"}


def rows_without_checks(config: dict, dataset: str) -> str | None:
    """What a dataset's rows are when they can never carry tests or instructions (a task pack's
    or a generation's), else None: a file's rows are only known once its job has read them."""
    ds = config["datasets"].get(dataset)
    if ds is not None and ds["type"] == "generated":
        return "a task pack's rows"
    if dataset in (config.get("generations") or {}):
        return "model-written rows"
    return None


def verification_doc(row: dict, prompt: str) -> dict:
    """What the code and instruction scorers read besides the answer, from a prompt row's
    ``tests`` / ``entry_point`` / ``code_prompt`` and ``instructions`` (deltaflow.datasets), in
    the fields the registry's code and IFBench docs have."""
    doc = {k: row[k] for k in ("tests", "entry_point", "code_prompt") if row.get(k) is not None}
    if row.get("instructions"):
        doc.update(doc_id=str(row.get("id")), query=prompt, checks=json.dumps(row["instructions"]))
    return doc


def missing_checks(vspec: BenchmarkSpec | None, doc: dict) -> str | None:
    """The row field(s) a code or instruction verifier needs and ``doc`` lacks (None: all there,
    or a verifier that checks against the reference answer only)."""
    kind = vspec and vspec.output_type
    if kind == "code":
        need = ["tests"] + (["code_prompt", "entry_point"] if vspec.code["style"] == "humaneval" else [])
        missing = [k for k in need if k not in doc]
        return ", ".join(missing) or None
    if kind == "instruction":
        return None if "checks" in doc else "instructions"
    return None


def program_text(answer: str) -> str:
    """A chat model's program: the first fenced block when the answer has one (```python ...
    ```), else the answer as it is (the registry's code prompts ask for bare code)."""
    fenced = _FENCE.search(answer)
    return fenced.group(1) if fenced else answer


def prompt_docs(
    name: str, gen: dict, rows: list[dict], *, verified: bool, vspec: BenchmarkSpec | None = None
) -> list[dict]:
    """The prompt set as eval docs: the split's rows (a seeded subset of ``n``), each its first
    user turn. A row without a user turn or, with a verifier, without a reference answer is a
    data error naming the row (the prompt set does not fit the generation)."""
    import random

    p = gen["prompts"]
    pool = [r for r in rows if r.get("split") == p["split"]]
    where = f"generations.{name}.prompts"
    if not pool:
        raise DataError(f"{where}: dataset '{p['dataset']}' has no rows in split '{p['split']}'")
    docs = []
    for r in pool:
        text = prompt_text(r)
        if text is None:
            raise DataError(
                f"{where}: row {r.get('id')} of dataset '{p['dataset']}' has no user turn to answer; "
                "a prompt set needs user turns (use a chat/instruction dataset)"
            )
        answer = reference(r)
        if verified and answer is None:
            raise DataError(
                f"{where}: row {r.get('id')} of dataset '{p['dataset']}' has no reference answer "
                "(a label or an assistant turn) for the verifier to check against"
            )
        checks = verification_doc(r, text)
        missing = missing_checks(vspec, checks)
        if missing:
            raise DataError(
                f"{where}: row {r.get('id')} of dataset '{p['dataset']}' has no {missing} for the "
                f"verifier ({vspec.name}, {vspec.output_type}) to check its answers with: the "
                f"prompts do not fit the verifier. Give every row {missing} (config/README.md)"
            )
        docs.append(
            {
                **checks,
                "doc_id": str(r["id"]),
                "query": text,
                "answer": "" if answer is None else str(answer),
                "answer_from": "label" if r.get("label") is not None else "assistant",
            }
        )
    ids = [d["doc_id"] for d in docs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{where}: dataset '{p['dataset']}' repeats row id {dup}; ids must be unique")
    if p["n"] is not None and p["n"] < len(docs):
        docs = sorted(random.Random(p["seed"]).sample(docs, p["n"]), key=lambda d: ids.index(d["doc_id"]))
    return docs


def verifier_spec(name: str, gen: dict, dirs: tuple = ()) -> BenchmarkSpec | None:
    """The verifier as a scoring spec: the named benchmark's registry entry, or its own match."""
    return scoring_spec(gen.get("verifier"), name, dirs)


def scoring_spec(v: dict | None, name: str, dirs: tuple = ()) -> BenchmarkSpec | None:
    """A verifier ({benchmark: <name>} or {match, extract, ignore}) as a scoring spec (also
    GRPO's verifier rewards, deltaflow.training.rewards)."""
    from .bench import registry

    if not v:
        return None
    if "benchmark" in v:
        return BenchmarkSpec.from_dict({**registry.load(v["benchmark"], dirs), "name": v["benchmark"]})
    return BenchmarkSpec.from_dict(
        {
            "name": f"{name}.verifier",
            "output_type": "generate_until",
            "metric": "exact_match",
            **{k: v[k] for k in ("match", "extract", "ignore") if v.get(k) is not None},
        }
    )


def verdicts(vspec: BenchmarkSpec | None, doc: dict, responses: list[str]) -> list[float] | None:
    """Per-sample correctness under the verifier benchmark's own scorer (deltaflow.bench.scoring)."""
    checked = checked_samples(vspec, doc, responses)
    return None if checked is None else checked[0]


def checked_samples(
    vspec: BenchmarkSpec | None, doc: dict, responses: list[str]
) -> tuple[list[float], int] | None:
    """Per-sample correctness and how many samples gamed a code verifier's tests (ended the run
    before the tests finished, or compared an always-equal value; deltaflow.sandbox)."""
    if vspec is None:
        return None
    from .bench.scoring.metrics import extract, score_generations

    if vspec.output_type == "code":
        responses = [program_text(r) for r in responses]
    if doc.get("answer_from") == "assistant" and vspec.extract:
        # a reference written as an answer ("It is 4.") goes through the same filter as the samples
        doc = {**doc, "answer": extract(vspec, [doc["answer"]])[0]}
        if doc["answer"] == "[invalid]":  # lm-eval's fallback: no reference to check against, nothing
            return [0.0] * len(responses), 0  # passes (else an unextractable sample would "match" it)
    scored = score_generations(vspec, doc, responses)
    return [float(c) for c in scored["correct"]], int(scored.get("hacked", 0))


def _row(name: str, doc: dict, origin: dict, rid: str, split: str, **fields) -> dict:
    return {"id": rid, "source": name, "split": split, "origin": origin, "prompt_id": doc["doc_id"], **fields}


def _answer_rows(name, doc, origin, split, user, responses, reject) -> list[dict]:
    """mode answer: one row per non-empty sample."""
    rows = []
    for j, resp in enumerate(responses):
        rid = f"{name}-{doc['doc_id']}" + (f"-s{j}" if len(responses) > 1 else "")
        if not resp:
            reject(doc, f"sample {j}: empty response", responses)
            continue
        rows.append(
            _row(
                name,
                doc,
                origin,
                rid,
                split,
                messages=user + [{"role": "assistant", "content": resp}],
            )
        )
    return rows


def _best_of_n_rows(name, gen, doc, origin, split, user, responses, correct, reject) -> list[dict]:
    """mode best_of_n: the best passing sample, or every distinct passing one."""
    good = [resp for resp, c in zip(responses, correct) if c > 0 and resp]
    if not good:
        reject(doc, f"no sample passed the verifier (0 of {len(responses)})", responses, correct)
        return []
    keep = good[:1] if gen["keep"] == "best" else list(dict.fromkeys(good))
    rows = []
    for j, resp in enumerate(keep):
        rid = f"{name}-{doc['doc_id']}" + (f"-p{j}" if gen["keep"] == "passing" else "")
        rows.append(
            _row(
                name,
                doc,
                origin,
                rid,
                split,
                samples=len(responses),
                passed=len(good),
                messages=user + [{"role": "assistant", "content": resp}],
            )
        )
    return rows


def _pair_row(name, doc, origin, split, user, responses, correct, vspec, theirs_resp, reject):
    """mode pairs: (the preference row or None, hacked samples among the rejected model's).
    ``theirs_resp``: the rejected model's response (pairs from two models), else None."""
    hacked = 0
    if theirs_resp is not None:
        chosen, other = responses[0], theirs_resp.strip()
        if correct is not None:  # with a verifier the chosen answer must pass and the other fail
            other_checked = checked_samples(vspec, doc, [other])
            other_ok, hacked = other_checked[0][0], hacked + other_checked[1]
            if not (correct[0] > 0 and other_ok == 0):
                reject(
                    doc,
                    f"verifier: chosen {'passes' if correct[0] else 'fails'}, rejected "
                    f"{'passes' if other_ok else 'fails'} (a pair needs pass over fail)",
                    [chosen, other],
                    [correct[0], other_ok],
                )
                return None, hacked
    else:
        good = [r for r, c in zip(responses, correct) if c > 0 and r]
        bad = [r for r, c in zip(responses, correct) if c == 0 and r]
        if not good or not bad:
            reject(
                doc,
                f"{len(good)} of {len(responses)} samples pass: a pair needs one that passes and "
                "one that fails",
                responses,
                correct,
            )
            return None, hacked
        chosen, other = good[0], bad[0]
    if not chosen or not other or chosen == other:
        reject(doc, "chosen and rejected are empty or identical", [chosen, other])
        return None, hacked
    row = _row(
        name,
        doc,
        origin,
        f"{name}-{doc['doc_id']}",
        split,
        messages=user,
        chosen=chosen,
        rejected=other,
    )
    return row, hacked


def build_rows(
    name: str,
    gen: dict,
    docs: list[dict],
    raws: list[dict],
    *,
    origin: dict,
    vspec: BenchmarkSpec | None = None,
    rejected_raws: list[dict] | None = None,
) -> tuple[list[dict], list[dict], dict]:
    """Rows, rejections (one per prompt that gave no row, with the reason) and counts from the raw
    outputs of the generating model (and of ``rejected_model`` for pairs from two models)."""
    mode, split = gen["mode"], gen["split"]
    theirs = {r["doc_id"]: r["responses"][0] for r in rejected_raws or []}
    rows, rejected = [], []
    passed = total = hacked = 0

    def reject(doc, reason, responses, correct=None):
        rejected.append(
            {
                "source": name,
                "prompt_id": doc["doc_id"],
                "reason": reason,
                "responses": responses,
                **({"correct": correct} if correct is not None else {}),
            }
        )

    for doc, raw in zip(docs, raws):
        responses = [r.strip() for r in raw["responses"]]
        user = [{"role": "user", "content": doc["query"]}]
        # a code verifier gets the samples as written (a humaneval-style continuation starts
        # with its indentation)
        code = vspec is not None and vspec.output_type == "code"
        checked = checked_samples(vspec, doc, [r.rstrip() for r in raw["responses"]] if code else responses)
        correct = None if checked is None else checked[0]
        if checked is not None:
            total += len(correct)
            passed += int(sum(correct))
            hacked += checked[1]
        if mode == "answer":
            rows += _answer_rows(name, doc, origin, split, user, responses, reject)
        elif mode == "best_of_n":
            rows += _best_of_n_rows(name, gen, doc, origin, split, user, responses, correct, reject)
        else:  # pairs
            theirs_resp = theirs[doc["doc_id"]] if rejected_raws is not None else None
            row, more_hacked = _pair_row(
                name, doc, origin, split, user, responses, correct, vspec, theirs_resp, reject
            )
            hacked += more_hacked
            if row is not None:
                rows.append(row)
    counts = {"prompts": len(docs), "rows": len(rows), "rejected": len(rejected)}
    if vspec is not None:
        counts.update(
            samples_checked=total,
            samples_passed=passed,
            pass_rate=round(passed / total, 4) if total else None,
        )
        if vspec.output_type == "code":  # samples that gamed the tests (deltaflow.sandbox)
            counts["samples_hacked"] = hacked
    return rows, rejected, counts


def check_config(config: dict, models: list[str], *, dirs: tuple, dataset_splits, row_format) -> list[str]:
    """Config errors in ``generations:`` (before any job). ``dirs``: the config's benchmark_dirs;
    ``dataset_splits``, ``row_format``: deltaflow.datasets' (passed in: this module is a job's
    code and must not import the whole config stage)."""
    gens = config.get("generations") or {}
    errors = []
    for name, gen in sorted(gens.items()):
        key = f"config key 'generations.{name}"
        if name in config["datasets"]:
            errors.append(
                f"{key}': '{name}' is also a dataset; a generation writes results/data/{name}/, "
                "so give it another name"
            )
        errors += _check_models(key, gen, models, set(config["models"]))
        errors += _check_prompts(key, gen["prompts"], config, gens, dataset_splits, row_format)
        errors += _check_sampling(key, gen)
        if (gen.get("verifier") or {}).get("benchmark"):
            errors += _check_verifier(key, gen["verifier"]["benchmark"], gen["prompts"], config, dirs)
    return errors


def _check_models(key: str, gen: dict, models: list[str], outside) -> list[str]:
    """The teacher (and the rejected model): a model of this workflow, or a pinned outside one."""
    errors = []
    ref = gen["model"]
    roles = [("model", ref)] + (
        [("rejected_model", gen["rejected_model"])] if gen.get("rejected_model") else []
    )
    for role, r in roles:
        if isinstance(r, str) and r not in models:
            errors.append(
                f"{key}.{role}': {r!r} is not a model of this workflow; known: {', '.join(models)} "
                "(or a teacher: {path: <local model folder>} / {hub: <id>, revision: <commit>})"
            )
        elif isinstance(r, dict) and "hub" in r and not r.get("revision"):
            errors.append(f"{key}.{role}.revision': a hub model needs a pinned revision (a commit sha)")
    if not isinstance(ref, str) and not (ref.get("path") or ref.get("hub")):
        errors.append(f"{key}.model': a teacher from outside the workflow needs path or hub + revision")
    # a model we trained (or a base) takes its origin and licence from the DAG; a teacher from
    # outside (path, hub, a `models:` entry) from these keys (deltaflow.origins)
    for k in ("origin", "license"):
        if isinstance(ref, str) and ref in models and ref not in outside and gen.get(k) is not None:
            errors.append(
                f"{key}.{k}': '{ref}' is a model of this workflow, whose {k} comes from the DAG "
                "(base_model and what it was trained on); remove the key"
            )
    return errors


def _check_prompts(key: str, p: dict, config: dict, gens: dict, dataset_splits, row_format) -> list[str]:
    """The prompt set: a known dataset (or an earlier generation) with user turns and that split."""
    datasets = config["datasets"]
    if p["dataset"] not in datasets and p["dataset"] not in gens:
        return [
            (
                f"{key}.prompts.dataset': unknown dataset '{p['dataset']}'; known: "
                f"{', '.join(sorted([*datasets, *gens]))}"
            )
        ]
    errors = []
    if p["dataset"] in datasets:
        splits = dataset_splits(datasets[p["dataset"]])
        if p["split"] not in splits:
            errors.append(
                f"{key}.prompts.split': dataset '{p['dataset']}' has splits {splits}, not '{p['split']}'"
            )
        if row_format(datasets[p["dataset"]]) == "text":
            errors.append(
                f"{key}.prompts.dataset': '{p['dataset']}' is raw text with no user turns; "
                "a prompt set needs chat or instruction rows"
            )
    return errors


def _check_sampling(key: str, gen: dict) -> list[str]:
    """The mode against the samples per prompt, the temperature and the verifier."""
    errors = []
    k = gen["sampling"]["samples"]
    mode = gen["mode"]
    verifier = gen.get("verifier")
    if mode == "best_of_n" and not verifier:
        errors.append(
            f"{key}.verifier': mode best_of_n keeps the samples a verifier passes; name one "
            "(verifier: {benchmark: <a generation benchmark whose scorer fits the prompts>})"
        )
    if mode == "best_of_n" and k < 2:
        errors.append(f"{key}.sampling.samples': best_of_n needs k >= 2 samples per prompt, got {k}")
    if mode == "pairs" and not gen.get("rejected_model") and (not verifier or k < 2):
        errors.append(
            f"{key}': pairs from one model need a verifier and sampling.samples >= 2 (a passing "
            "sample over a failing one), or name rejected_model (its answer is the rejected one)"
        )
    if mode != "pairs" and gen.get("rejected_model"):
        errors.append(f"{key}.rejected_model': only mode pairs uses a second model")
    if k > 1 and gen["sampling"]["temperature"] == 0:
        errors.append(
            f"{key}.sampling.temperature': {k} samples at temperature 0 are {k} copies of one "
            "greedy answer; set temperature > 0"
        )
    return errors


def _check_verifier(key: str, b: str, p: dict, config: dict, dirs: tuple) -> list[str]:
    """The verifier benchmark: in the registry, of a checkable output type, and fitting the prompts."""
    from .bench import registry

    if b not in registry.available(dirs):
        return [
            (
                f"{key}.verifier.benchmark': unknown benchmark '{b}'; the registry has: "
                f"{', '.join(registry.available(dirs))}"
            )
        ]
    vs = registry.load(b, dirs)
    if vs.get("output_type") not in VERIFIER_TYPES:
        return [
            (
                f"{key}.verifier.benchmark': '{b}' is {vs.get('output_type')}; a verifier checks "
                "an answer against its prompt row with a benchmark's scorer: generate_until "
                "(final-number, exact, numeric or contains match against the row's answer), "
                "code (the row's tests in the sandbox) or instruction (the row's checkers)"
            )
        ]
    if vs["output_type"] in CHECK_FIELDS and (what := rows_without_checks(config, p["dataset"])):
        return [
            (
                f"{key}.verifier.benchmark': '{b}' checks each prompt row's "
                f"{CHECK_FIELDS[vs['output_type']]}; '{p['dataset']}' is {what} and has none: the "
                "prompts do not fit the verifier"
            )
        ]
    return []
