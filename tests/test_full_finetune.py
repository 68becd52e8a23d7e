"""method: full — every weight trained (SFT, DPO), saved as a whole model with its checkpoint
arms; merges and sweep arms of whole models through mergekit; what the config refuses. The
workflow path (eval, sweep, GGUF export, audit) runs in test_export's workflow run."""

import pytest
import torch
from conftest import config_errors, save_tiny_llama, tiny_config
from safetensors.torch import load_file

from deltaflow.config import schema_defaults, validate_config
from deltaflow.models import ModelGraph

RECIPE = {
    "method": "full",
    "learning_rate": 1e-3,
    "lr_scheduler": "constant",
    "warmup_ratio": 0.0,
    "batch_size": 4,
    "max_length": 64,
    "seed": 0,
    "logging_steps": 1,
}


def arithmetic_rows():
    from deltaflow.bench.synthetic_tasks import generate_task

    return [r for r in generate_task("arithmetic", train_rows=24, eval_rows=0, seed=0, name="a")]


@pytest.fixture(scope="module")
def full_sft(tmp_path_factory):
    from deltaflow.training.runner import train_adapter

    tmp = tmp_path_factory.mktemp("full")
    save_tiny_llama(tmp / "base")
    recipe = schema_defaults("recipe", {**RECIPE, "max_steps": 4, "save_every": 2})
    metrics = train_adapter(tmp / "base", arithmetic_rows(), recipe, tmp / "run", device="cpu")
    return tmp, metrics


def test_full_sft_trains_every_weight_and_saves_whole_models(full_sft):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp, m = full_sft
    base = AutoModelForCausalLM.from_pretrained(tmp / "base")
    assert m["method"] == "full" and m["peft"] is None and m["steps"] == 4
    assert m["trainable_parameters"] == sum(p.numel() for p in base.parameters())
    assert [c["tag"] for c in m["checkpoints"]] == ["step2"]
    for folder in (tmp / "run", tmp / "run/checkpoints/step2"):
        assert (folder / "model.safetensors").exists() and not (folder / "adapter_model.safetensors").exists()
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert (
            AutoTokenizer.from_pretrained(folder).chat_template
            == AutoTokenizer.from_pretrained(tmp / "base").chat_template
        )
        changed = [
            n for n, p in model.named_parameters() if not torch.equal(p, dict(base.named_parameters())[n])
        ]
        # every weight matrix moved (not only attention: no adapter, no target_modules)
        assert len(changed) == len(list(base.named_parameters())), set(dict(base.named_parameters())) - set(
            changed
        )
    final, step2 = (load_file(tmp / d / "model.safetensors") for d in ("run", "run/checkpoints/step2"))
    assert any(not torch.equal(final[k], step2[k]) for k in final)


def test_full_dpo_trains_against_a_frozen_copy_of_the_start(tmp_path):
    from deltaflow.training.runner import train_adapter

    save_tiny_llama(tmp_path / "base")
    rows = [
        {
            "messages": [{"role": "user", "content": f"What is {a} + {a}?"}],
            "chosen": str(2 * a),
            "rejected": str(2 * a + 1),
        }
        for a in range(8)
    ]
    recipe = schema_defaults("recipe", {**RECIPE, "objective": "dpo", "max_steps": 3, "learning_rate": 1e-2})
    m = train_adapter(tmp_path / "base", rows, recipe, tmp_path / "dpo", device="cpu")
    assert m["method"] == "full" and m["reference"] == "base" and m["steps"] == 3
    before, after = m["preference_before"], m["preference_after"]
    assert abs(before["rewards/margins"]) < 1e-6  # the reference is the starting model itself
    assert after["rewards/margins"] > before["rewards/margins"]
    assert (tmp_path / "dpo/model.safetensors").exists()


def test_mergekit_sweep_and_merges_of_whole_models(full_sft, tmp_path):
    """A sweep arm is task arithmetic (base + c x (model - base)); TIES and SLERP are mergekit's
    own, reproducible; every result is a model folder transformers loads."""
    from transformers import AutoModelForCausalLM

    from deltaflow.merging import merge_models

    tmp, _ = full_sft
    models = {"run": tmp / "run", "step2": tmp / "run/checkpoints/step2"}
    base, run, step2 = (
        load_file(tmp / d / "model.safetensors") for d in ("base", "run", "run/checkpoints/step2")
    )
    info = merge_models(tmp / "base", {"run": models["run"]}, {"run": 0.5}, tmp_path / "sweep")
    assert info["mergekit"]["merge_method"] == "task_arithmetic"
    swept = load_file(tmp_path / "sweep/model.safetensors")
    for k in swept:
        assert torch.allclose(swept[k], base[k] + 0.5 * (run[k] - base[k]), atol=1e-6), k
    merge_models(tmp / "base", models, {"run": 0.6, "step2": 0.4}, tmp_path / "lin")
    lin = load_file(tmp_path / "lin/model.safetensors")
    for k in lin:
        want = base[k] + 0.6 * (run[k] - base[k]) + 0.4 * (step2[k] - base[k])
        assert torch.allclose(lin[k], want, atol=1e-6), k
    for name in ("ties_a", "ties_b"):
        merge_models(
            tmp / "base", models, {"run": 0.5, "step2": 0.5}, tmp_path / name, method="ties", density=0.5
        )
    a, b = (load_file(tmp_path / n / "model.safetensors") for n in ("ties_a", "ties_b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.allclose(a[k], lin[k]) for k in a)
    merge_models(tmp / "base", models, {"run": 0.5, "step2": 0.0}, tmp_path / "slerp0", method="slerp")
    slerp0 = load_file(tmp_path / "slerp0/model.safetensors")
    assert all(torch.allclose(slerp0[k], run[k], atol=1e-6) for k in slerp0)  # t = 0: the first model
    AutoModelForCausalLM.from_pretrained(tmp_path / "ties_a")


def full_config() -> dict:
    cfg = tiny_config()
    cfg["recipes"]["tiny_full"] = {
        "method": "full",
        "learning_rate": 0.001,
        "max_steps": 4,
        "save_every": 2,
        "batch_size": 4,
        "max_length": 64,
    }
    cfg["runs"]["run_full"] = {"mixture": "mix_a", "recipe": "tiny_full"}
    cfg["runs"]["run_full2"] = {"mixture": "mix_a", "recipe": "tiny_full"}
    cfg["sweeps"] = {"run_full": [0.5]}
    cfg["merges"] = {
        "fulls": {"method": "ties", "density": 0.5, "adapters": {"run_full": 0.5, "run_full2": 0.5}}
    }
    cfg["export"] = {"models": ["run_full"], "gguf_types": ["f16"]}
    return cfg


def test_the_model_graph_knows_whole_models():
    graph = ModelGraph(validate_config(full_config(), check_files=False))
    for name, folder in (
        ("run_full", "results/adapters/run_full"),
        ("run_full@step2", "results/adapters/run_full/checkpoints/step2"),
        ("run_full.x0.5", "results/merges/run_full.x0.5"),
        ("fulls", "results/merges/fulls"),
    ):
        node = graph.node(name)
        assert (node.form, node.full_dir, node.adapter_dir) == ("full", folder, None), name
    assert graph.node("run_a").form == "adapter"
    # a whole model is converted to GGUF from its own folder: no `.merged` step
    assert "run_full.merged" not in graph
    gguf = graph.node("run_full.f16.gguf")
    assert gguf.parents == (("run_full", 1.0),) and gguf.full_dir == "results/adapters/run_full"
    assert graph.lineage("run_full.x0.5")[-1] == "weight delta (task arithmetic) scaled by 0.5"
    assert graph.lineage("run_full.f16.gguf")[-1] == "converted to GGUF f16 with llama.cpp"
    assert graph.node("run_full@step2").files[-1].endswith("checkpoints/step2/model.safetensors")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["recipes"]["tiny_full"].update(r=16), "recipes.tiny_full.r': an adapter setting"),
        (lambda c: c["recipes"]["tiny_full"].update(use_rslora=True), "recipes.tiny_full.use_rslora'"),
        (lambda c: c["merges"]["fulls"].update(method="cat"), "cat combines LoRA factors; whole models"),
        (
            lambda c: c["merges"]["fulls"]["adapters"].update(run_a=0.2),
            "mix adapters and whole models",
        ),
        (
            lambda c: c["merges"].update(x={"method": "slerp", "adapters": {"run_a": 1.0}}),
            "slerp interpolates two whole",
        ),
        (
            lambda c: c["merges"]["fulls"].update(method="slerp", adapters={"run_full": 0.5}),
            "exactly two models",
        ),
        (lambda c: c["merges"]["fulls"].update(majority_sign_method="frequency"), "by total"),
        (lambda c: c["runs"]["run_full"].update(init_from="run_a"), "method 'full' differs from 'lora'"),
    ],
)
def test_what_a_full_fine_tune_refuses(change, message):
    cfg = full_config()
    change(cfg)
    assert message in config_errors(cfg)


def test_a_whole_model_without_a_manifest_is_identified_by_its_weights(full_sft, tmp_path):
    """A full run's checkpoint arm has no manifest of its own: the eval cache keys on its
    safetensors' hash, which moves with its weights."""
    import json
    import shutil

    from deltaflow.bench.raw_outputs import model_identity
    from deltaflow.io import safetensors_sha256

    tmp, _ = full_sft
    (tmp_path / "base.json").write_text(json.dumps({"weights_sha256": "w"}))
    arm = tmp / "run/checkpoints/step2"
    assert not (arm / "manifest.json").exists()
    ident = model_identity(tmp_path / "base.json", merged_dir=arm)
    assert ident == {"merged": safetensors_sha256(arm)}
    other = tmp_path / "other"
    shutil.copytree(tmp / "run", other, ignore=shutil.ignore_patterns("checkpoints"))
    assert model_identity(tmp_path / "base.json", merged_dir=other) != ident


def test_a_merge_of_whole_models_checks_every_name_and_new_tokens():
    cfg = full_config()
    cfg["merges"]["fulls"]["adapters"]["typo"] = 0.2
    assert "merges.fulls.adapters.typo': not a run or checkpoint" in config_errors(cfg)
    cfg = full_config()
    cfg["recipes"]["tiny_full"]["new_tokens"] = ["<x>"]
    assert "merges.fulls.adapters.run_full': its run adds new tokens" in config_errors(cfg)


def test_online_dpo_is_refused_where_it_would_not_anchor_to_the_base():
    cfg = full_config()
    cfg["recipes"]["tiny_full"].update(objective="online_dpo", rewards=[{"format": "e"}])
    cfg["runs"]["run_full"]["mixture"] = "mix_b"
    cfg["merges"], cfg["sweeps"], cfg["export"] = {}, {}, {"models": []}
    del cfg["runs"]["run_full2"]
    assert "recipes.tiny_full': online_dpo anchors to the base by disabling the adapter" in config_errors(cfg)
    cfg = tiny_config()
    cfg["recipes"]["tiny_dpo"].update(objective="online_dpo", rewards=[{"format": "e"}])
    cfg["runs"]["run_dpo"]["mixture"] = "mix_b"
    assert "runs.run_dpo.init_from': online_dpo anchors to the base" in config_errors(cfg)
