"""Base-model sources: the hub path is real transformers/huggingface_hub code, exercised
offline on a local copy laid out as a hub cache; local folders; the random-init model."""

import os

import pytest
import torch
from transformers import AutoModelForCausalLM

from deltaflow.basemodel import build_random_llama, materialize_base


@pytest.fixture(scope="module")
def tiny_model_dir(repo, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_src")
    info = materialize_base(
        {
            "type": "random_init",
            "corpus": str(repo / "tests/fixtures/tiny_corpus.txt"),
            "hidden_size": 32,
            "num_layers": 1,
            "num_heads": 2,
            "vocab_size": 300,
            "seed": 0,
        },
        out,
    )
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
    with pytest.raises(Exception):  # noqa: B017 -- offline: whichever error huggingface_hub raises
        materialize_base({"type": "hub", "id": "deltaflow/tiny", "revision": "f" * 40}, tmp_path / "out2")


def test_random_init_is_seeded(repo):
    a, tok = build_random_llama(
        repo / "tests/fixtures/tiny_corpus.txt",
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        vocab_size=300,
        seed=1,
    )
    b, _ = build_random_llama(
        repo / "tests/fixtures/tiny_corpus.txt",
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        vocab_size=300,
        seed=1,
    )
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert "{% generation %}" in tok.chat_template


def test_a_gguf_is_parsed_once_per_load_and_the_reader_restored_after(tmp_path):
    """transformers makes a new GGUFReader for the tokenizer, the config and the weights; inside
    gguf_parsed_once they share one parse (and one name map), and outside nothing is changed."""
    import gguf

    from deltaflow.basemodel import gguf_parsed_once

    path = tmp_path / "t.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_tensor("token_embd.weight", torch.zeros(4, 8).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with gguf_parsed_once():
        first = gguf.GGUFReader(str(path))
        assert gguf.GGUFReader(os.path.join(str(tmp_path), ".", "t.gguf")) is first  # one parse per file
        assert gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2) is gguf.get_tensor_name_map(
            gguf.MODEL_ARCH.LLAMA, 2
        )
        assert [t.name for t in first.tensors] == ["token_embd.weight"]
    assert (gguf.GGUFReader, gguf.get_tensor_name_map) == (reader, name_map)
    assert gguf.GGUFReader(str(path)) is not gguf.GGUFReader(str(path))


def test_a_tokenizer_from_another_source_is_checked_saved_and_recorded(tiny_model_dir, tmp_path, repo):
    """base_model.tokenizer: an "Instruct" tokenizer of the same vocabulary with its own pad token
    and chat template replaces the weights' own; the weights are untouched; another vocabulary
    is refused with the reason."""
    from transformers import AutoTokenizer

    from deltaflow.errors import DeltaflowError

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tok.pad_token_id != 3
    tok.pad_token = tok.convert_ids_to_tokens(3)
    tok.chat_template = "{% for m in messages %}<{{m['role']}}>{{m['content']}}{% endfor %}"
    tok.save_pretrained(tmp_path / "instruct")
    source = {"type": "local", "path": str(tiny_model_dir)}
    swapped = {**source, "tokenizer": {"type": "local", "path": str(tmp_path / "instruct")}}
    info = materialize_base(swapped, tmp_path / "out")
    saved = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert saved.pad_token_id == 3 != saved.eos_token_id and saved.chat_template == tok.chat_template
    rec = info["tokenizer"]
    assert rec["pad_is_eos"] is False and rec["pad_token"] == tok.pad_token and rec["tokens"] == len(tok)
    assert rec["chat_template_sha256"] and "tokenizer_config.json" in rec["files_sha256"]
    assert torch.equal(_logits(tiny_model_dir), _logits(tmp_path / "out"))

    # a tokenizer trained on other text: the tokens both have sit at other ids
    corpus = tmp_path / "other.txt"
    text = (repo / "tests/fixtures/tiny_corpus.txt").read_text()
    corpus.write_text("\n".join(line[::-1] for line in text.splitlines()))
    _, other = build_random_llama(corpus, hidden_size=32, num_layers=1, num_heads=2, vocab_size=300, seed=0)
    other.save_pretrained(tmp_path / "other")
    swapped["tokenizer"]["path"] = str(tmp_path / "other")
    with pytest.raises(DeltaflowError, match=r"is not the model's vocabulary: \d+ tokens have other ids"):
        materialize_base(swapped, tmp_path / "out2")


def test_a_tokenizer_folder_is_checked_before_any_job(tmp_path):
    from conftest import config_errors, tiny_config

    cfg = tiny_config()
    cfg["base_model"]["tokenizer"] = {"type": "local", "path": str(tmp_path)}
    assert "base_model.tokenizer.path': '" + str(
        tmp_path
    ) + "' holds no tokenizer_config.json" in config_errors(cfg)
    cfg["base_model"]["tokenizer"] = {"type": "random_init", "corpus": "x"}
    assert "a tokenizer comes from local, hub or gguf_package" in config_errors(cfg)
