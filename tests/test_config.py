import pytest

from deltaflow.bench.from_config import benchmark_spec
from deltaflow.config import validate_config
from deltaflow.errors import ConfigError


def test_tiny_config_validates_and_fills_defaults(tiny_cfg):
    cfg = validate_config(tiny_cfg)
    assert cfg["recipes"]["tiny_lora"]["assistant_only_loss"] is True
    assert cfg["recipes"]["tiny_lora"]["target_modules"] == "all-linear"
    assert cfg["mixtures"]["mix_a"]["components"][0]["split"] == "train"
    assert cfg["eval"]["device"] == "cpu"


def test_default_config_validates(repo, monkeypatch):
    from deltaflow.config import load_config

    monkeypatch.chdir(repo)
    cfg = load_config(repo / "config/config.yaml")
    assert set(cfg["benchmarks"]) == {"arithmetic", "arc_easy", "gsm8k"}


@pytest.mark.parametrize(
    "mutate, key, words",
    [
        (
            lambda c: c["mixtures"]["mix_a"]["components"][0].update(dataset="nope"),
            "mixtures.mix_a.components[0].dataset",
            "unknown dataset 'nope'",
        ),
        (
            lambda c: c["mixtures"]["mix_a"]["components"][0].update(multiplier=-1),
            "mixtures.mix_a.components[0].multiplier",
            "less than or equal to the minimum",
        ),
        (
            lambda c: c["mixtures"]["mix_a"]["components"][0].update(multiplier=0),
            "mixtures.mix_a.components[0].multiplier",
            "less than or equal to the minimum",
        ),
        (
            lambda c: c["mixtures"]["mix_a"]["components"][0].update(fraction=0.5),
            "mixtures.mix_a.components[0]",
            "exactly one of multiplier, fraction, rows or share",
        ),
        (
            lambda c: c["runs"]["run_dpo"].update(recipe="tiny_lora"),
            "runs.run_dpo.recipe",
            "is a preference mixture",
        ),
        (
            lambda c: c["runs"]["run_a"].update(recipe="tiny_dpo"),
            "runs.run_a.mixture",
            "needs a `kind: preference` mixture",
        ),
        (
            lambda c: c["runs"]["run_dpo"].update(init_from="run_x"),
            "runs.run_dpo.init_from",
            "'run_x' is not another run",
        ),
        (lambda c: c["runs"]["run_a"].update(init_from="run_dpo"), "runs.run_a.init_from", "loops back"),
        (
            lambda c: c["mixtures"]["mix_a"].update(min_share={"taks": 0.2}),
            "mixtures.mix_a.min_share.taks",
            "no component or profile named 'taks'",
        ),
        (
            lambda c: c["mixtures"]["mix_a"]["components"][0].update(labels_from="mmlu"),
            "mixtures.mix_a.components[0].labels_from",
            "unknown benchmark 'mmlu'",
        ),
        (
            lambda c: c["mixtures"]["mix_a"].update(decontamination={"benchmarks": ["nope"]}),
            "mixtures.mix_a.decontamination.benchmarks",
            "unknown benchmark 'nope'",
        ),
        (
            lambda c: c["mixtures"]["mix_a"].update(kind="preference"),
            "mixtures.mix_a.components[0].dataset",
            "needs chosen/rejected pairs",
        ),
        (
            lambda c: (
                [
                    comp.pop(k)
                    for comp in c["mixtures"]["mix_a"]["components"]
                    for k in list(comp)
                    if k in ("multiplier", "fraction", "rows")
                ]
                and [comp.update(share=0.5) for comp in c["mixtures"]["mix_a"]["components"]]
            ),
            "mixtures.mix_a.total_rows",
            "give the mix size as total_rows",
        ),
        (
            lambda c: (
                c["mixtures"]["mix_a"]["components"][0].update(share=1.0)
                or [
                    c["mixtures"]["mix_a"]["components"][0].pop(k, None)
                    for k in ("multiplier", "fraction", "rows")
                ]
            ),
            "mixtures.mix_a.components",
            "must sum to less than 1",
        ),
        (
            lambda c: c["benchmarks"].update(mmlu_typo={"n": 5}),
            "benchmarks.mmlu_typo",
            "unknown benchmark 'mmlu_typo'",
        ),
        (
            lambda c: c["runs"]["run_a"].update(mixture="missing"),
            "runs.run_a.mixture",
            "unknown mixture 'missing'",
        ),
        (
            lambda c: c["datasets"]["alpaca"].update(path="/no/such/file.json"),
            "datasets.alpaca.path",
            "does not exist",
        ),
        (
            lambda c: c["datasets"]["alpaca"].pop("format"),
            "datasets.alpaca.format",
            "required for a file or hf dataset without a mapping",
        ),
        (lambda c: c["recipes"]["tiny_lora"].update(learnig_rate=1e-3), "recipes.tiny_lora", "learnig_rate"),
        (
            lambda c: c["benchmarks"]["arithmetic"].pop("dataset"),
            "benchmarks.arithmetic.dataset",
            "generated dataset's eval split",
        ),
        (
            lambda c: c["mixtures"]["mix_a"]["components"][0].update(split="validation"),
            "mixtures.mix_a.components[0].split",
            "has splits ['train', 'eval']",
        ),
        (
            lambda c: c["runs"].update({"bad name": {"mixture": "mix_a", "recipe": "tiny_lora"}}),
            "runs",
            "does not match",
        ),
        (
            lambda c: c["tables"]["comparisons"].append({"left": "base", "right": "run_c"}),
            "tables.comparisons[3].right",
            "unknown model 'run_c'",
        ),
        (
            lambda c: c["tables"]["references"]["fixture-ref"]["scores"].update(mmlu=50.0),
            "tables.references.fixture-ref.scores.mmlu",
            "unknown benchmark",
        ),
        (
            lambda c: c["tables"]["references"]["fixture-ref"]["scores"].update(arc_easy=0.3e3),
            "tables.references.fixture-ref.scores.arc_easy",
            "greater than the maximum of 100",
        ),
        (
            lambda c: c["tables"].update(bootstrap_resamples=100),
            "tables.bootstrap_resamples",
            "less than the minimum of 1000",
        ),
        (
            lambda c: c["gates"]["guarded"].update(generel={"tolerance_pts": 0.5}),
            "gates.guarded.generel",
            "no benchmark has axis 'generel'",
        ),
        (
            lambda c: c["gates"]["guarded"].update(target={"tolerance_pts": 0.5}),
            "gates",
            "both target and guarded",
        ),
        (
            lambda c: c["recipes"]["tiny_lora"].update(load_in_4bit=True),
            "recipes.tiny_lora.load_in_4bit",
            "needs a CUDA GPU and train.device is cpu",
        ),
        (
            lambda c: c["recipes"]["tiny_lora"].update(save_every=6),
            "recipes.tiny_lora.save_every",
            "not below max_steps (6)",
        ),
        (
            lambda c: c["recipes"]["tiny_lora"].update(epochs=2),
            "recipes.tiny_lora",
            "give max_steps or epochs, not both",
        ),
        (
            lambda c: (
                c["recipes"]["tiny_lora"].pop("max_steps")
                and c["recipes"]["tiny_lora"].update(epochs=2, save_every=3)
            ),
            "recipes.tiny_lora.save_every",
            "save_every: epoch",
        ),
        (
            lambda c: c["recipes"]["tiny_lora"].update(save_every="epoch"),
            "recipes.tiny_lora.save_every",
            "`epoch` needs a recipe with epochs",
        ),
        (
            lambda c: c["recipes"]["tiny_lora"].update(precision="fp16"),
            "recipes.tiny_lora.precision",
            "fp16 mixed precision needs a CUDA GPU",
        ),
        (
            lambda c: c.update(
                grids={"g": {"mixtures": ["mix_a"], "recipes": ["tiny_lora"], "vary": {"r": [4, "big"]}}}
            ),
            "grids.g.vary",
            "'big' is not of type 'integer'",
        ),
        (
            lambda c: c.update(
                grids={"g": {"mixtures": ["mix_a"], "recipes": ["tiny_lora"], "vary": {"rank": [4]}}}
            ),
            "grids.g.vary",
            "unknown key 'rank'",
        ),
        (
            lambda c: c.update(grids={"g": {"mixtures": ["mix_z"], "recipes": ["tiny_lora"]}}),
            "grids.g.mixtures",
            "unknown mixture(s) ['mix_z']",
        ),
        (
            lambda c: c.update(grids={"g": {"mixtures": ["mix_a"], "recipes": ["tiny"]}}),
            "grids.g.recipes",
            "unknown recipe(s) ['tiny']",
        ),
        (lambda c: c.update(runs={}), "runs", "no runs to train"),
        (
            lambda c: c["recipes"]["tiny_lora"].update(method="pissa"),
            "recipes.tiny_lora.method",
            "is not one of",
        ),
        (
            lambda c: c["gates"]["guarded"]["knowledge"].update(bound="lower"),
            "gates.guarded.knowledge.bound",
            "is not one of",
        ),
    ],
)
def test_bad_config_names_key(tiny_cfg, mutate, key, words):
    mutate(tiny_cfg)
    with pytest.raises(ConfigError) as err:
        validate_config(tiny_cfg)
    msg = str(err.value)
    assert key in msg and words in msg, msg


def test_benchmark_spec_merges_overrides(tiny_cfg):
    cfg = validate_config(tiny_cfg)
    spec = benchmark_spec(cfg, "gsm8k")
    assert spec.n == 3 and spec.decoding["max_gen_toks"] == 8
    assert spec.axis == "math" and spec.output_type == "generate_until"


def test_config_readme_documents_every_schema_key():
    """config/README.md's key table is generated from the schema; regenerate with
    `python -m deltaflow.schema_docs` when the schema changes."""
    from deltaflow.schema_docs import README, updated_readme

    assert README.read_text() == updated_readme()
    assert "| `mixtures.<name>.components[].multiplier` |" in README.read_text()


def test_benchmark_axis_override_regroups(tiny_cfg):
    from deltaflow.bench.from_config import benchmark_axes

    tiny_cfg["benchmarks"]["gsm8k"]["axis"] = "reasoning"
    tiny_cfg["gates"]["guarded"] = {"reasoning": {"tolerance_pts": 1.0}}
    cfg = validate_config(tiny_cfg)
    assert benchmark_axes(cfg) == {"arc_easy": "knowledge", "arithmetic": "target", "gsm8k": "reasoning"}
    # the registry's own axis is unchanged: only the tables see the override
    assert benchmark_spec(cfg, "gsm8k").axis == "math"


def test_checkpoints_are_models(tiny_cfg):
    from deltaflow.models import ModelGraph, checkpoint_models

    tiny_cfg["recipes"]["tiny_dora"]["save_every"] = 2
    cfg = validate_config(tiny_cfg)
    assert checkpoint_models(cfg) == {"run_b@step2": ("run_b", "step2"), "run_b@step4": ("run_b", "step4")}
    assert ModelGraph(cfg).names == [
        "base",
        "run_a",
        "run_b",
        "run_dpo",
        "run_b@step2",
        "run_b@step4",
        "a_dpo_ties",
        "run_a.x0.5",
    ]
    # a checkpoint can be compared like any model
    tiny_cfg["tables"]["comparisons"].append({"left": "run_b@step2", "right": "run_b"})
    validate_config(tiny_cfg)


def test_merges_sweeps_and_exports_are_models(tiny_cfg):
    from deltaflow.models import ModelGraph

    tiny_cfg["sweeps"]["run_a"] = [0.3, 0.5]
    tiny_cfg["sweeps"]["a_dpo_ties"] = [2]
    tiny_cfg["export"] = {"models": ["run_a.x0.5"], "gguf_types": ["f16", "q4_k_m"]}
    cfg = validate_config(tiny_cfg)
    graph = ModelGraph(cfg)
    names = graph.names
    assert names[-7:] == [
        "a_dpo_ties",
        "a_dpo_ties.x2",
        "run_a.x0.3",
        "run_a.x0.5",
        "run_a.x0.5.merged",
        "run_a.x0.5.f16.gguf",
        "run_a.x0.5.q4_k_m.gguf",
    ]
    assert (
        graph.primary_run("run_a.x0.5.q4_k_m.gguf") == "run_a"
        and graph.primary_run("a_dpo_ties.x2") == "run_a"
    )
    assert graph.lineage("run_a.x0.5.q4_k_m.gguf") == [
        "run run_a: mixture mix_a x recipe tiny_lora",
        "adapter delta scaled by 0.5",
        "merged into the base weights (run_a.x0.5.merged)",
        "converted to GGUF q4_k_m with llama.cpp",
    ]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["sweeps"].update(run_b=[0.5]), r"sweeps.run_b': a DoRA adapter"),
        (lambda c: c["sweeps"].update(nope=[0.5]), r"sweeps.nope': unknown model"),
        (lambda c: c["sweeps"].update(run_a=[1.0]), r"coefficient 1 is the adapter itself"),
        (lambda c: c["sweeps"].update(run_a=[-1]), r"sweeps.run_a\[0\]'"),
        (
            lambda c: c["merges"]["a_dpo_ties"]["adapters"].update(run_b=0.2),
            r"adapters.run_b': a DoRA adapter",
        ),
        (lambda c: c["merges"]["a_dpo_ties"]["adapters"].update(ghost=0.2), r"adapters.ghost': not a run"),
        # (a rank-8 run from the base: run_dpo continues run_a's rank-4 adapter, whatever its recipe says)
        (
            lambda c: (
                c["recipes"].update(r8={**c["recipes"]["tiny_lora"], "r": 8})
                or c["runs"].update(run_r8={"mixture": "mix_a", "recipe": "r8"})
                or c["merges"]["a_dpo_ties"]["adapters"].update(run_r8=0.2)
            ),
            r"ties combines the A and B factors and needs one rank",
        ),
        (lambda c: c["merges"].update(run_a={"method": "linear", "adapters": {"run_b": 1}}), r"also a run"),
        (lambda c: c.update(export={"models": ["base"]}), r"export.models\[0\]': 'base' is not an adapter"),
        (lambda c: c.update(export={"models": ["run_a"], "gguf_types": ["q3"]}), r"export.gguf_types\[0\]"),
        (
            lambda c: c.update(export={"models": ["run_a"], "parity": {"prompts": "/no/such.txt"}}),
            r"export.parity.prompts': file '/no/such.txt' does not exist",
        ),
    ],
)
def test_bad_merges_sweeps_and_exports_are_refused(tiny_cfg, edit, message):
    edit(tiny_cfg)
    with pytest.raises(ConfigError, match=message):
        validate_config(tiny_cfg)


def test_a_grid_declares_runs_with_derived_recipes(tiny_cfg):
    from deltaflow.models import ModelGraph

    tiny_cfg["grids"] = {
        "rk": {
            "mixtures": ["mix_a", "mix_b"],
            "recipes": ["tiny_lora"],
            "vary": {"r": [2, 8], "learning_rate": [0.0002]},
        }
    }
    cfg = validate_config(tiny_cfg)
    assert cfg["recipes"]["tiny_lora-r8-learning_rate0p0002"] == {
        **cfg["recipes"]["tiny_lora"],
        "r": 8,
        "learning_rate": 0.0002,
    }
    grid_runs = {k: v for k, v in cfg["runs"].items() if k.startswith("rk-")}
    assert grid_runs == {
        f"rk-{m}-tiny_lora-r{r}-learning_rate0p0002": {
            "mixture": m,
            "recipe": f"tiny_lora-r{r}-learning_rate0p0002",
        }
        for m in ("mix_a", "mix_b")
        for r in (2, 8)
    }
    assert set(grid_runs) <= set(ModelGraph(cfg).names)
    # validating again (Snakemake and the scripts both do) changes nothing
    assert validate_config(cfg) == cfg


def test_a_grid_alone_is_enough(tiny_cfg):
    tiny_cfg.update(
        runs={},
        merges={},
        sweeps={},
        tables={"comparisons": []},
        grids={"g": {"mixtures": ["mix_a"], "recipes": ["tiny_lora", "tiny_dora"]}},
    )
    cfg = validate_config(tiny_cfg)
    assert set(cfg["runs"]) == {"g-mix_a-tiny_lora", "g-mix_a-tiny_dora"}


def test_epoch_checkpoints_are_models(tiny_cfg):
    from deltaflow.models import checkpoint_models

    recipe = tiny_cfg["recipes"]["tiny_dora"]
    recipe.pop("max_steps")
    recipe.update(epochs=3, save_every="epoch")
    cfg = validate_config(tiny_cfg)
    assert checkpoint_models(cfg) == {
        "run_b@epoch1": ("run_b", "epoch1"),
        "run_b@epoch2": ("run_b", "epoch2"),
    }
    assert cfg["recipes"]["tiny_dora"]["max_steps"] is None
    # neither max_steps nor epochs: 100 steps
    tiny_cfg["recipes"]["tiny_lora"].pop("max_steps")
    assert validate_config(tiny_cfg)["recipes"]["tiny_lora"]["max_steps"] == 100
