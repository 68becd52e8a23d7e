"""New tokens with mean-initialized rows, trained as PEFT trainable token rows, and loaded back
the same way by evaluation and merging (a 2-layer random Llama built in the test)."""

import pytest
import torch

from deltaflow.config import schema_defaults
from deltaflow.errors import DeltaflowError
from deltaflow.training.model import peft_config_for
from deltaflow.vocab import adapter_has_tokenizer, add_tokens, load_base_for_adapter, trainable_token_indices

RECIPE = schema_defaults("recipe", {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"})


def make_base(path, tied: bool):
    from conftest import REPO

    from deltaflow.basemodel import build_random_llama

    model, tok = build_random_llama(
        REPO / "tests/fixtures/tiny_corpus.txt",
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        vocab_size=300,
        seed=0,
        tied=tied,
    )
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize("tied", [True, False])
def test_new_tokens_are_mean_initialized_trained_and_loaded_back(tmp_path, tied):
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deltaflow.bench.raw_outputs import load_model
    from deltaflow.merging import merge_full

    base_dir = make_base(tmp_path / "base", tied)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    old = model.get_input_embeddings().weight.detach().clone()
    ids = add_tokens(tok, model, ["<think>", "</think>"])
    assert ids == [old.shape[0], old.shape[0] + 1]
    emb = model.get_input_embeddings().weight
    assert torch.allclose(emb[ids], old.mean(0).expand(2, -1))  # exactly the mean, both rows
    targets = trainable_token_indices(model, ids)
    assert targets == ({"embed_tokens": ids} if tied else {"embed_tokens": ids, "lm_head": ids})
    pm = get_peft_model(model, peft_config_for(RECIPE, targets))
    trainable = [n for n, p in pm.named_parameters() if p.requires_grad and "lora_" not in n]
    assert trainable and all("trainable_tokens_delta" in n for n in trainable)
    with torch.no_grad():  # stand-in for training: move the new rows and the LoRA factors
        for n, p in pm.named_parameters():
            if "trainable_tokens_delta" in n or "lora_B" in n:
                p.add_(0.05 * torch.randn_like(p))
    x = tok("1 <think> 2 </think> 3", return_tensors="pt").input_ids
    assert set(ids) <= set(x[0].tolist())  # whole tokens, never split
    ref = pm(x).logits.detach()
    adapter = tmp_path / "adapter"
    pm.save_pretrained(adapter, save_embedding_layers=False)
    tok.save_pretrained(adapter)
    assert adapter_has_tokenizer(adapter) and not adapter_has_tokenizer(None)

    # the base extended the same way + the adapter = the trained model, unmerged
    ext, tok2 = load_base_for_adapter(base_dir, adapter)
    assert len(tok2) == len(tok)
    again = PeftModel.from_pretrained(ext, str(adapter))(x).logits.detach()
    assert torch.equal(again, ref)
    # evaluation's lm-eval model (HFLM) on the unmerged adapter
    lm = load_model(base_dir, adapter_dir=adapter, batch_size=1)
    assert torch.equal(lm.model(x).logits.detach(), ref) and len(lm.tokenizer) == len(tok)
    # merged into full weights with the extended tokenizer
    merge_full(base_dir, adapter, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert len(AutoTokenizer.from_pretrained(tmp_path / "merged")) == len(tok)
    assert torch.allclose(merged(x).logits.detach(), ref, atol=1e-4)


def test_a_token_the_base_already_has_is_refused(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = make_base(tmp_path / "base", True)
    tok = AutoTokenizer.from_pretrained(base_dir)
    have = next(t for t in tok.get_vocab() if len(t) > 1)
    with pytest.raises(DeltaflowError, match="already in the base tokenizer"):
        add_tokens(tok, AutoModelForCausalLM.from_pretrained(base_dir), [have])


def test_config_refuses_new_tokens_where_they_cannot_go(tiny_cfg):
    from deltaflow.config import validate_config
    from deltaflow.errors import ConfigError

    tiny_cfg["recipes"]["tiny_lora"]["new_tokens"] = ["<think>"]
    tiny_cfg["eval"]["backend"] = "vllm"
    with pytest.raises(ConfigError) as err:
        validate_config(tiny_cfg)
    msg = str(err.value)
    # run_a adds tokens: the TIES merge, the sweep, vLLM all refuse it, and so does run_dpo
    # continuing it when its own recipe would add tokens again
    assert "merges.a_dpo_ties.adapters.run_a': its run adds new tokens" in msg
    assert "merges.a_dpo_ties.adapters.run_dpo': its run adds new tokens" in msg  # via init_from
    assert "sweeps.run_a': its run adds new tokens" in msg
    assert "vllm cannot serve run 'run_a'" in msg


@pytest.mark.parametrize("tied", [True, False])
def test_trl_fused_head_sees_the_trained_token_rows(tmp_path, tied):
    """TRL computes SFT/DPO log-probs from get_output_embeddings().weight; with the shim it
    matches the unfused forward (which runs PEFT's wrapper), and gradients reach the rows."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.utils import add_fused_lm_head

    from deltaflow.vocab import expose_token_rows_to_fused_head

    base_dir = make_base(tmp_path / "base", tied)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    ids = add_tokens(tok, model, ["<think>", "</think>"])
    pm = get_peft_model(model, peft_config_for(RECIPE, trainable_token_indices(model, ids)))
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "trainable_tokens_delta" in n or "lora_B" in n:
                p.add_(0.5 * torch.randn_like(p))
    x = tok("1 <think> 2 </think> 3", return_tensors="pt").input_ids
    ref = torch.log_softmax(pm(x).logits[:, :-1].float(), -1).gather(-1, x[:, 1:, None])[..., 0]
    add_fused_lm_head(pm.get_base_model())
    assert expose_token_rows_to_fused_head(pm)
    out = pm(input_ids=x, labels=x, fused_lm_head=True)
    assert torch.allclose(out.log_probs, ref, atol=1e-5)
    out.log_probs.sum().backward()
    grads = [p.grad for n, p in pm.named_parameters() if "trainable_tokens_delta" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
