"""New tokens for an adapter (e.g. `<think>` tags, their rows initialized to the mean embedding).

The base stays frozen: its tokenizer gains the tokens, its embedding matrix gains rows set to
the mean of the existing rows, and PEFT's ``trainable_token_indices`` trains only those rows
(plus the output rows when the output layer is not tied to the input embeddings). The
adapter folder then holds the extended tokenizer and the trained rows; anything that loads
the adapter (evaluation, merging, export, a run continuing it) extends the base the same way
first, through ``load_base_for_adapter``.

transformers' own ``resize_token_embeddings(mean_resizing=True)`` samples the new rows around
the mean (a random draw); we set them to the mean exactly, so the rows are the same wherever
the base is extended and the recipe's mean-initialized new tokens are what runs.
"""

from __future__ import annotations

from pathlib import Path

from .errors import DeltaflowError


def adapter_has_tokenizer(adapter_dir: Path | str | None) -> bool:
    """True for an adapter trained with new tokens (its folder holds the extended tokenizer)."""
    return adapter_dir is not None and (Path(adapter_dir) / "tokenizer_config.json").exists()


def add_tokens(tok, model, tokens: list[str]) -> list[int]:
    """Add ``tokens`` to the tokenizer (whole tokens, never split, kept when decoding: not
    "special", which generation output would drop) and extend the model's embeddings with
    mean rows; their ids."""
    present = [t for t in tokens if t in tok.get_vocab()]
    if present:
        raise DeltaflowError(
            f"new_tokens {present} are already in the base tokenizer's vocabulary; "
            "list only tokens it does not have"
        )
    tok.add_tokens(list(tokens))
    extend_embeddings(model, len(tok))
    return tok.convert_tokens_to_ids(list(tokens))


def extend_embeddings(model, size: int) -> None:
    """Grow the input (and untied output) embeddings to ``size`` rows, new rows = mean of the old."""
    import torch

    old = model.get_input_embeddings().weight.shape[0]
    if size <= old:
        return
    model.resize_token_embeddings(size, mean_resizing=False)
    with torch.no_grad():
        layers = [model.get_input_embeddings(), model.get_output_embeddings()]
        for layer in {id(l): l for l in layers if l is not None}.values():
            w = layer.weight
            w[old:] = w[:old].mean(dim=0, keepdim=True)


def trainable_token_indices(model, ids: list[int]) -> dict[str, list[int]]:
    """PEFT's trainable_token_indices for the new rows: the input embedding layer, and the
    output layer too when it has its own weights (untied)."""
    names = {id(m): n for n, m in model.named_modules()}
    emb, out = model.get_input_embeddings(), model.get_output_embeddings()
    targets = {names[id(emb)].split(".")[-1]: list(ids)}
    if out is not None and out.weight.data_ptr() != emb.weight.data_ptr():
        targets[names[id(out)].split(".")[-1]] = list(ids)
    return targets


def load_base_for_adapter(base_dir: Path, adapter_dir: Path | None, **kwargs):
    """The base model (``from_pretrained`` kwargs), extended to the adapter's vocabulary when the
    adapter brought new tokens; and the tokenizer that goes with the adapter."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_dir, **kwargs)
    if not adapter_has_tokenizer(adapter_dir):
        return model, AutoTokenizer.from_pretrained(base_dir)
    tok = AutoTokenizer.from_pretrained(adapter_dir)
    extend_embeddings(model, len(tok))
    return model, tok


def expose_token_rows_to_fused_head(model) -> bool:
    """Make TRL's fused LM head see the trained new-token rows. Returns whether it was needed.

    TRL 1.x's SFT and DPO trainers compute log-probabilities from
    ``get_output_embeddings().weight`` directly (``trl.trainer.utils.add_fused_lm_head``), which
    skips PEFT's trainable-token wrapper on the output layer: the new rows' trained values
    would never reach the loss (and the wrapper has no ``bias``, so it fails first). Here the
    base model's ``get_output_embeddings`` returns a view of that wrapper whose ``weight`` is
    PEFT's own effective weight (``get_merged_weights``: the base rows with the trained rows
    copied in, differentiable), so the fused head trains and scores the same weights the
    unfused forward uses. Ordinary forwards (generation, evaluation) still go through
    ``lm_head`` itself.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layer = getattr(base.get_output_embeddings(), "token_adapter", None)
    if layer is None:
        return False

    class EffectiveHead:
        bias = getattr(layer.base_layer, "bias", None)

        @property
        def weight(self):
            return layer.get_merged_weights(layer.active_adapters)

    head = EffectiveHead()
    base.get_output_embeddings = lambda: head
    return True
