"""Models we did not train as arms (`models:`, deltaflow.outside): config checks, the model graph's
view of them, the import of a full model and of an adapter on the tiny model, the card and the
release folder of an outside model. (The GGUF kind and the whole workflow with one of each kind:
tests/test_export.py, which has llama.cpp's converter at hand.)"""

import json

import pytest
from conftest import TINY_MODEL, config_errors, tiny_random_model

from deltaflow.config import validate_config
from deltaflow.models import ModelGraph
from deltaflow.outside import import_outside_model

RIVAL = {"kind": "full", "source": {**TINY_MODEL, "seed": 7}}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_random_model(tmp_path_factory.mktemp("outside") / "base")


def _adapter(base, out, **lora):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=2, lora_alpha=4, init_lora_weights=False, **{"target_modules": ["q_proj"], **lora}),
    )
    model.save_pretrained(out)
    return out


@pytest.mark.parametrize(
    "spec,key,words",
    [
        (
            {"kind": "adapter", "source": dict(TINY_MODEL)},
            "models.m.source.type",
            "a model of kind adapter cannot come from 'random_init'; use one of local, hub",
        ),
        (
            {"kind": "gguf", "source": {"type": "local", "path": "."}},
            "models.m.source.file",
            "a gguf model names its GGUF file",
        ),
        (
            {"kind": "adapter", "source": {"type": "hub", "id": "x/y", "revision": "abc", "file": "m.gguf"}},
            "models.m.source.file",
            "an adapter is a folder",
        ),
        (
            {"kind": "adapter", "source": {"type": "local", "path": "/no/such/adapter"}},
            "models.m.source.path",
            "no PEFT adapter (adapter_config.json) at '/no/such/adapter/adapter_config.json'",
        ),
        (
            {"kind": "full", "source": {"type": "local", "path": "/no/such/model"}},
            "models.m.source.path",
            "'/no/such/model' does not exist",
        ),
        ({"kind": "full", "source": {"type": "hub", "id": "x/y"}}, "models.m.source.revision", "required"),
        ({"kind": "lora", "source": dict(TINY_MODEL)}, "models.m.kind", "full"),
    ],
)
def test_a_bad_outside_model_is_refused_before_any_job(tiny_cfg, spec, key, words):
    tiny_cfg["models"] = {"m": spec}
    err = config_errors(tiny_cfg)
    assert f"config key '{key}'" in err and words in err, err


SERVED = {"kind": "served", "served": {"url": "http://127.0.0.1:1/v1", "model": "m"}}


def test_served_models_are_checked_before_any_job(tiny_cfg):
    """A served model runs generation benchmarks only and judges in generate mode; it has an
    endpoint and no source (tests/test_served.py runs a real one)."""
    tiny_cfg["models"] = {
        "both": {**SERVED, "source": dict(TINY_MODEL)},
        "none": {"kind": "served"},
        "bad_url": {"kind": "served", "served": {"url": "gpu-node:8000", "model": "m"}},
    }
    err = config_errors(tiny_cfg)
    assert "config key 'models.both'" in err and "no `source:`" in err
    assert "config key 'models.none.served': 'served' is a required property" in err
    assert "config key 'models.bad_url.served.url'" in err
    # a server the jobs start runs weights of this config that it can serve
    start = {"server": "llama_cpp", "weights": "run_a"}
    tiny_cfg["models"] = {
        "two": {"kind": "served", "served": {"url": "http://h:1/v1", "model": "m", "start": start}}
    }
    err = config_errors(tiny_cfg)
    assert "config key 'models.two.served'" in err and "a running server (url)" in err, err
    tiny_cfg["models"] = {
        "adapter_gguf": {"kind": "served", "served": {"model": "m", "start": start}},
        "nowhere": {"kind": "served", "served": {"model": "m", "start": {"server": "vllm", "weights": "zz"}}},
        "merged": {
            "kind": "served",
            "served": {"model": "m", "start": {"server": "vllm", "weights": "base"}},
        },
    }
    err = config_errors(tiny_cfg)
    assert (
        "'models.adapter_gguf.served.start.weights': 'run_a' is not a model of this config that llama_cpp"
        in err
    )
    assert "'models.nowhere.served.start.weights': 'zz' is not a model" in err
    assert "models.merged.served.start.weights" not in err  # the base is a whole model vLLM serves
    served = {"kind": "served", "served": {"model": "m", "start": {"server": "vllm", "weights": "base"}},
              "releasable": False, "description": None}  # fmt: skip
    node = ModelGraph({**tiny_cfg, "models": {"merged": served}}).node("merged")
    assert (node.served["weights_path"], node.served["weights_tokenizer"]) == ("results/models/base",) * 2
    tiny_cfg["models"] = {"srv": SERVED, "shipped": {**SERVED, "releasable": True}}
    tiny_cfg["benchmarks"]["gsm8k"]["judge"] = {"kind": "rubric", "model": "srv"}
    # a served teacher declares its origin; a model we trained has its own from the DAG
    prompts = {"dataset": "alpaca", "n": 2}
    tiny_cfg["generations"] = {
        "taught": {
            "model": "srv",
            "prompts": prompts,
            "origin": {"model": "big", "vendor": "v"},
            "license": "x",
        },
        "ours": {"model": "run_a", "prompts": prompts, "license": "apache-2.0"},
    }
    err = config_errors(tiny_cfg)
    assert "config key 'models.srv.served': benchmark 'arc_easy' is multiple-choice" in err, err
    assert "config key 'benchmarks.gsm8k.judge.mode': the judge 'srv' is served" in err
    assert "config key 'models.shipped.releasable': a served model has no weights here" in err
    assert "config key 'generations.ours.license': 'run_a' is a model of this workflow" in err
    assert "generations.taught" not in err
    assert "set models.srv.served.logprobs: true if it gives them" in err
    # a server that gives prompt log-probs may run both (its import job checks it does)
    tiny_cfg["models"]["srv"]["served"]["logprobs"] = True
    err = config_errors(tiny_cfg)
    assert "models.srv.served': benchmark" not in err and "judge 'srv' is served" not in err, err
    graph = ModelGraph({**tiny_cfg, "models": {"srv": {**SERVED, "releasable": False, "description": None}}})
    node = graph.node("srv")
    assert (node.form, node.full_dir, node.adapter_dir, node.gguf_file) == ("served", None, None, None)
    assert node.served["tokenizer_dir"] == "results/models/outside/srv"


def test_an_outside_model_cannot_take_a_workflow_models_name(tiny_cfg):
    tiny_cfg["models"] = {"run_a": RIVAL}
    assert "config key 'models.run_a': 'run_a' is already a model of this workflow" in config_errors(tiny_cfg)


def test_outside_models_in_the_graph(tiny_cfg):
    tiny_cfg["models"] = {
        "rival": {**RIVAL, "description": "a rival lab's model"},
        "v1": {"kind": "adapter", "source": {"type": "local", "path": "."}, "releasable": True},
        "q": {
            "kind": "gguf",
            "source": {"type": "hub", "id": "x/y-GGUF", "revision": "abc", "file": "y.gguf"},
        },
    }
    graph = ModelGraph(validate_config(tiny_cfg, check_files=False))
    assert graph.names[:4] == ["base", "q", "rival", "v1"]
    q, rival, v1 = (graph.node(m) for m in ("q", "rival", "v1"))
    assert (q.form, q.gguf_file, q.full_dir, q.adapter_dir) == (
        "gguf",
        "results/models/outside/q/model.gguf",
        "results/models/outside/q",
        None,
    )
    assert (rival.form, rival.full_dir, rival.adapter_dir, rival.gguf_file) == (
        "full",
        "results/models/outside/rival",
        None,
        None,
    )
    assert (v1.form, v1.adapter_dir, v1.manifest) == (
        "adapter",
        "results/models/outside/v1",
        "results/models/outside/v1/manifest.json",
    )
    assert graph.lineage("rival") == ["outside model rival (full, not trained here): a rival lab's model"]
    assert graph.model_run("v1") is None and graph.training_datasets("v1") == []
    # our own models keep their forms
    assert [graph.node(m).form for m in ("base", "run_a", "run_b@step3", "a_dpo_ties")] == [
        "base",
        "adapter",
        "adapter",
        "adapter",
    ]


def test_a_full_model_is_imported_with_its_weights_hash(base, tmp_path):
    out = tmp_path / "rival"
    info = import_outside_model(RIVAL, out, base)
    assert info["form"] == "full" and info["source"]["seed"] == 7 and len(info["weights_sha256"]) == 64
    assert info["files"]["model.safetensors"] and (out / "tokenizer.json").exists()
    again = import_outside_model(RIVAL, tmp_path / "again", base)
    assert again["weights_sha256"] == info["weights_sha256"]  # the eval cache's key: same weights, same key


def test_an_adapter_is_checked_to_load_onto_the_base(base, tmp_path):
    src = _adapter(base, tmp_path / "src")
    info = import_outside_model(
        {"kind": "adapter", "source": {"type": "local", "path": str(src)}}, tmp_path / "v1", base
    )
    assert info["adapter"]["r"] == 2 and info["adapter"]["target_modules"] == ["q_proj"]
    assert sorted(info["files"]) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    # an adapter of another model: its shapes do not fit our base
    other = tmp_path / "other_base"
    from deltaflow.basemodel import materialize_base

    materialize_base({**TINY_MODEL, "hidden_size": 32}, other)
    alien = _adapter(other, tmp_path / "alien")
    with pytest.raises(
        ValueError, match="(?s)does not load onto the base model .* must be trained on the configured"
    ):
        import_outside_model(
            {"kind": "adapter", "source": {"type": "local", "path": str(alien)}}, tmp_path / "x", base
        )


def test_an_outside_models_card_and_release_folder(base, tmp_path, tiny_cfg):
    """A releasable outside model, chosen: its card says where it came from (no run, no recipe)
    and its release folder holds its own files."""
    import pandas as pd

    from deltaflow.model_card import render_model_card
    from deltaflow.models import ModelNode
    from deltaflow.release import lay_out_release
    from deltaflow.selection import select
    from deltaflow.tables import DELTA_COLUMNS, TableSettings

    (tmp_path / "results/models/outside").mkdir(parents=True)
    out = tmp_path / "results/models/outside/v1"
    info = import_outside_model(RIVAL, out, base)
    manifest = {"kind": "outside_model", "started": "s", "finished": "f", **info}
    (out / "manifest.json").write_text(json.dumps(manifest))
    row = dict(zip(DELTA_COLUMNS, ["v1", "evaluated", "benchmark", "arc_easy", "knowledge", "acc", 8]))
    row.update(base_score=40.0, score=45.0, delta_pts=5.0, ci_low=1.0, ci_high=9.0, mde_pts=20.0)
    row.update(mcnemar_p=0.5, wrong_to_correct=1, correct_to_wrong=0, flag=None)
    axes = [{**row, "level": "axis", "benchmark": a} for a in ("knowledge", "target")]  # the tiny gates' axes
    delta = pd.DataFrame([row, *axes])
    cfg = validate_config(tiny_cfg)
    verdicts, selection = select(delta, cfg["gates"], ["v1"])
    card = render_model_card(
        model="v1",
        base_name="tiny",
        delta=delta,
        settings=TableSettings.from_config(cfg["tables"], {"arc_easy": "knowledge"}),
        verdict=verdicts["v1"],
        selection=selection,
        run=None,
        mixture_manifest=None,
        adapter_manifest=manifest,
        base_manifest={"source": {"type": "random_init", "seed": 0}, "weights_sha256": "b" * 64},
        config_sha="c" * 64,
        lineage=["outside model v1 (full, not trained here)"],
        form="full",
        outside=["v1", "rival"],
    )
    assert card.startswith("# v1: full model, compared with tiny")
    assert "## Source" in card and info["files"]["model.safetensors"] in card and "## Recipe" not in card
    assert "- imported s – f" in card
    # the chosen one beside the other models we did not train (rival: no rows here, a blank column)
    assert "## Compared with models we did not train" in card
    node = ModelNode("v1", "outside", details={"form": "full", "releasable": True, "description": None})
    files = lay_out_release(node, tmp_path, tmp_path / "release/v1", card)
    assert "model.safetensors" in files and "README.md" in files and "manifest.json" not in files
