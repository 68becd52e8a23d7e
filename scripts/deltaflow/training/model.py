"""The model a run trains: the base in the training precision (or 4-bit for QLoRA), the
vocabulary extended for new tokens, the PEFT config or the adapter it continues (or, with
``method: full``, the whole model, every weight trained), and the saver that writes the adapter
(or the full model) with its tokenizer."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from ..errors import DeltaflowError
from ..vocab import adapter_has_tokenizer, add_tokens, extend_embeddings, trainable_token_indices
from .args import train_precision

log = logging.getLogger(__package__)  # one logger for the package: "deltaflow.training"


def peft_config_for(recipe: dict, token_indices: dict | None = None):
    """PEFT LoraConfig from a recipe: method lora | dora, use_rslora; ``token_indices``: the
    embedding rows of new tokens to train (vocab.trainable_token_indices)."""
    from peft import LoraConfig

    return LoraConfig(
        r=recipe["r"],
        lora_alpha=recipe["alpha"],
        lora_dropout=recipe["dropout"],
        target_modules=recipe["target_modules"],
        task_type="CAUSAL_LM",
        use_dora=recipe["method"] == "dora",
        use_rslora=recipe["use_rslora"],
        trainable_token_indices=token_indices or None,
    )


def load_base_for_training(base_dir: Path, recipe: dict, device: str):
    """The base model in the training precision (fp32 on CPU by default, bf16 on CUDA), or
    4-bit NF4 for QLoRA (CUDA + bitsandbytes; compute in bf16, or fp16 with precision fp16)."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if recipe["load_in_4bit"]:
        if device != "cuda" or not torch.cuda.is_available():
            raise DeltaflowError(
                "QLoRA (load_in_4bit) needs a CUDA GPU; this job runs on "
                f"device '{device}' (cuda available: {torch.cuda.is_available()}). "
                "Set train.device: cuda on a GPU node, or load_in_4bit: false"
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise DeltaflowError(
                "QLoRA (load_in_4bit) needs bitsandbytes: .venv/bin/python -m pip install bitsandbytes"
            ) from exc
        from transformers import BitsAndBytesConfig

        compute = torch.float16 if train_precision(recipe, device) == "fp16" else torch.bfloat16
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=compute,
            bnb_4bit_use_double_quant=True,
        )
        return AutoModelForCausalLM.from_pretrained(base_dir, quantization_config=quant, dtype=compute)
    return AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype[train_precision(recipe, device)])


def _vocabulary(tok, model, recipe: dict, init_dir: Path | None) -> list[int]:
    """The model's embeddings extended to the tokenizer, and the recipe's new tokens added by the
    first run of a chain (their ids, rows initialized to the mean embedding)."""
    extend_embeddings(model, len(tok))
    new_ids = (
        add_tokens(tok, model, recipe["new_tokens"]) if recipe["new_tokens"] and init_dir is None else []
    )
    if new_ids:
        log.info(
            "new tokens %s: ids %s, rows initialized to the mean embedding", recipe["new_tokens"], new_ids
        )
    return new_ids


def _prepare_full_model(base_dir: Path, recipe: dict, device: str, init_dir: Path | None):
    """``method: full``: the base (or the full model of the run continued, ``init_dir``) with
    every weight trainable, no PEFT config, the new token ids, and the saver of the whole model
    (weights, config, tokenizer: a folder transformers, llama.cpp and mergekit read)."""
    from transformers import AutoTokenizer

    src = init_dir or base_dir
    tok = AutoTokenizer.from_pretrained(src)
    model = load_base_for_training(src, recipe, device)
    new_ids = _vocabulary(tok, model, recipe, init_dir)
    saved_tok = copy.deepcopy(tok)  # before the training chat-template patch

    def save_full(trained, path: Path, **_):
        trained.save_pretrained(path, safe_serialization=True)
        saved_tok.save_pretrained(path)

    return tok, model, None, new_ids, save_full


def _prepare_model(base_dir: Path, recipe: dict, device: str, init_dir: Path | None):
    """The tokenizer, the base (vocabulary extended for new tokens), the PEFT config (None when
    continuing ``init_dir``'s adapter, loaded trainable, or for a full fine-tune), the new token
    ids and the adapter saver."""
    from transformers import AutoTokenizer

    if recipe["method"] == "full":
        return _prepare_full_model(base_dir, recipe, device, init_dir)

    # continuing an adapter that brought new tokens: its tokenizer, and the base extended to it
    tok = AutoTokenizer.from_pretrained(init_dir if adapter_has_tokenizer(init_dir) else base_dir)
    model = load_base_for_training(base_dir, recipe, device)
    base_vocab = model.get_input_embeddings().weight.shape[0]
    new_ids = _vocabulary(tok, model, recipe, init_dir)
    peft_config = peft_config_for(recipe, trainable_token_indices(model, new_ids) if new_ids else None)
    # the tokenizer saved with the adapter (before the training chat-template patch)
    adapter_tok = copy.deepcopy(tok) if len(tok) > base_vocab else None

    def save_adapter(peft_model, path: Path, **kw):
        # The new rows are saved by PEFT (trainable tokens); the rest of the extended
        # embedding is the base's, rebuilt on load (vocab.load_base_for_adapter), not copied.
        peft_model.save_pretrained(path, save_embedding_layers=False, **kw)
        if adapter_tok is not None:
            adapter_tok.save_pretrained(path)

    if init_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(init_dir), is_trainable=True)
        peft_config = None  # the loaded adapter is trained further
    return tok, model, peft_config, new_ids, save_adapter
