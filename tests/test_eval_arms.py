"""One load for many arms (eval.arms_per_job): which models share an eval job, and a rerun of
the shared tiny run's evals in batches, item for item identical to one job per model."""

import filecmp
import shutil

from conftest import bench_spec, config_errors, copy_run, tiny_config, tiny_random_model, write_config

from deltaflow.config import validate_config
from deltaflow.eval_jobs import eval_batches
from deltaflow.models import ModelGraph


def _batches(cfg, per_job):
    validate_config(cfg)
    graph = ModelGraph(cfg)
    return graph, eval_batches(graph, graph.names, per_job)


def test_arms_of_a_base_share_a_job_and_full_models_keep_their_own():
    cfg = tiny_config()
    cfg["export"] = {"models": ["run_a"], "gguf_types": ["f16"]}
    graph, batches = _batches(cfg, 8)
    assert len(batches) == 1 and batches[0].rule == "evaluate_arms_0"
    arms = set(batches[0].models)
    assert {"base", "run_a", "run_b", "run_b@step3", "run_a.x0.5", "a_dpo_ties"} <= arms
    # no base to share: a merged export and its GGUF are evaluated alone
    assert not arms & {"run_a.merged", "run_a.f16.gguf"}
    assert set(graph.names) - arms == {"run_a.merged", "run_a.f16.gguf"}
    assert _batches(cfg, 1)[1] == []  # the default: one job per model


def test_batches_split_by_size_and_a_lone_leftover_keeps_the_one_model_rule():
    graph, batches = _batches(tiny_config(), 2)
    sizes = [len(b.models) for b in batches]
    shared = [m for m in graph.names if graph.node(m).form in ("base", "adapter")]
    assert all(s == 2 for s in sizes) and sum(sizes) == len(shared) - len(shared) % 2
    assert [b.index for b in batches] == list(range(len(batches)))


def test_adapters_with_new_tokens_are_evaluated_alone():
    cfg = tiny_config()
    cfg["recipes"][cfg["runs"]["run_b"]["recipe"]]["new_tokens"] = ["<calc>"]
    _, batches = _batches(cfg, 8)
    arms = {m for b in batches for m in b.models}
    assert "run_b" not in arms and "run_b@step3" not in arms and "run_a" in arms


def test_arms_per_job_below_one_is_a_config_error():
    cfg = tiny_config()
    cfg["eval"] = {"arms_per_job": 0}
    assert "eval.arms_per_job" in config_errors(cfg)


def test_one_base_load_for_lora_arms_and_own_loads_for_adapters_that_change_the_base(tmp_path):
    """PEFT's multi-adapter switching (SharedBase) against one load per arm, item for item: two
    LoRA adapters share the base load; one that trains biases changes the base layers, so it
    gets its own load, and the base arm after it is still the plain base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from deltaflow.bench.eval_job import SharedBase
    from deltaflow.bench.items import prepare_docs
    from deltaflow.bench.raw_outputs import generate_outputs, load_model
    from deltaflow.io import write_jsonl

    base = tiny_random_model(tmp_path / "base")
    adapters = {}
    for i, bias in enumerate(("none", "none", "lora_only")):
        torch.manual_seed(i)
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"], bias=bias,
                         init_lora_weights=False)  # fmt: skip
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), cfg)
        if bias != "none":
            with torch.no_grad():  # a trained bias: nonzero
                for name, p in model.named_parameters():
                    if name.endswith(".bias"):
                        p.add_(0.5)
        model.save_pretrained(tmp_path / f"a{i}")
        adapters[f"a{i}"] = tmp_path / f"a{i}"
    spec = bench_spec("gsm8k", n=3, seed=1234, decoding={"max_gen_toks": 6})
    docs = tmp_path / "docs.jsonl"
    write_jsonl(docs, prepare_docs(spec))
    arms = [("a0", adapters["a0"]), ("a2", adapters["a2"]), ("base", None), ("a1", adapters["a1"])]

    def responses(lm, name):
        return [r["responses"] for r in generate_outputs(lm, spec, docs, tmp_path / "w" / name, chunk_size=8)]

    shared = SharedBase(batch_size=8, device="cpu", threads=1)
    got = {name: responses(shared.lm(base, adapter_dir=a).get(), f"shared-{name}") for name, a in arms}
    ref = {name: responses(load_model(base, adapter_dir=a, batch_size=8), f"own-{name}") for name, a in arms}
    assert got == ref
    assert len({str(v) for v in ref.values()}) > 1  # the adapters change the responses
    entry = next(iter(shared._bases.values()))
    assert set(entry.names) == {str(adapters["a0"]), str(adapters["a1"])}  # a2 had its own load


def test_batched_evals_equal_one_job_per_model(tiny_workflow, tmp_path):
    """The shared run's evals again, every adapter arm of the base in one process on one base
    load (no cached outputs): every per-item record is byte-identical."""
    run = copy_run(tiny_workflow, tmp_path)
    res = run.work / "results"
    shutil.move(res / "evals", tmp_path / "evals_ref")
    cfg = run.cfg
    cfg["eval"]["arms_per_job"] = 8
    proc = run.snakemake("results/tables/delta.csv", configfile=write_config(run.work, cfg))
    out = proc.stdout + proc.stderr
    assert "rule evaluate_arms_0:" in out and "rule adapter" not in out
    log = (run.work / "logs/evals/arms-0.log").read_text()
    assert log.count("on the shared base load") >= 4 and "saved outputs" not in log
    ref = sorted(p.relative_to(tmp_path / "evals_ref") for p in (tmp_path / "evals_ref").glob("*/*.jsonl"))
    assert len(ref) >= 18
    match, mismatch, errors = filecmp.cmpfiles(
        tmp_path / "evals_ref", res / "evals", [str(p) for p in ref], shallow=False
    )
    assert (mismatch, errors) == ([], []) and len(match) == len(ref)
