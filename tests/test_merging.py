"""Adapter arithmetic on a tiny random Llama: sweeps scale exactly, TIES/DARE differ from linear
and are reproducible, merge_and_unload matches the unmerged adapter, bad merges are refused."""

import json

import pytest
import torch

from deltaflow.basemodel import build_random_llama
from deltaflow.errors import DeltaflowError
from deltaflow.merging import combine_adapters, merge_full, weight_deltas


@pytest.fixture(scope="module")
def tiny(repo, tmp_path_factory):
    """A tiny base and three random (non-zero) LoRA adapters: two plain, one rsLoRA, one DoRA."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("merge")
    model, tok = build_random_llama(
        repo / "tests/fixtures/tiny_corpus.txt",
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        vocab_size=512,
        seed=0,
    )
    model.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    dirs = {}
    for i, (name, extra) in enumerate(
        [("a", {}), ("b", {}), ("rs", {"use_rslora": True}), ("dora", {"use_dora": True})]
    ):
        torch.manual_seed(10 + i)
        base = type(model).from_pretrained(root / "base")
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, **extra)
        peft = get_peft_model(base, cfg)
        with torch.no_grad():  # init_lora_weights=False gives random B: a non-zero delta
            for n, p in peft.named_parameters():
                if "lora_B" in n:
                    p.mul_(0.1)
        peft.save_pretrained(root / name)
        dirs[name] = root / name
    return root / "base", dirs


def _allclose(d1: dict, d2: dict, scale: float = 1.0) -> bool:
    return d1.keys() == d2.keys() and all(torch.allclose(d1[k], scale * d2[k], atol=1e-6) for k in d1)


@pytest.mark.parametrize("name", ["a", "rs"])
def test_sweep_arm_scales_the_weight_delta_exactly(tiny, tmp_path, name):
    base, dirs = tiny
    info = combine_adapters(base, {name: dirs[name]}, {name: 0.5}, tmp_path / "x0.5", method="linear")
    assert info["method"] == "linear" and info["weights"] == {name: 0.5}
    # rsLoRA: PEFT keeps use_rslora on the combined adapter (scaling sqrt(r)); we reset it to 1
    assert not json.loads((tmp_path / "x0.5/adapter_config.json").read_text())["use_rslora"]
    assert _allclose(weight_deltas(base, tmp_path / "x0.5"), weight_deltas(base, dirs[name]), 0.5)


def test_ties_and_dare_differ_from_linear_and_are_reproducible(tiny, tmp_path):
    base, dirs = tiny
    ins, w = {"a": dirs["a"], "b": dirs["b"]}, {"a": 0.6, "b": 0.4}
    out = {}
    for label, method, seed in [
        ("linear", "linear", 0),
        ("ties", "ties", 0),
        ("ties2", "ties", 0),
        ("dare", "dare_ties", 0),
        ("dare2", "dare_ties", 0),
        ("dare_s1", "dare_ties", 1),
    ]:
        combine_adapters(base, ins, w, tmp_path / label, method=method, density=0.5, seed=seed)
        out[label] = weight_deltas(base, tmp_path / label)
    assert _allclose(out["ties"], out["ties2"]) and _allclose(out["dare"], out["dare2"])
    assert not _allclose(out["ties"], out["linear"]) and not _allclose(out["dare"], out["linear"])
    assert not _allclose(out["dare"], out["dare_s1"])  # DARE's pruning follows the seed


def test_dora_is_refused(tiny, tmp_path):
    base, dirs = tiny
    with pytest.raises(DeltaflowError, match="DoRA"):
        combine_adapters(base, {"dora": dirs["dora"]}, {"dora": 0.5}, tmp_path / "x")


def test_merge_full_matches_the_unmerged_adapter(tiny, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, dirs = tiny
    merge_full(base, dirs["a"], tmp_path / "merged")
    ids = torch.tensor([[5, 17, 42, 99, 3, 7]])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")(ids).logits
        unmerged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), dirs["a"])(
            ids
        ).logits
        plain = AutoModelForCausalLM.from_pretrained(base)(ids).logits
    assert torch.allclose(merged, unmerged, atol=1e-5)
    assert not torch.allclose(merged, plain, atol=1e-3)  # the adapter did change the model
    assert (tmp_path / "merged/tokenizer.json").exists()
