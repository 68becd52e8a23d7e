"""Base-model sources: the hub path is real transformers/huggingface_hub code, exercised
offline on a local copy laid out as a hub cache; local folders; the random-init model."""
import json
import os

import pytest
import torch
from transformers import AutoModelForCausalLM

from deltaflow.basemodel import build_random_llama, materialize_base


@pytest.fixture(scope="module")
def tiny_model_dir(repo, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_src")
    info = materialize_base({"type": "random_init", "corpus": str(repo / "tests/fixtures/tiny_corpus.txt"),
                             "hidden_size": 32, "num_layers": 1, "num_heads": 2, "vocab_size": 300,
                             "seed": 0}, out)
    assert info["parameters"] > 0 and info["corpus_sha256"]
    return out


def _logits(path):
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        return model(torch.tensor([[5, 6, 7]])).logits


def test_local_source_copies_weights(tiny_model_dir, tmp_path):
    info = materialize_base({"type": "local", "path": str(tiny_model_dir)}, tmp_path / "out")
    assert len(info["source_sha256"]) == 64
    assert torch.equal(_logits(tiny_model_dir), _logits(tmp_path / "out"))


def test_hub_source_at_pinned_revision_from_a_local_hub_cache(tiny_model_dir, tmp_path, monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = tmp_path / "hub" / "models--deltaflow--tiny"
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in tiny_model_dir.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    info = materialize_base({"type": "hub", "id": "deltaflow/tiny", "revision": commit}, tmp_path / "out")
    assert info["revision"] == commit
    assert torch.equal(_logits(tiny_model_dir), _logits(tmp_path / "out"))
    with pytest.raises(Exception):
        materialize_base({"type": "hub", "id": "deltaflow/tiny", "revision": "f" * 40}, tmp_path / "out2")


def test_random_init_is_seeded(repo):
    a, tok = build_random_llama(repo / "tests/fixtures/tiny_corpus.txt", hidden_size=32, num_layers=1,
                                num_heads=2, vocab_size=300, seed=1)
    b, _ = build_random_llama(repo / "tests/fixtures/tiny_corpus.txt", hidden_size=32, num_layers=1,
                              num_heads=2, vocab_size=300, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert "{% generation %}" in tok.chat_template
