"""GRPO's rewards (recipes.<r>.rewards) from the registry's own scorers, and the group statistics
of an RL run.

A verifier reward scores a completion 1 or 0 with a benchmark's scorer (deltaflow.bench.scoring through
deltaflow.generation.verdicts, the same check the generation stage's best-of-n uses): its extract
regex and exact/numeric/contains match against the prompt row's reference answer, the row's code
tests in the sandbox, or the row's IFBench instruction checkers (the row fields travel in the
GRPO dataset's ``verify`` column). A format reward is 1 when the completion matches a regex. A
judge reward is a judge model's rubric rating or pairwise verdict against the row's reference
(deltaflow.training.judge_reward). TRL's GRPOTrainer calls each function on a generation batch
and sums them with ``reward_weights``.

``GroupStats`` records the weighted total per completion and sorts every group of
``num_generations`` completions of one prompt into mixed / all-zero / all-max / uniform: a group
whose completions all get the same reward has zero advantage and teaches nothing (the
RL run logs "mixed / all-zero / all-one" groups per step). Beside them it counts the
``near_zero`` groups, whose totals spread less than the recipe's ``near_zero`` share of the summed
weights (exact ties included): with continuous rewards (a judge's) hardly any group ties
exactly, yet a group that differs by a hair teaches next to nothing.
"""

from __future__ import annotations

import json
import re

from ..bench import judging
from ..errors import DataError
from ..generation import VERIFIER_TYPES as REWARD_TYPES
from ..generation import checked_samples, missing_checks, scoring_spec
from .judge_reward import JudgeReward, check_judge_reward, question_of


def completion_text(completion) -> str:
    """TRL passes conversational completions as message lists, standard ones as strings."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def check_reward_rows(specs: list[dict], rows: list[dict], dirs: tuple = ()) -> None:
    """Code and instruction rewards check each completion with what its prompt row carries, and a
    pairwise judge compares it with the row's reference answer: a row without it is a data error
    naming the row (the prompts do not fit the reward), raised before any step."""
    for i, spec in enumerate(specs):
        if spec.get("judge"):
            _check_judge_rows(reward_name(i, spec), spec["judge"], rows)
            continue
        vspec = scoring_spec(spec.get("verifier"), reward_name(i, spec), dirs)
        for row in rows:
            missing = missing_checks(vspec, json.loads(row["verify"]))
            if missing:
                raise DataError(
                    f"reward {reward_name(i, spec)!r} ({vspec.name}, {vspec.output_type}) checks "
                    f"completions with each prompt row's {missing}, and row {row['row_id']!r} has none: "
                    f"the prompts do not fit this reward. Give every row {missing} (see "
                    "config/README.md, GRPO), or use a reward that fits them"
                )


def _check_judge_rows(name: str, judge: dict, rows: list[dict]) -> None:
    if judge["kind"] != "pairwise":
        return
    for row in rows:
        if not row["answer"].strip():
            raise DataError(
                f"reward {name!r} (a pairwise judge) compares each completion with its prompt row's "
                f"reference answer (the row's label, else its assistant turn), and row {row['row_id']!r} "
                "has none: give every row a reference answer, or use kind: rubric"
            )


def judge_specs(specs: list[dict]) -> dict[str, dict]:
    """reward name -> its ``judge`` settings, for the judge rewards of a recipe's ``rewards``."""
    return {reward_name(i, s): s["judge"] for i, s in enumerate(specs) if s.get("judge")}


def reward_judge_refs(specs: list[dict]) -> dict[str, dict]:
    """reward name -> its judge model (judging.ref_of: a workflow model, a local folder or a pinned
    hub id), for the judge rewards of a recipe's ``rewards``: what the adapter rule resolves."""
    return {name: judging.ref_of(judge) for name, judge in judge_specs(specs).items()}


def reward_name(i: int, spec: dict) -> str:
    return spec.get("name") or f"reward{i}"


class GroupStats:
    """Weighted totals per completion, and the share of groups that can teach anything.
    ``near_zero``: the spread (max - min of a group's totals), as a share of the summed absolute
    weights (the widest spread the totals can have; a negative weight is a penalty), below which a
    group counts as near_zero. all_max: every completion got the highest total there is (each
    positive-weight reward 1, each penalty 0)."""

    def __init__(self, names: list[str], weights: list[float], group: int, *, near_zero: float):
        self.names, self.weights, self.group = names, weights, group
        self.near_zero = near_zero * sum(abs(w) for w in weights)
        self.pending: dict[str, list[float]] = {}
        self.counts = {"mixed": 0, "all_zero": 0, "all_max": 0, "uniform": 0}
        self.near = 0
        self.hacked = 0  # completions that gamed a code reward's tests (deltaflow.sandbox)
        self.judges: dict[str, JudgeReward] = {}  # the judge rewards, whose counts each log takes

    def record(self, name: str, values: list[float]) -> None:
        self.pending[name] = values
        if len(self.pending) < len(self.names):
            return
        totals = [
            sum(w * self.pending[n][i] for n, w in zip(self.names, self.weights)) for i in range(len(values))
        ]
        self.pending = {}
        top = sum(w for w in self.weights if w > 0)
        for g in range(0, len(totals) - self.group + 1, self.group):
            block = totals[g : g + self.group]
            self.near += max(block) - min(block) < self.near_zero
            if max(block) - min(block) > 1e-9:
                self.counts["mixed"] += 1
            elif abs(block[0]) < 1e-9:
                self.counts["all_zero"] += 1
            elif abs(block[0] - top) < 1e-9:
                self.counts["all_max"] += 1
            else:
                self.counts["uniform"] += 1

    def take(self) -> dict:
        """The counts since the last call (one logging interval), with the mixed share."""
        out, total = dict(self.counts), sum(self.counts.values())
        out["mixed_share"] = round(out["mixed"] / total, 4) if total else None
        self.counts = {k: 0 for k in self.counts}
        return out

    def take_near_zero(self) -> int:
        """The near_zero groups since the last call. They overlap the four kinds that ``take``
        counts (every exact tie is one, and so is a mixed group within the spread), so they are
        reported beside them, not among them."""
        out, self.near = self.near, 0
        return out

    def take_hacked(self) -> int:
        """Completions since the last call that ended the run before a code reward's tests
        finished or compared an always-equal value: they scored 0, and a rising count means the
        policy is learning to game the tests."""
        out, self.hacked = self.hacked, 0
        return out

    def take_judged(self) -> dict:
        """Per judge reward, what it did since the last call (judge_reward.COUNTS)."""
        return {name: judge.take() for name, judge in self.judges.items()}


def reward_functions(
    specs: list[dict], dirs: tuple = (), stats: GroupStats | None = None, judges: dict | None = None
) -> list:
    """One TRL reward function per spec (named as in metrics.json), recording into ``stats``.
    ``judges``: reward name -> its JudgeReward (judge_reward.judge_rewards), for judge rewards."""
    funcs = []
    for i, spec in enumerate(specs):
        name = reward_name(i, spec)
        if spec.get("format"):
            pattern = re.compile(spec["format"])

            def score(completions, pattern=pattern, **_):
                return [float(bool(pattern.search(completion_text(c)))) for c in completions]
        elif spec.get("judge"):
            judge = (judges or {})[name]
            if stats is not None:
                stats.judges[name] = judge

            def score(completions, prompts, answer, judge=judge, **_):
                texts = [completion_text(c) for c in completions]
                return judge.score(texts, [question_of(p) for p in prompts], list(answer))
        else:
            score = _verifier_score(spec, name, dirs, stats)

        def reward(completions, score=score, name=name, **kw):
            values = score(completions, **kw)
            if stats is not None:
                stats.record(name, values)
            return values

        reward.__name__ = name
        funcs.append(reward)
    return funcs


def _verifier_score(spec: dict, name: str, dirs: tuple, stats: GroupStats | None):
    vspec = scoring_spec(spec["verifier"], name, dirs)

    def score(completions, answer, answer_from, verify=None, **_):
        verify = verify or ["{}"] * len(completions)  # rows without code tests or instructions
        checked = [
            checked_samples(vspec, {"answer": a, "answer_from": f, **json.loads(v)}, [completion_text(c)])
            for c, a, f, v in zip(completions, answer, answer_from, verify)
        ]
        if stats is not None:
            stats.hacked += sum(h for _, h in checked)
        return [correct[0] for correct, _ in checked]

    return score


def check_rewards(rname: str, recipe: dict, dirs: tuple, available: list[str], load) -> list[str]:
    """Config errors of a grpo recipe's rewards (before any job)."""
    key = f"config key 'recipes.{rname}"
    errors = []
    if not recipe["rewards"]:
        errors.append(
            f"{key}.rewards': objective {recipe['objective']} needs at least one reward: a verifier ({{verifier: "
            "{benchmark: arithmetic}}), a format regex ({format: '...'}) or a judge ({judge: {kind: rubric, "
            "path: ...}})"
        )
    if recipe["num_generations"] < 2:
        errors.append(
            f"{key}.num_generations': {recipe['objective'].upper()} compares completions within a group; "
            f"{recipe['num_generations']} gives no advantage to learn from (use 2 or more)"
        )
    elif recipe["batch_size"] % recipe["num_generations"]:
        errors.append(
            f"{key}.batch_size': {recipe['batch_size']} completions per step do not split into groups of "
            f"num_generations {recipe['num_generations']}; make it a multiple"
        )
    for i, spec in enumerate(recipe["rewards"]):
        where = f"{key}.rewards[{i}]"
        given = [k for k in ("verifier", "format", "judge") if spec.get(k)]
        if len(given) != 1:
            errors.append(
                f"{where}': give exactly one of verifier, format or judge; got {', '.join(given) or 'none'}"
            )
            continue
        if spec.get("judge"):
            errors += check_judge_reward(where, spec)
            continue
        if spec.get("format"):
            try:
                re.compile(spec["format"])
            except re.error as exc:
                errors.append(f"{where}.format': not a regex: {exc}")
            continue
        v = spec["verifier"]
        if "benchmark" in v:
            if v["benchmark"] not in available:
                errors.append(f"{where}.verifier.benchmark': unknown benchmark '{v['benchmark']}'")
            elif load(v["benchmark"]).get("output_type") not in REWARD_TYPES:
                errors.append(
                    f"{where}.verifier.benchmark': '{v['benchmark']}' is {load(v['benchmark']).get('output_type')}; "
                    "a reward checks a completion against its prompt row with a benchmark's scorer: "
                    "generate_until (final-number, exact, numeric or contains match against the row's "
                    "answer), code (the row's tests in the sandbox) or instruction (the row's "
                    "instruction checkers)"
                )
        elif v.get("match") not in ("exact", "numeric", "contains"):
            errors.append(f"{where}.verifier': give benchmark, or match (exact, numeric or contains)")
    return errors
