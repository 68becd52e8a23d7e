"""Judge rewards (deltaflow.training.judge_reward): a real tiny judge model scores completions in
the training process with the judged evals' prompts and verdict parsing; judgments are cached by
content, so a resumed run does not judge again; unparsed verdicts and select misses score 0 and
are counted; near-zero groups; the config errors. The training itself (GRPO with a judge reward,
killed and resumed) runs the tiny model as policy and judge."""

import pytest
from conftest import config_errors, save_tiny_llama, tiny_config

from deltaflow.bench import judging
from deltaflow.bench.raw_outputs import ref_identity
from deltaflow.errors import DataError
from deltaflow.training import judge_reward
from deltaflow.training.grpo import grpo_rows
from deltaflow.training.judge_reward import JudgeReward
from deltaflow.training.rewards import GroupStats, check_reward_rows, reward_functions

QUESTION = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("judge") / "judge")


def make_judge(judge_dir, cache_dir, name="judge", **settings) -> JudgeReward:
    ref = {"path": str(judge_dir)}
    return JudgeReward(
        name,
        {"kind": "rubric", "path": str(judge_dir), **settings},
        ref,
        ref_identity(ref, None),
        cache_dir=cache_dir,
        load={"device": "cpu", "batch_size": 8, "threads": 1, "base_dir": str(judge_dir)},
    )


def judge_reward_fn(judge: JudgeReward, stats: GroupStats | None = None):
    (fn,) = reward_functions(
        [{"judge": {"kind": judge.settings["kind"]}, "name": judge.name, "weight": 1.0}],
        stats=stats,
        judges={judge.name: judge},
    )
    return fn


def ratings_by_hand(judge_dir, answers: list[str]) -> list[list[float]]:
    """The judge's log-likelihood of each rating 1-10 after the judged evals' rubric prompt,
    asked of lm-eval's HF model directly (not through the reward's eval path)."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(judge_dir), device="cpu", batch_size=8, dtype="float32")
    s = judging.judge_settings({"kind": "rubric"})
    out = []
    for answer in answers:
        ctx = judging._prompt(s, question=QUESTION[0]["content"], answer=answer, reference="4")
        reqs = [Instance("loglikelihood", {}, (ctx, r), i) for i, r in enumerate(judging.RATINGS)]
        out.append([ll for ll, _ in lm.loglikelihood(reqs, disable_tqdm=True)])
    return out


def test_a_rubric_judge_scores_each_completion_with_its_rating_mapped_to_0_1(judge_dir, tmp_path):
    """rating argmax: (the judge's most likely rating - 1) / 9; rating expected: the probability-
    weighted rating, mapped the same way. Both equal what the judge gives the judged evals'
    rubric prompt when asked directly."""
    import numpy as np

    answers = ["4", "It is 4.", "four, since two and two make four", ""]
    lls = np.array(ratings_by_hand(judge_dir, answers))
    completions = [[{"role": "assistant", "content": a}] for a in answers]
    kw = {"prompts": [QUESTION] * 4, "answer": ["4"] * 4}

    argmax = judge_reward_fn(make_judge(judge_dir, tmp_path / "a"))(completions, **kw)
    assert argmax == pytest.approx([(np.argmax(row) + 1 - 1) / 9 for row in lls])
    expected = judge_reward_fn(make_judge(judge_dir, tmp_path / "e", rating="expected"))(completions, **kw)
    p = np.exp(lls - lls.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    assert expected == pytest.approx(list((p @ np.arange(1, 11) - 1) / 9), abs=1e-4)
    assert all(0 <= v <= 1 for v in expected) and len(set(expected)) > 1


def test_judgments_are_cached_by_content_and_a_resumed_run_makes_no_judge_call(
    judge_dir, tmp_path, monkeypatch
):
    first = make_judge(judge_dir, tmp_path / "cache")
    texts = ["4", "5", "4", "It is four."]  # the repeated "4" is judged once
    values = first.score(texts, ["What is 2 + 2?"] * 4, ["4"] * 4)
    assert first.counts == {
        "completions": 4,
        "select_missed": 0,
        "judgments": 4,
        "cache_hits": 1,
        "judge_calls": 3,
        "parse_failures": 0,
    }
    (cache_file,) = (tmp_path / "cache").iterdir()
    with open(cache_file, "a") as fh:  # a kill while appending: a cut line
        fh.write('{"key": "abc", "raw": {"loglik')

    # the next attempt (a new process) finds every judgment in the file and never loads the judge
    def no_judge(*a, **k):
        raise AssertionError("the judge was asked again")

    monkeypatch.setattr(judge_reward, "judge_outputs", no_judge)
    resumed = make_judge(judge_dir, tmp_path / "cache")
    assert resumed.score(texts, ["What is 2 + 2?"] * 4, ["4"] * 4) == values
    assert resumed.counts["judge_calls"] == 0 and resumed.counts["cache_hits"] == 4
    assert resumed._lm is None
    monkeypatch.undo()
    # another template, question or judge is another judgment; appended after the cut line
    other = make_judge(judge_dir, tmp_path / "cache", template="Rate it: {{answer}}\n")
    other.score(texts[:1], ["What is 2 + 2?"], ["4"])
    assert other.counts["judge_calls"] == 1
    assert len(make_judge(judge_dir, tmp_path / "cache").cache.entries) == 4


def test_an_unparsed_verdict_scores_zero_and_is_counted(judge_dir, tmp_path):
    """generate mode: the judge writes and `parse` reads the verdict; the tiny judge never writes
    one this regex reads, so every completion scores 0 (the judged evals would count a tie) and
    every judgment is a parse failure, per logging step too."""
    judge = make_judge(judge_dir, tmp_path, mode="generate", max_gen_toks=4, parse=r"VERDICT=(10|[1-9])")
    stats = GroupStats(["judge"], [1.0], group=2, near_zero=0.05)
    fn = judge_reward_fn(judge, stats)
    assert fn(["4", "It is 4."], prompts=[QUESTION] * 2, answer=["4"] * 2) == [0.0, 0.0]
    assert stats.take_judged() == {
        "judge": {
            "completions": 2,
            "select_missed": 0,
            "judgments": 2,
            "cache_hits": 0,
            "judge_calls": 2,
            "parse_failures": 2,
        }
    }
    assert stats.take_judged()["judge"]["parse_failures"] == 0  # counts are per logging interval


def test_select_judges_only_the_picked_part_and_a_miss_scores_zero(judge_dir, tmp_path, monkeypatch):
    asked = []
    real = judge_reward.judge_outputs

    def spy(lm, spec, jdocs, work_dir):
        asked.extend(d["query"] for d in jdocs)
        return real(lm, spec, jdocs, work_dir)

    monkeypatch.setattr(judge_reward, "judge_outputs", spy)
    judge = make_judge(judge_dir, tmp_path / "a", select=r"</think>(.*)")
    texts = ["<think>secret\nreasoning</think>The answer\nis 4.", "no thinking block closed <think> here"]
    values = judge.score(texts, ["What is 2 + 2?"] * 2, ["4"] * 2)
    assert values[1] == 0.0 and judge.counts["select_missed"] == 1 and judge.counts["judgments"] == 1
    (prompt,) = asked
    assert "The answer\nis 4." in prompt and "secret" not in prompt and "<think>" not in prompt
    # a regex without a group: the whole match is judged
    asked.clear()
    make_judge(judge_dir, tmp_path / "b", select=r"\d+").score(["so it is 4, not 5"], ["Q?"], ["4"])
    assert "[The Start of Assistant's Answer]\n4\n[The End of Assistant's Answer]" in asked[0]


def test_a_pairwise_judge_compares_with_the_rows_reference_in_both_orders(judge_dir, tmp_path, monkeypatch):
    asked = []
    real = judge_reward.judge_outputs
    monkeypatch.setattr(
        judge_reward,
        "judge_outputs",
        lambda lm, spec, jdocs, wd: asked.extend(jdocs) or real(lm, spec, jdocs, wd),
    )
    judge = make_judge(judge_dir, tmp_path, kind="pairwise")
    values = judge_reward_fn(judge)(["Four.", "5"], prompts=[QUESTION] * 2, answer=["2 + 2 = 4", "2 + 2 = 4"])
    assert [d["doc_id"] for d in asked] == [
        "0|model-first",
        "0|model-second",
        "1|model-first",
        "1|model-second",
    ]
    first, second = asked[0]["query"], asked[1]["query"]
    assert first.index("Four.") < first.index("2 + 2 = 4") and second.index("2 + 2 = 4") < second.index(
        "Four."
    )
    # each order: win 1, tie 0.5, loss 0 (the judge's labels as the judged evals parse them)
    lls = {d["doc_id"]: judge.cache.entries[judge._key(d)]["loglikelihoods"] for d in asked}
    mine = {"model-first": "A", "model-second": "B"}
    for i, value in enumerate(values):
        scores = []
        for order, label in mine.items():
            verdict = judging.LABELS[max(range(3), key=lambda k: lls[f"{i}|{order}"][k])]
            scores.append(1.0 if verdict == label else 0.5 if verdict == "C" else 0.0)
        assert value == sum(scores) / 2
    # a prompt row without a reference answer cannot be judged pairwise
    rows = grpo_rows([{"id": "r0", "messages": [{"role": "user", "content": "Hi"}]}])
    with pytest.raises(DataError, match=r"reward 'j' \(a pairwise judge\) .* row 'r0' has none"):
        check_reward_rows([{"name": "j", "judge": {"kind": "pairwise", "path": "x"}}], rows)
    check_reward_rows([{"name": "j", "judge": {"kind": "rubric", "path": "x"}}], rows)


def test_near_zero_groups_are_counted_beside_the_four_kinds():
    """A group whose totals spread less than near_zero x the summed weights teaches next to
    nothing: counted beside mixed / all_zero / all_max / uniform, which it overlaps."""
    from types import SimpleNamespace

    from deltaflow.training.callbacks import _loss_callback, rl_summary

    stats = GroupStats(["j", "f"], [1.0, 1.0], group=2, near_zero=0.05)  # a spread below 0.1
    groups = [(0.50, 0.55), (0.0, 0.0), (0.2, 0.9), (1.0, 1.0), (0.3, 0.3)]
    stats.record("j", [v for g in groups for v in g])
    stats.record("f", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    assert stats.take() == {"mixed": 2, "all_zero": 1, "all_max": 1, "uniform": 1, "mixed_share": 0.4}
    assert stats.take_near_zero() == 4 and stats.take_near_zero() == 0
    curve = []
    cb = _loss_callback(curve, [])
    cb.group_stats = stats
    for step in (1, 2):
        stats.record("j", [0.5, 0.52, 0.1, 0.8])
        stats.record("f", [0.0] * 4)
        cb.on_log(None, SimpleNamespace(global_step=step, max_steps=2, num_input_tokens_seen=0), None,
                  logs={"loss": 0.1, "reward": 0.5})  # fmt: skip
    rl = rl_summary(curve)
    assert [c["near_zero_groups"] for c in rl["reward_curve"]] == [1, 1]
    assert rl["near_zero_groups"] == {"groups": 2, "share": 0.5}
    assert rl["groups"] == {"mixed": 4, "all_zero": 0, "all_max": 0, "uniform": 0, "mixed_share": 1.0}
    none = GroupStats(["j"], [1.0], group=2, near_zero=0.0)  # 0 counts none, not even exact ties
    none.record("j", [0.0, 0.0])
    assert none.take_near_zero() == 0
    # a penalty (negative weight): the spread is a share of the summed absolute weights (1.5), and
    # all_max is the best total there is (the reward 1, the penalty 0)
    penalty = GroupStats(["j", "p"], [1.0, -0.5], group=2, near_zero=0.05)  # a spread below 0.075
    penalty.record("j", [1.0, 1.0, 0.5, 0.5, 0.2, 0.2])
    penalty.record("p", [0.0, 0.0, 0.0, 0.1, 0.0, 1.0])
    assert penalty.take() == {"mixed": 2, "all_zero": 0, "all_max": 1, "uniform": 0, "mixed_share": 0.6667}
    assert penalty.take_near_zero() == 2


def _rl_config(rewards, **recipe):
    cfg = tiny_config()
    cfg["recipes"]["rl"] = {**cfg["recipes"]["tiny_lora"], "objective": "grpo", "rewards": rewards, **recipe}
    cfg["runs"]["rl_run"] = {"mixture": "mix_a", "recipe": "rl", "init_from": "run_a"}
    return cfg


def test_judge_reward_config_errors(tmp_path):
    judge = save_tiny_llama(tmp_path / "judge")
    good = {"kind": "rubric", "path": str(judge), "select": "</think>(.*)"}
    from deltaflow.config import validate_config

    validate_config(_rl_config([{"judge": good}, {"judge": {"kind": "pairwise", "model": "base"}}]))
    text = config_errors(
        _rl_config(
            [
                {"judge": good, "format": "x"},
                {"judge": {"kind": "rubric"}},
                {"judge": {"kind": "rubric", "hub": "org/judge"}},
                {"judge": {"kind": "rubric", "path": str(tmp_path / "nothing")}},
                {"judge": {**good, "select": "</think>(.*"}},
                {"judge": {"kind": "rubric", "model": "nobody"}},
                {"judge": {"kind": "rubric", "model": "rl_run"}},
                {"judge": {**good, "template": "{{ answer "}},
            ]
        )
    )
    key = "config key 'recipes.rl.rewards"
    assert f"{key}[0]': give exactly one of verifier, format or judge; got format, judge" in text
    assert f"{key}[1].judge': name exactly one judge: model (a model of this workflow), path" in text
    assert f"{key}[2].judge.revision': a hub judge needs a pinned revision" in text
    assert f"{key}[3].judge.path': '{tmp_path / 'nothing'}' is not a Hugging Face model folder" in text
    assert f"{key}[4].judge.select': '</think>(.*' is not a regex" in text
    assert f"{key}[5].judge.model': 'nobody' is not a model of this workflow; known: base," in text
    assert (
        f"{key}[6].judge.model': run 'rl_run' would be judged by 'rl_run', which is made from run "
        "'rl_run' itself" in text
    )
    assert f"{key}[7].judge.template': does not parse" in text
    text = config_errors(_rl_config([{"judge": {"kind": "likert", "model": "base"}}]))
    assert "config key 'recipes.rl.rewards[0].judge.kind': 'likert' is not one of rubric, pairwise" in text
    cfg = _rl_config([{"judge": good}])
    cfg["train"] = {"processes": 2}
    assert "a judge reward judges from one training process" in config_errors(cfg)


class _Killed(Exception):
    pass


def test_grpo_with_a_judge_reward_logs_it_and_a_resumed_run_does_not_judge_again(
    judge_dir, tmp_path, monkeypatch
):
    """GRPO on the tiny model with the tiny judge's rubric reward: metrics.json records the judge
    and what it did; a run killed while scoring step 4 (checkpoint at step 2) resumes, samples
    steps 3-4 again exactly (HF restores the RNG; the judge's lm-eval call leaves it as it was)
    and finds their judgments in the cache, with the rewards of a run never stopped."""
    from conftest import tiny_random_model

    from deltaflow.config import schema_defaults
    from deltaflow.training import runner

    base = tiny_random_model(tmp_path / "base")
    # 8 prompts, 2 a step: the resume stays in the first epoch (TRL's RepeatSampler draws a later
    # epoch's order anew after a resume, so a run resumed there sees other prompts)
    rows = [
        {
            "id": f"p{i}",
            "messages": [
                {"role": "user", "content": f"Tell me about {w}."},
                {"role": "assistant", "content": w},
            ],
        }
        for i, w in enumerate(["cats", "dogs", "rain", "tea", "boats", "maps", "ink", "salt"])
    ]
    judge = {"kind": "rubric", "path": str(judge_dir), "rating": "expected"}
    recipe = schema_defaults(
        "recipe",
        {
            "objective": "grpo", "r": 4, "alpha": 8, "learning_rate": 0.05, "lr_scheduler": "constant",
            "warmup_ratio": 0.0, "max_steps": 6, "batch_size": 8, "num_generations": 4,
            "max_completion_length": 4, "max_length": 64, "seed": 0, "logging_steps": 1, "resume_every": 2,
            "rewards": [{"name": "judged", "judge": judge}],
        },
    )  # fmt: skip
    ref = {"path": str(judge_dir)}

    def train(name: str, attempt: str):
        judging_job = {
            "rewards": {"judged": {"ref": ref, "identity": ref_identity(ref, None)}},
            "cache_dir": str(tmp_path / f"cache-{attempt}"),
            "load": {"device": "cpu", "batch_size": 8, "threads": 1, "base_dir": str(base)},
        }
        return runner.train_adapter(
            base,
            rows,
            recipe,
            tmp_path / name,
            resume_dir=tmp_path / attempt,
            resume_key="k",
            judging=judging_job,
        )

    clean = train("clean", "r0")
    judged = clean["judges"]["judged"]
    assert (
        judged["judge"] == f"path:{judge_dir}"
        and judged["kind"] == "rubric"
        and judged["rating"] == "expected"
    )
    assert judged["completions"] == judged["judgments"] == 6 * 8 and judged["parse_failures"] == 0
    assert judged["judge_calls"] + judged["cache_hits"] == 48 and judged["judge_calls"] > 24
    assert [c["judged"]["judged"]["completions"] for c in clean["reward_curve"]] == [8] * 6
    assert (
        clean["near_zero_groups"]["groups"] >= 0
        and sum(clean["groups"].values()) - clean["groups"]["mixed_share"] == 12
    )

    real, calls = JudgeReward.score, []

    def dying(self, *args):
        out = real(self, *args)
        calls.append(1)
        if len(calls) == 4:
            raise _Killed  # step 4's completions are judged and cached; its checkpoint never comes
        return out

    monkeypatch.setattr(JudgeReward, "score", dying)
    with pytest.raises(_Killed):
        train("killed", "r1")
    monkeypatch.setattr(JudgeReward, "score", real)
    resumed = train("resumed", "r1")
    assert resumed["resumed_from_step"] == 2
    again = resumed["judges"]["judged"]
    assert again["completions"] == 4 * 8 and again["cache_hits"] >= 16  # steps 3 and 4: not judged again
    steps = {c["step"]: c for c in clean["reward_curve"]}
    for c in resumed["reward_curve"]:
        assert c["rewards/judged/mean"] == pytest.approx(steps[c["step"]]["rewards/judged/mean"], abs=1e-6)
    assert [c["judged"]["judged"]["judge_calls"] for c in resumed["reward_curve"]][:2] == [0, 0]
