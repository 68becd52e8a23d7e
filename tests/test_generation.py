"""Model-written data (deltaflow.generation) and origin policies (deltaflow.origins): the modes'
rows and rejections by hand, a generation on the tiny model through the eval path (sampled,
seeded, killed and resumed), the transitive origin, policy refusals from the config and from
rows, and config errors. Through the workflow: test_generation_workflow."""

import copy

import pytest
from conftest import config_errors, tiny_config, tiny_random_model

from deltaflow.bench.raw_outputs import load_model
from deltaflow.bench.run import raw_outputs
from deltaflow.config import schema_defaults, validate_config
from deltaflow.errors import ConfigError, DataError, DeltaflowError
from deltaflow.generation import build_rows, eval_spec, prompt_docs, verifier_spec
from deltaflow.io import write_jsonl
from deltaflow.origins import Origins, check_rows

ROWS = [
    {
        "id": f"r{i}",
        "split": "train",
        "messages": [
            {"role": "user", "content": f"What is {i} plus {i}?"},
            {"role": "assistant", "content": f"It is {2 * i}."},
        ],
    }
    for i in range(6)
]
ORIGIN = {
    "model": "base",
    "model_sha256": "0" * 16,
    "generation": "g",
    "written_by": ["tiny"],
    "prompts_by": ["human"],
}


def _gen(**kw):
    return schema_defaults("generation", {"model": "base", "prompts": {"dataset": "x"}, **kw})


def _raws(responses):
    return [{"doc_id": f"r{i}", "responses": r} for i, r in enumerate(responses)]


def test_answer_mode_keeps_every_sample_and_rejects_empty_ones():
    gen = _gen()
    docs = prompt_docs("g", gen, ROWS, verified=False)
    rows, rejected, counts = build_rows(
        "g", gen, docs, _raws([["A"], ["  "], ["C"], ["D"], ["E"], ["F"]]), origin=ORIGIN
    )
    assert [r["id"] for r in rows] == ["g-r0", "g-r2", "g-r3", "g-r4", "g-r5"]
    assert rows[0]["messages"] == [
        {"role": "user", "content": "What is 0 plus 0?"},
        {"role": "assistant", "content": "A"},
    ]
    assert rows[0]["origin"] == ORIGIN and rows[0]["prompt_id"] == "r0"
    assert rejected == [
        {"source": "g", "prompt_id": "r1", "reason": "sample 0: empty response", "responses": [""]}
    ]
    assert counts == {"prompts": 6, "rows": 5, "rejected": 1}


def test_best_of_n_keeps_the_best_or_every_passing_sample_by_the_verifier():
    # the reference is the row's assistant turn ("It is 2i."), read as a number by the verifier
    verifier = {"match": "numeric", "extract": {"regex": "(-?[0-9]+)", "group_select": -1}}
    samples = [["0", "zero", "0"], ["1", "3"], ["4", "4", "four"], ["x", "y"], ["8", "9"], ["10", "ten"]]
    for keep, ids in (
        ("best", ["g-r0", "g-r2", "g-r4", "g-r5"]),
        ("passing", ["g-r0-p0", "g-r2-p0", "g-r4-p0", "g-r5-p0"]),
    ):
        gen = _gen(
            mode="best_of_n", keep=keep, verifier=verifier, sampling={"samples": 3, "temperature": 1.0}
        )
        vspec = verifier_spec("g", gen)
        docs = prompt_docs("g", gen, ROWS, verified=True)
        rows, rejected, counts = build_rows("g", gen, docs, _raws(samples), origin=ORIGIN, vspec=vspec)
        assert [r["id"] for r in rows] == ids  # "0" twice in r0 is one distinct passing answer
        assert [r["prompt_id"] for r in rejected] == ["r1", "r3"]
        assert rejected[0]["reason"] == "no sample passed the verifier (0 of 2)" and rejected[0][
            "correct"
        ] == [0, 0]
        assert counts["samples_checked"] == 14 and counts["samples_passed"] == 6


def test_pairs_from_one_model_pass_over_fail_and_from_two_models():
    verifier = {"match": "numeric", "extract": {"regex": "(-?[0-9]+)", "group_select": -1}}
    gen = _gen(mode="pairs", verifier=verifier, sampling={"samples": 2, "temperature": 1.0})
    docs = prompt_docs("g", gen, ROWS[:3], verified=True)
    rows, rejected, _ = build_rows(
        "g",
        gen,
        docs,
        _raws([["7", "0"], ["2", "2"], ["5", "6"]]),
        origin=ORIGIN,
        vspec=verifier_spec("g", gen),
    )
    assert rows == [
        {
            "id": "g-r0",
            "source": "g",
            "split": "train",
            "origin": ORIGIN,
            "prompt_id": "r0",
            "messages": [{"role": "user", "content": "What is 0 plus 0?"}],
            "chosen": "0",
            "rejected": "7",
        }
    ]
    assert [r["reason"] for r in rejected] == [
        "2 of 2 samples pass: a pair needs one that passes and one that fails",
        "0 of 2 samples pass: a pair needs one that passes and one that fails",
    ]
    # two models: the teacher's answer over the student's; identical answers make no pair
    gen2 = _gen(mode="pairs", rejected_model="base")
    docs = prompt_docs("g", gen2, ROWS[:2], verified=False)
    rows, rejected, _ = build_rows(
        "g", gen2, docs, _raws([["good"], ["same"]]), origin=ORIGIN, rejected_raws=_raws([["bad"], ["same"]])
    )
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("good", "bad")]
    assert rejected[0]["reason"] == "chosen and rejected are empty or identical"


def test_prompt_sets_that_do_not_fit_are_data_errors():
    no_user = [{"id": "s1", "split": "train", "messages": [{"role": "system", "content": "x"}]}]
    with pytest.raises(DataError, match="row s1 of dataset 'x' has no user turn"):
        prompt_docs("g", _gen(), no_user, verified=False)
    no_answer = [{"id": "u1", "split": "train", "messages": [{"role": "user", "content": "hi"}]}]
    with pytest.raises(DataError, match="row u1 .* no reference answer"):
        prompt_docs("g", _gen(), no_answer, verified=True)
    with pytest.raises(DataError, match="no rows in split 'eval'"):
        prompt_docs("g", _gen(prompts={"dataset": "x", "split": "eval"}), ROWS, verified=False)
    sub = prompt_docs("g", _gen(prompts={"dataset": "x", "n": 3, "seed": 5}), ROWS, verified=False)
    assert len(sub) == 3 and sub == prompt_docs(
        "g", _gen(prompts={"dataset": "x", "n": 3, "seed": 5}), ROWS, verified=False
    )


def test_sampled_generation_on_the_tiny_model_is_seeded_and_resumes_after_a_kill(tmp_path):
    model = load_model(tiny_random_model(tmp_path / "m"), batch_size=8)
    gen = _gen(
        sampling={"samples": 2, "temperature": 1.0, "seed": 3, "max_tokens": 6, "chat_template": False}
    )
    spec = eval_spec("g", gen).replace(guards={"max_truncated_share": 1.0, "max_empty_share": 1.0})
    docs = tmp_path / "docs.jsonl"
    write_jsonl(docs, prompt_docs("g", gen, ROWS, verified=False))
    whole, _, _ = raw_outputs(model, spec, docs, cache_dir=tmp_path / "c1", key="k", chunk_size=2)
    assert all(len(r["responses"]) == 2 for r in whole)
    assert len({r for raw in whole for r in raw["responses"]}) > 1  # sampled, not one greedy answer
    # killed after the first chunk: the rerun keeps that chunk and generates the rest
    from deltaflow.bench import raw_outputs as evaluation

    partial = tmp_path / "c2" / "k.partial"
    with pytest.raises(KeyboardInterrupt):
        evaluation.generate_outputs(
            model,
            spec,
            docs,
            partial,
            chunk_size=2,
            on_chunk=lambda ci: (_ for _ in ()).throw(KeyboardInterrupt()),
        )
    assert [p.name for p in sorted(partial.glob("chunk-0*"))] == ["chunk-00000.jsonl"]
    resumed, hit, _ = raw_outputs(model, spec, docs, cache_dir=tmp_path / "c2", key="k", chunk_size=2)
    assert not hit and [r["responses"] for r in resumed] == [r["responses"] for r in whole]
    # another seed samples other answers
    other = spec.replace(decoding={**spec.decoding, "seed": 4})
    again, _, _ = raw_outputs(model, other, docs, chunk_size=2)
    assert [r["responses"] for r in again] != [r["responses"] for r in whole]


def _cfg_with_generations():
    cfg = tiny_config()
    cfg["generations"] = {"replay_gen": {"model": "run_a", "prompts": {"dataset": "alpaca", "n": 4}}}
    cfg["mixtures"]["mix_b"]["components"].append({"dataset": "replay_gen", "multiplier": 1})
    return cfg


def test_the_origin_of_generated_data_is_transitive_through_the_model_that_wrote_it():
    cfg = validate_config(_cfg_with_generations())
    origins = Origins(cfg)
    gen = origins.dataset("replay_gen")
    # run_a was trained on mix_a: synthetic arithmetic and model-generated alpaca rows
    assert {"tiny-random-llama", "run_a", "synthetic", "model-generated"} <= gen.written_by
    assert gen.prompts_by == {"model-generated"}
    assert any("trained on dataset alpaca" in line for line in gen.chain)
    # a model trained on that generation carries all of it
    assert gen.written_by <= origins.model("run_b").written_by


def test_origin_policies_refuse_before_any_job():
    cfg = _cfg_with_generations()
    cfg["datasets"]["alpaca"]["origin"] = {"model": "gpt-4", "vendor": "openai"}
    cfg["mixtures"]["mix_b"]["policy"] = {"forbid_origins": ["openai"]}
    text = config_errors(cfg)
    # the alpaca component directly, and the generation by run_a, which was trained on alpaca
    assert "component alpaca (dataset alpaca) has training targets written by openai" in text
    assert "component replay_gen (dataset replay_gen) has training targets written by openai" in text
    assert "trained on dataset alpaca: openai / gpt-4" in text
    cfg = _cfg_with_generations()
    cfg["runs"]["run_b"]["policy"] = {"require_licences": ["apache-2.0"]}
    assert "config key 'runs.run_b.policy': dataset alpaca" in config_errors(cfg)
    assert "licences unknown not in require_licences [apache-2.0]" in config_errors(cfg)
    cfg = _cfg_with_generations()
    cfg["mixtures"]["mix_b"]["policy"] = {"forbid_prompt_origins": ["model-generated"]}
    assert "prompts written by model-generated (forbid_prompt_origins)" in config_errors(cfg)


def test_a_model_trained_on_data_it_generates_is_a_cycle():
    cfg = _cfg_with_generations()
    cfg["generations"]["replay_gen"]["model"] = "run_b"  # run_b trains on mix_b, which holds replay_gen
    assert "a cycle in the data (replay_gen -> replay_gen)" in config_errors(cfg)


def test_rows_whose_origin_the_policy_forbids_fail_the_mixture():
    rows = [
        {"id": "a1", "origin": {"model": "gpt-4", "vendor": "openai"}},
        {"id": "g1", "origin": {**ORIGIN, "written_by": ["anthropic", "claude"]}},
    ]
    check_rows("m", {"forbid_origins": ["meta"]}, "c", rows)
    with pytest.raises(
        ConfigError, match=r"component c has 2 rows .* first: a1 \(openai\), g1 \(anthropic\)"
    ):
        check_rows("m", {"forbid_origins": ["openai", "anthropic"]}, "c", rows)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda g: g.update(model="nope"), "generations.g.model': 'nope' is not a model of this workflow"),
        (lambda g: g.update(mode="best_of_n"), "generations.g.verifier': mode best_of_n keeps the samples"),
        (
            lambda g: g.update(mode="best_of_n", verifier={"benchmark": "arithmetic"}),
            "best_of_n needs k >= 2 samples per prompt, got 1",
        ),
        (
            lambda g: g.update(verifier={"benchmark": "arc_easy"}),
            "'arc_easy' is multiple_choice; a verifier checks",
        ),
        (
            lambda g: g.update(verifier={"benchmark": "mbpp"}, prompts={"dataset": "arithmetic"}),
            "'mbpp' checks each prompt row's tests; 'arithmetic' is a task pack's rows and has none",
        ),
        (lambda g: g.update(mode="pairs"), "pairs from one model need a verifier and sampling.samples >= 2"),
        (lambda g: g.update(sampling={"samples": 4}), "4 samples at temperature 0 are 4 copies"),
        (
            lambda g: g.update(prompts={"dataset": "nothing"}),
            "generations.g.prompts.dataset': unknown dataset 'nothing'",
        ),
        (
            lambda g: g.update(prompts={"dataset": "arithmetic", "split": "dev"}),
            "has splits ['train', 'eval'], not 'dev'",
        ),
        (
            lambda g: g.update(model={"hub": "org/teacher"}),
            "generations.g.model.revision': a hub model needs a pinned",
        ),
        (lambda g: g.update(sampling={"samples": 0}), "generations.g.sampling.samples"),
    ],
)
def test_generation_config_errors(change, message):
    cfg = tiny_config()
    cfg["generations"] = {"g": {"model": "base", "prompts": {"dataset": "alpaca"}}}
    change(cfg["generations"]["g"])
    assert message in config_errors(cfg)


def test_a_generation_named_like_a_dataset_and_a_mixture_of_the_wrong_kind_are_refused():
    cfg = tiny_config()
    cfg["generations"] = {"alpaca": {"model": "base", "prompts": {"dataset": "arithmetic"}}}
    assert "'alpaca' is also a dataset" in config_errors(cfg)
    cfg = tiny_config()
    cfg["generations"] = {"g": {"model": "base", "prompts": {"dataset": "alpaca"}}}
    cfg["mixtures"]["pref"]["components"].append({"dataset": "g", "multiplier": 1})
    assert "generation 'g' writes SFT rows (mode answer) and the mixture is kind preference" in config_errors(
        cfg
    )


def test_the_rows_keep_their_origin_through_normalization(tmp_path):
    from deltaflow.datasets import normalize_dataset

    f = tmp_path / "a.json"
    f.write_text('[{"instruction": "Say hi", "output": "hi"}]')
    spec = copy.deepcopy({"type": "file", "path": str(f), "format": "alpaca", "origin": {"vendor": "openai"}})
    assert normalize_dataset("a", spec).rows[0]["origin"] == {"vendor": "openai"}
    assert normalize_dataset("a", {**spec, "origin": None}).rows[0]["origin"] == "unknown"


def test_a_failed_generation_is_named_with_its_own_guards_key():
    """The silent-generation guard on a generation stage names the generation and the key that
    loosens it (generations.<name>.guards), not an eval benchmark."""
    from deltaflow.bench.run import check_health

    spec = eval_spec("replay", _gen())
    health = {
        "responses": 4,
        "empty": 4,
        "empty_share": 1.0,
        "thresholds": {"max_empty_share": 0.5, "max_truncated_share": 0.95},
    }
    with pytest.raises(
        DeltaflowError,
        match=r"^generation 'replay': its generations look failed.*4 of 4 responses "
        r"are empty.*\(max_empty_share / max_truncated_share\) "
        r"\(generations\.replay\.guards\) in the config",
    ):
        check_health(spec, health)


def test_best_of_n_with_code_tests_keeps_the_programs_that_pass_their_rows_tests():
    """Rejection sampling with unit tests: a code verifier (MBPP's scorer, in the sandbox) checks
    each sample with its prompt row's tests; a fenced program counts; a row without tests is a
    data error naming it, before any model runs."""
    from deltaflow.generation import scoring_spec

    rows = [
        {
            "id": "c1",
            "split": "train",
            "tests": "assert add(2, 3) == 5",
            "messages": [
                {"role": "user", "content": "Write add(a, b)."},
                {"role": "assistant", "content": "-"},
            ],
        },
        {
            "id": "c2",
            "split": "train",
            "tests": "assert neg(2) == -2",
            "messages": [{"role": "user", "content": "Write neg(x)."}, {"role": "assistant", "content": "-"}],
        },
    ]
    gen = _gen(
        mode="best_of_n",
        keep="passing",
        verifier={"benchmark": "mbpp"},
        sampling={"samples": 3, "temperature": 1.0},
    )
    vspec = scoring_spec(gen["verifier"], "g")
    docs = prompt_docs("g", gen, rows, verified=True, vspec=vspec)
    assert docs[0]["tests"] == "assert add(2, 3) == 5"
    raws = [
        {
            "doc_id": "c1",
            "responses": [
                "def add(a, b):\n    return a * b",
                "```python\ndef add(a, b):\n    return a + b\n```",
                "def add(a, b): return b + a",
            ],
        },
        {"doc_id": "c2", "responses": ["def neg(x): return x", "no code", "def neg(x): return abs(x)"]},
    ]
    out, rejected, counts = build_rows("g", gen, docs, raws, origin=ORIGIN, vspec=vspec)
    assert [r["messages"][-1]["content"] for r in out] == [raws[0]["responses"][1], raws[0]["responses"][2]]
    assert [r["prompt_id"] for r in rejected] == ["c2"] and counts["samples_passed"] == 2
    with pytest.raises(
        DataError, match=r"row c2 of dataset 'x' has no tests for the verifier \(mbpp, code\)"
    ):
        prompt_docs("g", gen, [rows[0], {**rows[1], "tests": None}], verified=True, vspec=vspec)
