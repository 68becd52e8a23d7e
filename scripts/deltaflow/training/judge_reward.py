"""Judge rewards (``recipes.<r>.rewards[]: {judge: {...}}``): a judge model scores each sampled
completion inside the training process, with the judged evals' own prompts, verdict parsing and
model loading (deltaflow.bench.judging, bench.raw_outputs.load_ref): one home for judging.

- rubric: the judge rates the completion 1-10 (the rating, or with ``rating: expected`` the
  probability-weighted rating); the reward is (rating - 1) / 9, in [0, 1].
- pairwise: the judge compares the completion with the prompt row's reference answer (its label,
  else the mixture row's own assistant turn: the GRPO dataset's ``answer``), in both orders as
  the judged evals do; each order scores win 1 / tie 0.5 / loss 0 and the reward is their mean.

``select``, a regex, picks the judged part of a completion (its first group, or the whole match;
``.`` matches newlines), e.g. ``</think>(.*)`` judges only what follows a thinking block. A
completion it does not match scores 0 without a judgment and is counted (``select_missed``).
A verdict that does not parse (generate mode) scores 0 and is counted (``parse_failures``),
where the judged evals count it as a tie: a reward must not pay for an unreadable verdict.

Judgments are cached by content (the judge's identity, the judge eval's spec and code, package
versions, the judge prompt: template, question, selected completion and reference) in a JSONL
file under the run's judge cache folder, appended after every judge call: a killed run that
resumes finds the judgments it already made (``cache_hits``) instead of judging again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path

from ..bench import judging
from ..errors import DeltaflowError

log = logging.getLogger(__package__)

COUNTS = ("completions", "select_missed", "judgments", "cache_hits", "judge_calls", "parse_failures")


def check_judge_reward(where: str, spec: dict) -> list[str]:
    """Config errors of one judge reward (``where``: ``config key 'recipes.<r>.rewards[i]``):
    the judge's kind, mode, model reference, template and verdict regex (judging.check_judge;
    a workflow model's name is checked with the runs, training.checks), and the select regex."""
    judge = spec["judge"]
    errors = judging.check_judge(f"{where}.judge", judge, None)
    if judge.get("select") is not None:
        try:
            re.compile(judge["select"], re.DOTALL)
        except re.error as exc:
            errors.append(
                f"{where}.judge.select': {judge['select']!r} is not a regex: {exc}; give a Python "
                "regex whose first group (or whole match) is the judged part, e.g. '</think>(.*)'"
            )
    return errors


class JudgmentCache:
    """Raw judge outputs by content key, in an append-only JSONL file. A line cut short by a kill
    does not parse and is skipped (its judgment is made again); nothing else is ever rewritten."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries: dict[str, dict] = {}
        text = self.path.read_text() if self.path.exists() else ""
        self.cut = bool(text) and not text.endswith("\n")  # the next append starts a new line
        if text:
            skipped = 0
            for line in text.splitlines():
                try:
                    row = json.loads(line)
                    self.entries[row["key"]] = row["raw"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    skipped += 1
            log.info(
                "judge cache %s: %d judgments (%d unreadable lines skipped)",
                self.path,
                len(self.entries),
                skipped,
            )

    def add(self, items: dict[str, dict]) -> None:
        """Append judgments and flush them to the file before the reward is returned."""
        self.entries.update(items)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps({"key": k, "raw": v}, sort_keys=True) + "\n" for k, v in items.items())
        text, self.cut = ("\n" if self.cut else "") + text, False
        with open(self.path, "a") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


@contextlib.contextmanager
def _rng_kept():
    """lm-eval seeds Python's, numpy's and torch's generators on every call: the policy's sampling
    must not restart from the same seed at every step, so their states are put back."""
    import random

    import numpy as np
    import torch

    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


@contextlib.contextmanager
def _quiet():
    """lm-eval's per-call INFO lines and datasets' progress bars, every training step, would bury
    the training log: warnings still show."""
    import datasets

    lm_eval_log = logging.getLogger("lm_eval")
    level, bars = lm_eval_log.level, datasets.is_progress_bar_enabled()
    lm_eval_log.setLevel(logging.WARNING)
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        lm_eval_log.setLevel(level)
        if bars:
            datasets.enable_progress_bars()


def _cache_context(identity: dict, spec, load: dict) -> str:
    """What decides a judgment besides its prompt: the judge's identity, the judge eval's spec
    (decoding, verdict prefix), how it is loaded, the eval code and the package versions."""
    from ..bench.raw_outputs import generation_spec
    from ..codedeps import PACKAGE_DIR, code_closure, module_path
    from ..io import sha256_path, sha256_text
    from ..provenance import output_versions

    code = {
        Path(f).resolve().relative_to(PACKAGE_DIR).as_posix(): sha256_path(f)
        for f in code_closure(module_path("bench.raw_outputs"))
    }
    parts = {
        "judge": identity,
        "spec": generation_spec(judging.judge_eval_spec(spec)),
        "load": load,
        "code": code,
        "versions": output_versions(),
    }
    return sha256_text(json.dumps(parts, sort_keys=True, default=str))


def judge_outputs(lm, spec, jdocs: list[dict], work_dir: Path) -> list[dict]:
    """The judge's raw outputs on its questions (judging.judge_docs) in one lm-eval call on the
    judge ``lm``, through the judged evals' own path (judging.judge_eval_spec: the same prompts,
    chat template, verdict prefix and decoding; bench.raw_outputs' lm-eval call), uncached here:
    the caller keys each judgment (the judge job caches and resumes by chunks instead)."""
    from ..bench.raw_outputs import _lm_eval_samples, decoding_hash, raw_output
    from ..io import write_jsonl

    jspec = judging.judge_eval_spec(spec)
    path = Path(work_dir) / "judge-docs.jsonl"
    write_jsonl(path, jdocs)
    dhash = decoding_hash(jspec)
    return [raw_output(s, jspec, dhash) for s in _lm_eval_samples(lm, jspec, path)]


def question_of(prompt) -> str:
    """The question a judge sees: a conversational prompt's last user turn, or the prompt text."""
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return users[-1] if users else ""
    return str(prompt)


class JudgeReward:
    """One judge reward: ``score(texts, questions, references)`` -> a reward in [0, 1] per
    completion text, counting what it did (``COUNTS``) over the run (``counts``: this attempt's)
    and since the last ``take`` (a logging step's).

    ``judge``: the reward's ``judge`` settings; ``ref``/``identity``: its model (judging.ref_of,
    with a workflow model's files) and what decides its outputs (raw_outputs.ref_identity);
    ``load``: device, batch_size, threads and base_dir for raw_outputs.load_ref."""

    def __init__(self, name: str, judge: dict, ref: dict, identity: dict, *, cache_dir: Path, load: dict):
        from ..bench.spec import BenchmarkSpec
        from ..provenance import device_class

        self.name, self.ref, self.identity, self.load = name, ref, identity, load
        self.select = re.compile(judge["select"], re.DOTALL) if judge.get("select") is not None else None
        spec = {k: v for k, v in judge.items() if k != "select"}
        self.spec = BenchmarkSpec.from_dict({"name": name, "output_type": "open_ended", "judge": spec})
        self.settings = judging.settings(self.spec)
        how = {"batch_size": load["batch_size"], "device_class": device_class(load["device"])}
        self.context = _cache_context(identity, self.spec, how)
        self.cache = JudgmentCache(Path(cache_dir) / f"{self.context[:16]}.jsonl")
        self.counts = dict.fromkeys(COUNTS, 0)
        self.pending = dict.fromkeys(COUNTS, 0)
        self._lm = None

    def describe(self) -> dict:
        """The judge as metrics.json and the manifest record it."""
        from ..io import sha256_text

        s = self.settings
        return {
            "judge": judging.label_of(self.ref),
            "judge_sha256": sha256_text(json.dumps(self.identity, sort_keys=True))[:16],
            "kind": s["kind"],
            "mode": s["mode"],
            **({"rating": s["rating"]} if s["kind"] == "rubric" and s["mode"] == "logprob" else {}),
            "chat_template": s["chat_template"],
            "template_sha256": sha256_text(s["template"])[:16],
            "select": self.select.pattern if self.select else None,
            "cache": str(self.cache.path),
        }

    def score(self, texts: list[str], questions: list[str], references: list[str]) -> list[float]:
        docs, responses, baseline = [], {}, {}
        for i, (text, question, ref) in enumerate(zip(texts, questions, references)):
            part = self._pick(text)
            if part is None:
                continue  # select found nothing to judge: reward 0, counted
            docs.append({"doc_id": str(i), "query": question, "answer": ref})
            responses[str(i)], baseline[str(i)] = part, ref
        rewards = [0.0] * len(texts)
        if docs:
            raws = self._raws(judging.judge_docs(self.spec, docs, responses, baseline))
            for rec in judging.judge_records(self.spec, docs, responses, raws, baseline):
                rewards[int(rec["doc_id"])] = self._reward(rec["verdicts"])
        self._count(completions=len(texts), select_missed=len(texts) - len(docs))
        return rewards

    def take(self) -> dict:
        """The counts since the last call (one logging interval)."""
        out, self.pending = self.pending, dict.fromkeys(COUNTS, 0)
        return out

    def _pick(self, text: str) -> str | None:
        if self.select is None:
            return text
        found = self.select.search(text)
        if found is None:
            return None
        return found.group(1) if self.select.groups else found.group(0)

    def _reward(self, verdicts: list[dict]) -> float:
        """A completion's reward from its judgments: rubric (rating - 1) / 9, pairwise the mean of
        win 1 / tie 0.5 / loss 0 over both orders; an unparsed verdict scores 0."""
        self._count(parse_failures=sum(v["outcome"] == "unparsed" for v in verdicts))
        if self.settings["kind"] == "rubric":
            v = verdicts[0]
            return 0.0 if v["outcome"] == "unparsed" else (float(v["verdict"]) - 1) / 9
        values = [{"win": 1.0, "tie": 0.5}.get(v["outcome"], 0.0) for v in verdicts]
        return sum(values) / len(values)

    def _raws(self, jdocs: list[dict]) -> list[dict]:
        """The judge's raw output per question, from the cache or (once per distinct question)
        from the judge, whose new judgments are written to the cache before returning."""
        keys = {jd["doc_id"]: self._key(jd) for jd in jdocs}
        todo = {}
        for jd in jdocs:
            if keys[jd["doc_id"]] not in self.cache.entries:
                todo.setdefault(keys[jd["doc_id"]], jd)
        if todo:
            fresh = self._judge(list(todo.values()))
            self.cache.add({keys[r["doc_id"]]: _kept(r) for r in fresh})
        self._count(judgments=len(jdocs), judge_calls=len(todo), cache_hits=len(jdocs) - len(todo))
        return [{**self.cache.entries[keys[jd["doc_id"]]], "doc_id": jd["doc_id"]} for jd in jdocs]

    def _key(self, jdoc: dict) -> str:
        from ..io import sha256_text

        question = {"query": jdoc["query"], "choices": jdoc.get("choices")}
        return sha256_text(self.context + json.dumps(question, sort_keys=True))

    def _judge(self, jdocs: list[dict]) -> list[dict]:
        with _rng_kept(), _quiet(), tempfile.TemporaryDirectory() as tmp:
            if self._lm is None:
                from ..bench.served import load_ref

                log.info("reward %s: loading the judge %s", self.name, judging.label_of(self.ref))
                load = {k: v for k, v in self.load.items() if k != "base_dir"}
                cache = self.cache.path.with_suffix("")  # a served judge's answers beside the judgments
                self._lm = load_ref(self.ref, Path(self.load["base_dir"]), request_cache=cache, **load)
            return judge_outputs(self._lm, self.spec, jdocs, Path(tmp))

    def _count(self, **counts: int) -> None:
        for k, v in counts.items():
            self.counts[k] += v
            self.pending[k] += v


def _kept(raw: dict) -> dict:
    """What the cache keeps of a raw judge output: the verdict's inputs, not the prompt."""
    return {k: raw[k] for k in ("prompt_hash", "decoding_hash", "loglikelihoods", "responses") if k in raw}


def judge_rewards(judges: dict[str, dict], judging_job: dict | None) -> dict[str, JudgeReward]:
    """reward name -> its JudgeReward, for ``judges`` (reward name -> its ``judge`` settings).
    ``judging_job``: what the adapter job resolved (``rewards``: name -> {ref, identity};
    ``cache_dir``; ``load``: device, batch_size, threads, base_dir)."""
    out = {}
    for name, judge in judges.items():
        given = (judging_job or {}).get("rewards", {}).get(name)
        if given is None:
            raise DeltaflowError(
                f"reward {name!r} is a judge reward but the training job was given no judge for it "
                "(the adapter rule resolves each judge reward's model: rules/train.smk)"
            )
        out[name] = JudgeReward(
            name,
            judge,
            given["ref"],
            given["identity"],
            cache_dir=Path(judging_job["cache_dir"]),
            load=judging_job["load"],
        )
    return out
