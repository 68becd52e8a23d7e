import pytest

from deltaflow.basemodel import build_random_llama
from deltaflow.chat_template import PROBES, patch_generation_markers, render, training_template
from deltaflow.errors import ConfigError

# SmolLM2-135M-Instruct's own template, as shipped in its GGUF.
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tok(repo, tmp_path_factory):
    _, tok = build_random_llama(
        repo / "tests/fixtures/tiny_corpus.txt",
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        vocab_size=300,
        seed=0,
    )
    return tok


def test_smollm2_template_is_patched_byte_identical(tok):
    tok.chat_template = SMOLLM2
    patched = training_template(tok)
    assert "{% generation %}" in patched
    for probe in PROBES:
        assert render(tok, SMOLLM2, probe) == render(tok, patched, probe)


def test_patched_template_masks_only_assistant_tokens(tok):
    tok.chat_template = SMOLLM2
    patched = training_template(tok)
    msgs = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    enc = tok.apply_chat_template(
        msgs, chat_template=patched, return_assistant_tokens_mask=True, return_dict=True, tokenize=True
    )
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    trained = tok.decode([i for i, m in zip(ids, mask) if m])
    assert trained == "4<|im_end|>"


def test_unknown_template_without_markers_is_refused(tok):
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(ConfigError, match="chat_template_path"):
        training_template(tok)


def test_override_that_renders_differently_is_refused(tok):
    tok.chat_template = SMOLLM2
    other = patch_generation_markers(SMOLLM2).replace("You are a helpful", "You are a")
    with pytest.raises(ConfigError, match="renders different text"):
        training_template(tok, other)
