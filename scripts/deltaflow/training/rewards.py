"""GRPO's rewards (recipes.<r>.rewards) from the registry's own scorers, and the group statistics
of an RL run.

A verifier reward scores a completion 1 or 0 with a benchmark's scorer (deltaflow.bench.scoring through
deltaflow.generation.verdicts, the same check the generation stage's best-of-n uses): its extract
regex and exact/numeric/contains match against the prompt row's reference answer, the row's code
tests in the sandbox, or the row's IFBench instruction checkers (the row fields travel in the
GRPO dataset's ``verify`` column). A format reward is 1 when the completion matches a regex. TRL's GRPOTrainer calls each function on a
generation batch and sums them with ``reward_weights``.

``GroupStats`` records the weighted total per completion and sorts every group of
``num_generations`` completions of one prompt into mixed / all-zero / all-max / uniform: a group
whose completions all get the same reward has zero advantage and teaches nothing (the
RL run logs "mixed / all-zero / all-one" groups per step).
"""

from __future__ import annotations

import json
import re

from ..errors import DataError
from ..generation import VERIFIER_TYPES as REWARD_TYPES
from ..generation import checked_samples, missing_checks, scoring_spec


def completion_text(completion) -> str:
    """TRL passes conversational completions as message lists, standard ones as strings."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def check_reward_rows(specs: list[dict], rows: list[dict], dirs: tuple = ()) -> None:
    """Code and instruction rewards check each completion with what its prompt row carries: a
    row without it is a data error naming the row (the prompts do not fit the reward), raised
    before any step."""
    for i, spec in enumerate(specs):
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


def reward_name(i: int, spec: dict) -> str:
    return spec.get("name") or f"reward{i}"


class GroupStats:
    """Weighted totals per completion, and the share of groups that can teach anything."""

    def __init__(self, names: list[str], weights: list[float], group: int):
        self.names, self.weights, self.group = names, weights, group
        self.pending: dict[str, list[float]] = {}
        self.counts = {"mixed": 0, "all_zero": 0, "all_max": 0, "uniform": 0}
        self.hacked = 0  # completions that gamed a code reward's tests (deltaflow.sandbox)

    def record(self, name: str, values: list[float]) -> None:
        self.pending[name] = values
        if len(self.pending) < len(self.names):
            return
        totals = [
            sum(w * self.pending[n][i] for n, w in zip(self.names, self.weights)) for i in range(len(values))
        ]
        self.pending = {}
        top = sum(self.weights)
        for g in range(0, len(totals) - self.group + 1, self.group):
            block = totals[g : g + self.group]
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

    def take_hacked(self) -> int:
        """Completions since the last call that ended the run before a code reward's tests
        finished or compared an always-equal value: they scored 0, and a rising count means the
        policy is learning to game the tests."""
        out, self.hacked = self.hacked, 0
        return out


def reward_functions(specs: list[dict], dirs: tuple = (), stats: GroupStats | None = None) -> list:
    """One TRL reward function per spec (named as in metrics.json), recording into ``stats``."""
    funcs = []
    for i, spec in enumerate(specs):
        name = reward_name(i, spec)
        if spec.get("format"):
            pattern = re.compile(spec["format"])

            def score(completions, pattern=pattern, **_):
                return [float(bool(pattern.search(completion_text(c)))) for c in completions]
        else:
            vspec = scoring_spec(spec["verifier"], name, dirs)

            def score(completions, answer, answer_from, verify=None, vspec=vspec, **_):
                verify = verify or ["{}"] * len(completions)  # rows without code tests or instructions
                checked = [
                    checked_samples(
                        vspec, {"answer": a, "answer_from": f, **json.loads(v)}, [completion_text(c)]
                    )
                    for c, a, f, v in zip(completions, answer, answer_from, verify)
                ]
                if stats is not None:
                    stats.hacked += sum(h for _, h in checked)
                return [correct[0] for correct, _ in checked]

        def reward(completions, score=score, name=name, **kw):
            values = score(completions, **kw)
            if stats is not None:
                stats.record(name, values)
            return values

        reward.__name__ = name
        funcs.append(reward)
    return funcs


def check_rewards(rname: str, recipe: dict, dirs: tuple, available: list[str], load) -> list[str]:
    """Config errors of a grpo recipe's rewards (before any job)."""
    key = f"config key 'recipes.{rname}"
    errors = []
    if not recipe["rewards"]:
        errors.append(
            f"{key}.rewards': objective {recipe['objective']} needs at least one reward: a verifier ({{verifier: "
            "{benchmark: arithmetic}}) or a format regex ({format: '...'})"
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
        if bool(spec.get("format")) == bool(spec.get("verifier")):
            errors.append(f"{where}': give exactly one of verifier or format")
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
